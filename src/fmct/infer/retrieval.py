"""Scan-to-scan retrieval on embeddings: cosine nearest neighbours and per-finding retrieval mAP.

Embedding tables (``fmct embed`` output, parquet) hold one row per scan with a ``scan_id`` column and
either one list-valued ``embedding`` column or one numeric column per dimension (``e0, e1, ...`` or any
other float columns that are not bookkeeping such as ``patient_id`` / ``site`` / labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fmct.labels import FINDINGS

#: Columns never treated as embedding dimensions when the table is "wide".
_NON_EMBEDDING = {"scan_id", "patient_id", "study_id", "site", "split", "status", "source", "view"}


def _stack(col) -> np.ndarray:
    return (
        np.stack([np.asarray(v, dtype=np.float32) for v in col]) if len(col) else np.zeros((0, 0), np.float32)
    )


def load_index(path: str | Path, pooling: str = "cls") -> tuple[list[str], np.ndarray]:
    """Read an embedding table.

    Layouts: ``fmct embed`` output (list columns ``cls`` and ``mean_patch``, ``brain_max`` and ``brain_stats``;
    ``pooling`` picks ``cls``, ``mean_patch``, their concatenation ``cls+mean``, ``brain_max`` (the max over
    the intracranial patch tokens) or ``brain_stats`` (their mean, std and max)), a list column
    ``embedding``, or one numeric column per dimension.

    Returns:
        ids: ``N`` scan ids in file order.
        emb: ``(N, D)`` float32 embeddings.

    Raises:
        ValueError: no ``scan_id`` column, no embedding columns, or an unknown pooling.
    """
    import pandas as pd

    from fmct.models.readout import BRAIN_READOUTS, canonical_readout

    pooling = canonical_readout(pooling)
    df = pd.read_parquet(path)
    if "scan_id" not in df.columns:
        raise ValueError(f"{path}: no 'scan_id' column (columns: {list(df.columns)[:8]}...)")
    ids = [str(s) for s in df["scan_id"]]
    emb: np.ndarray | None
    if pooling in BRAIN_READOUTS:
        if pooling not in df.columns:
            raise ValueError(f"{path}: no {pooling} column; embed again with this fmct (`fmct embed`)")
        emb = _stack(df[pooling])
    elif "cls" in df.columns and "mean_patch" in df.columns:
        parts = {"cls": ["cls"], "mean_patch": ["mean_patch"], "cls+mean": ["cls", "mean_patch"]}[pooling]
        emb = np.concatenate([_stack(df[c]) for c in parts], axis=1)
    elif "embedding" in df.columns:
        emb = _stack(df["embedding"])
    else:
        skip = _NON_EMBEDDING | set(FINDINGS)
        cols = [
            c
            for c in df.columns
            if c not in skip and not str(c).endswith("_size") and np.issubdtype(df[c].dtype, np.floating)
        ]
        emb = df[cols].to_numpy(np.float32) if cols else None
    if emb is None or emb.ndim != 2 or emb.shape[1] == 0:
        raise ValueError(
            f"{path}: no embedding columns found (expected cls/mean_patch, 'embedding' or e0..eD-1)"
        )
    from fmct.evaluate.embed import check_finite

    check_finite(path, ids, {pooling if "cls" in df.columns else "embedding": emb})
    return ids, emb


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit length: ``(N, D) -> (N, D)`` (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def nearest(
    emb: np.ndarray, query: np.ndarray, k: int = 10, exclude: int | None = None
) -> list[tuple[int, float]]:
    """The ``k`` rows of ``emb (N, D)`` most cosine-similar to ``query (D,)``, best first.

    ``exclude`` is a row index to leave out (the query itself when it comes from the index).
    Returns ``[(row_index, cosine_similarity), ...]``.
    """
    emb = np.asarray(emb)
    query = np.asarray(query, dtype=np.float64).reshape(-1)
    if query.shape[0] != emb.shape[1]:
        raise ValueError(f"query has {query.shape[0]} dims but the index has {emb.shape[1]}")
    sims = l2_normalize(emb) @ l2_normalize(query[None])[0]
    if exclude is not None:
        sims[exclude] = -np.inf
    order = np.argsort(-sims, kind="stable")
    n_valid = len(sims) - (1 if exclude is not None else 0)
    return [(int(i), float(sims[i])) for i in order[: max(0, min(k, n_valid))]]


def ranking_average_precision(relevant: np.ndarray) -> float:
    """AP of one ranking: ``relevant`` is a 0/1 vector in ranked order. NaN if nothing is relevant."""
    rel = np.asarray(relevant, dtype=np.float64)
    n_rel = rel.sum()
    if n_rel == 0:
        return float("nan")
    hits = np.cumsum(rel)
    precision_at = hits / np.arange(1, len(rel) + 1)
    return float((precision_at * rel).sum() / n_rel)


def retrieval_map(embeddings: np.ndarray, labels, names: Sequence[str] | None = None) -> dict[str, float]:
    """Per-finding leave-one-out retrieval mean average precision.

    For each finding, every scan positive for it is used as a query; all OTHER scans with a known
    label for that finding are ranked by cosine similarity, the positives are the relevant items, and
    the mean of the queries' APs is the finding's mAP (chance level ~ the finding's prevalence).

    Args:
        embeddings: ``(N, D)``.
        labels: ``(N, L)`` 0/1 array (NaN = unknown) or a pandas DataFrame (its columns give names).
        names: finding names for the ``L`` columns (default: DataFrame columns or ``fmct.labels.FINDINGS``).

    Returns:
        ``{finding: mAP}``; NaN where a finding has fewer than 2 positives (nothing to retrieve).
    """
    if hasattr(labels, "columns"):
        names = list(names or labels.columns)
        lab = labels.to_numpy(dtype=np.float64)
    else:
        lab = np.asarray(labels, dtype=np.float64)
        if lab.ndim == 1:
            lab = lab[:, None]
        if names is None:
            names = list(FINDINGS[: lab.shape[1]])
    emb = l2_normalize(np.asarray(embeddings))
    if emb.shape[0] != lab.shape[0]:
        raise ValueError(f"{emb.shape[0]} embeddings but {lab.shape[0]} label rows")
    sims = emb @ emb.T
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        known = np.flatnonzero(~np.isnan(lab[:, j]))
        pos = known[lab[known, j] == 1]
        if len(pos) < 2:
            out[str(name)] = float("nan")
            continue
        aps = []
        for q in pos:
            others = known[known != q]
            order = others[np.argsort(-sims[q, others], kind="stable")]
            aps.append(ranking_average_precision(lab[order, j] == 1))
        out[str(name)] = float(np.mean(aps))
    return out


def embed_scan(model, spec: str, pooling: str = "cls", dim: int | None = None) -> np.ndarray:
    """Embed one scan (NIfTI file, DICOM folder or ``STORE::scan_id``) with a model's backbone,
    preprocessed as recorded in the model. ``pooling``: ``cls``, ``mean_patch``, ``cls+mean``, ``brain_max``
    or ``brain_stats`` (as in :func:`load_index`, :func:`fmct.models.readout.pool_tokens`); ``dim`` (the
    index width) is checked. Returns ``(F,)``."""
    import torch

    from fmct.infer.predict import model_preprocessing, read_input, resolve_model
    from fmct.preprocess.model_input import model_input_for

    model = resolve_model(model)
    pre = model_preprocessing(model)
    vol, from_store = read_input(spec)
    reuse = from_store and bool(np.allclose(vol.spacing, float(pre.get("spacing", 1.0)), atol=1e-3))
    x, _, _ = model_input_for(vol, pre, reuse=reuse)
    with torch.inference_mode():
        q = model.pool_output(model.backbone.forward_features(x[None]), x[None], pooling)[0].float().numpy()
    if dim is not None and dim != q.shape[0]:
        raise ValueError(f"the index has {dim}-dim embeddings but the model gives {q.shape[0]} ({pooling})")
    return q


def retrieve(index: str | Path, query: str, model=None, k: int = 10, pooling: str = "cls") -> list[dict]:
    """Nearest scans of ``index`` (embedding parquet) to ``query``: a ``scan_id`` of the index (itself
    excluded), or a scan path / ``STORE::scan_id`` embedded with ``model`` (a model directory).

    Returns ``[{"rank", "scan_id", "similarity"}, ...]`` best first (cosine similarity).
    """
    ids, emb = load_index(index, pooling)
    if query in ids:
        row = ids.index(query)
        q, exclude = emb[row], row
    elif model is not None:
        q, exclude = embed_scan(model, query, pooling, emb.shape[1]), None
    else:
        raise ValueError(f"{query!r} is not a scan_id of {index}; pass --model to embed a scan path")
    return [
        {"rank": r + 1, "scan_id": ids[i], "similarity": round(s, 6)}
        for r, (i, s) in enumerate(nearest(emb, q, k, exclude))
    ]
