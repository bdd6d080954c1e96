"""``fmct.embed``: frozen embeddings of every scan of a store (``fmct embed``), as a DataFrame."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmct.api.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

#: Readouts of an embeddings file, in column order (the brain readouts only from backbones with a token grid).
COLUMNS = ("cls", "mean_patch", "brain_max", "brain_stats")


def embeddings_frame(emb: Any) -> pd.DataFrame:
    """:class:`fmct.evaluate.embed.Embeddings` -> DataFrame indexed by ``scan_id``, one column per readout,
    each cell a float32 vector ``(D,)`` (``np.stack(df["cls"])`` gives the ``(n, D)`` matrix)."""
    import pandas as pd

    cols = {c: list(getattr(emb, c)) for c in COLUMNS if getattr(emb, c) is not None}
    df = pd.DataFrame(cols, index=pd.Index(list(emb.scan_ids), name="scan_id"))
    df.attrs["meta"] = dict(emb.meta)
    return df


def embed(
    model: Any,
    data: str | Path,
    out: str | Path | None = None,
    *,
    batch_size: int = 4,
    workers: int = 1,
    keep_patch: bool = True,
    progress: bool = True,
    device: Any = "cpu",
) -> pd.DataFrame:
    """Embed every usable scan of a store with a model's backbone.

    Args:
        model: a model directory, a Hugging Face Hub repo id, or a loaded Backbone/ClassifierModel.
        data: a store folder written by ``fmct ingest``.
        out: an embeddings ``.parquet`` file to write (patch tokens beside it as ``<name>.patch.npy`` unless
            ``keep_patch`` is False); a re-run skips the scans already in it. None: nothing is kept on disk.
        batch_size: scans per forward pass.  workers: processes loading scans (0 or 1: this process).
        progress: show a progress bar.
        device: where the network runs: ``"cpu"``, ``"auto"`` (the GPU when one is visible), ``"cuda[:N]"``.

    Returns:
        A DataFrame indexed by ``scan_id`` with columns ``cls``, ``mean_patch``, ``brain_max`` (the max over
        the intracranial patch tokens, for ViT backbones) and ``brain_stats`` (their mean, std and max,
        concatenated: 3D wide), each cell a float32 vector; ``df.attrs["meta"]``
        holds the provenance (model, input size, windows) and ``df.attrs["path"]`` the file (or None).

    Raises:
        FileNotFoundError: no such model or store.  UsageError: ``out`` not ``.parquet``.
        ValueError: a model directory or a scan that cannot be used.
    """
    from fmct.evaluate.embed import embed_store, load_embeddings

    store = Path(data)
    if not (store / "manifest.parquet").exists():
        raise FileNotFoundError(f"{store}: not an fmct store (no manifest.parquet)")
    if out is not None and Path(out).suffix != ".parquet":
        raise UsageError(f"{out}: the output must be a .parquet file")
    kwargs = dict(
        batch_size=batch_size, workers=workers if workers >= 2 else 0, progress=progress, device=device
    )
    if out is not None:
        embed_store(model, store, Path(out), keep_patch=keep_patch, **kwargs)
        df = embeddings_frame(load_embeddings(out, with_patch=False))
        df.attrs["path"] = str(out)
        return df
    with tempfile.TemporaryDirectory(prefix="fmct-embed-") as tmp:
        path = embed_store(model, store, Path(tmp) / "emb.parquet", keep_patch=False, **kwargs)
        df = embeddings_frame(load_embeddings(path, with_patch=False))
    df.attrs["path"] = None
    return df
