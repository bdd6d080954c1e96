"""Frozen embeddings of every scan of a store: batched, parallel loading, resumable, atomic output.

File format (``emb.parquet``): one row per scan with ``scan_id`` (str), ``cls`` and ``mean_patch``
(list<float32>, length D), and the brain readouts (optional; :data:`fmct.models.readout.BRAIN_READOUTS`):
``brain_max`` (length D), the max over the patch tokens of the patches inside the cranial cavity
(:mod:`fmct.preprocess.brain_mask`), and ``brain_stats`` (length 3D), their mean, std and max; readouts
that leave out scalp, skull and the head's outline. Patch tokens, when kept, go to ``emb.patch.npy``
beside it: float16 ``(n_scans, N, D)`` in the row order of the parquet file (used by the attentive probe).

While running, batches are written as parts in ``.<name>.parts/``; a rerun skips the scan ids already
in the output or in the parts, and the final merge replaces the output atomically.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader

from fmct.cpu_heap import reuse_freed_memory
from fmct.device import inference_autocast, module_device, place
from fmct.models.hub import load_model
from fmct.models.readout import BRAIN_READOUTS, canonical_readout
from fmct.preprocess.brain_mask import brain_max_pool, brain_stats_pool, intracranial_mask, patch_fractions
from fmct.preprocess.model_input import cube_hu, input_fit
from fmct.preprocess.windows import DEFAULT_WINDOWS, apply_windows
from fmct.progress import progress
from fmct.store.reader import open_store


@dataclass
class Embeddings:
    """Embeddings of ``n`` scans.

    Attributes:
        scan_ids: n ids.  cls / mean_patch: ``(n, D)`` float32.
        patch: optional ``(n, N, D)`` (float16 memmap when loaded from disk).
        meta: free-form provenance (model directory, input size ...).
        brain_max: optional ``(n, D)`` float32, max over the intracranial patch tokens.
        brain_stats: optional ``(n, 3D)`` float32, their mean, std and max (``[mean | std | max]``).
        source: the file these were read from (named in errors), if any.
    """

    scan_ids: list[str]
    cls: np.ndarray
    mean_patch: np.ndarray
    patch: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    brain_max: np.ndarray | None = None
    brain_stats: np.ndarray | None = None
    source: str | None = None

    def feature(self, kind: str = "cls+mean") -> np.ndarray:
        """Probe features of a readout (:mod:`fmct.models.readout`): ``"cls"``, ``"mean_patch"``, ``"cls+mean"``
        (concatenation, ``(n, 2D)``), ``"brain_max"`` or ``"brain_stats"`` (``(n, 3D)``; both only in files
        written by ``embed_store``)."""

        kind = canonical_readout(kind)
        if kind == "cls":
            return self.cls
        if kind == "mean_patch":
            return self.mean_patch
        if kind == "cls+mean":
            return np.concatenate([self.cls, self.mean_patch], axis=1)
        column = getattr(self, kind)
        if column is None:
            where = f"{self.source}: " if self.source else "these embeddings have "
            raise ValueError(
                f"{where}no {kind} column (made by an older fmct); re-run `fmct embed` with a new --out "
                "to add it (a rerun on the same file skips done scans)"
            )
        return column

    def brain_columns(self) -> dict[str, np.ndarray | None]:
        """``{readout: (n, F) or None}`` for each of :data:`~fmct.models.readout.BRAIN_READOUTS`."""
        return {name: getattr(self, name) for name in BRAIN_READOUTS}

    def select(self, scan_ids: Sequence[str]) -> Embeddings:
        """Rows for ``scan_ids`` in that order (KeyError naming the first missing id)."""
        pos = {s: i for i, s in enumerate(self.scan_ids)}
        missing = [s for s in scan_ids if s not in pos]
        if missing:
            raise KeyError(f"{len(missing)} scan(s) have no embedding, e.g. {missing[0]}")
        idx = np.asarray([pos[s] for s in scan_ids], dtype=np.int64)
        patch = None if self.patch is None else np.asarray(self.patch[idx])
        brain = {k: None if v is None else v[idx] for k, v in self.brain_columns().items()}
        return Embeddings(
            list(scan_ids),
            self.cls[idx],
            self.mean_patch[idx],
            patch,
            dict(self.meta),
            **brain,
            source=self.source,
        )


def patch_path(path: str | Path) -> Path:
    """The patch-token file that goes with an embeddings parquet file."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".parquet") + ".patch.npy")


def _parts_dir(path: Path) -> Path:
    return path.with_name(f".{path.name}.parts")


def _write_table(
    path: Path,
    ids: Sequence[str],
    cls: np.ndarray,
    mean: np.ndarray,
    meta: dict,
    brain: dict[str, np.ndarray | None] | None = None,
) -> None:
    """Write the parquet table; ``brain``: the brain readout columns (``None`` entries left out)."""
    import pyarrow.parquet as pq

    def col(a: np.ndarray) -> Any:
        return pa.FixedSizeListArray.from_arrays(
            pa.array(a.astype(np.float32).ravel()), a.shape[1] if a.ndim == 2 else 0
        )

    cols = {"scan_id": pa.array(list(ids), pa.string()), "cls": col(cls), "mean_patch": col(mean)}
    for name, m in (brain or {}).items():
        if m is not None:
            cols[name] = col(np.asarray(m))
    table = pa.table(cols).replace_schema_metadata({"fmct": json.dumps(meta)})
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)


def save_embeddings(emb: Embeddings, path: str | Path) -> Path:
    """Write ``emb`` to ``path`` (parquet) and its patch tokens to :func:`patch_path` (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if emb.patch is not None:
        _save_npy(patch_path(path), np.asarray(emb.patch, dtype=np.float16))
    elif patch_path(path).exists():
        patch_path(path).unlink()
    _write_table(
        path, emb.scan_ids, np.asarray(emb.cls), np.asarray(emb.mean_patch), emb.meta, emb.brain_columns()
    )
    return path


def load_embeddings(path: str | Path, with_patch: bool = True) -> Embeddings:
    """Read an embeddings file written by :func:`save_embeddings` / :func:`embed_store`.

    Raises:
        FileNotFoundError / ValueError: missing file or missing columns (message names the file).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such embeddings file")
    table = pq.read_table(path)
    missing = {"scan_id", "cls", "mean_patch"} - set(table.column_names)
    if missing:
        raise ValueError(f"{path}: not an fmct embeddings file (missing column(s) {sorted(missing)})")
    ids = [str(s) for s in table.column("scan_id").to_pylist()]

    def mat(name: str) -> np.ndarray:
        col = table.column(name).combine_chunks()
        flat = np.asarray(col.flatten() if hasattr(col, "flatten") else col.values, dtype=np.float32)
        return flat.reshape(len(ids), -1)

    meta_raw = (table.schema.metadata or {}).get(b"fmct")
    meta = json.loads(meta_raw) if meta_raw else {}
    patch = None
    pp = patch_path(path)
    if with_patch and pp.exists():
        patch = np.load(pp, mmap_mode="r")
        if patch.shape[0] != len(ids):
            raise ValueError(f"{pp}: {patch.shape[0]} rows but {path} has {len(ids)}")
    brain = {c: mat(c) if c in table.column_names else None for c in BRAIN_READOUTS}
    cls, mean_patch = mat("cls"), mat("mean_patch")
    check_finite(path, ids, {"cls": cls, "mean_patch": mean_patch, **brain})
    return Embeddings(ids, cls, mean_patch, patch, meta, **brain, source=str(path))


def check_finite(path: str | Path, ids: Sequence[str], columns: dict[str, np.ndarray | None]) -> None:
    """Refuse embeddings with NaN or Inf values, naming the file, the column, NaN or Inf, and up to 5 scan
    ids of each.

    Args:
        columns: name -> ``(N, D)`` matrix whose rows are ``ids`` (``None`` entries are skipped).

    Raises:
        ValueError: ``"<path>: NaN in cls of 2 scan(s): a, b; Inf in ... (re-embed them or drop them)"``.
    """
    problems = []
    for name, m in columns.items():
        if m is None or m.size == 0:
            continue
        m = np.asarray(m)
        for what, bad in (("NaN", np.isnan(m).any(axis=1)), ("Inf", np.isinf(m).any(axis=1))):
            if bad.any():
                rows = np.flatnonzero(bad)
                shown = ", ".join(str(ids[i]) for i in rows[:5]) + (", ..." if len(rows) > 5 else "")
                problems.append(f"{what} in {name} of {len(rows)} scan(s): {shown}")
    if problems:
        raise ValueError(f"{path}: {'; '.join(problems)} (re-embed those scans or drop their rows)")


# ---------------------------------------------------------------------------------------------------- compute
class StoreInputs:
    """``torch`` map-style dataset: index -> ``(scan_id, x (C, S, S, S) float32)`` from a store.

    ``store_root`` is a store directory (each DataLoader worker opens its own
    :class:`fmct.store.ScanStore`) or any object with ``.load(scan_id) -> Volume``. With
    ``with_brain=True`` items are ``(scan_id, x, brain)``: ``brain`` the ``(S, S, S)`` bool cranial-cavity
    mask of the same cube (:func:`fmct.preprocess.brain_mask.intracranial_mask`).
    """

    def __init__(
        self,
        store_root: Any,
        scan_ids: Sequence[str],
        size: int,
        windows: Sequence[Sequence[float]] = DEFAULT_WINDOWS,
        with_brain: bool = False,
        fit: str = "resize",
    ) -> None:
        self.with_brain = with_brain
        self.fit = fit
        self.store_root = store_root if hasattr(store_root, "load") else str(store_root)
        self.scan_ids = list(scan_ids)
        self.size = int(size)
        self.windows = [tuple(w) for w in windows]
        self._store: Any = None

    def __len__(self) -> int:
        return len(self.scan_ids)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        if self._store is None:
            self._store = open_store(self.store_root)
        sid = self.scan_ids[i]
        hu, _ = cube_hu(self._store.load(sid), self.size, self.fit)
        x = apply_windows(hu, self.windows)
        if not self.with_brain:
            return sid, x
        return sid, x, torch.from_numpy(intracranial_mask(hu.numpy()))


class CubeCache:
    """HU cubes ``(S, S, S)`` int16 of some scans, loaded once; windowed on the fly for training.
    ``fit``: how a scan becomes its cube (:func:`fmct.preprocess.model_input.cube_hu`)."""

    def __init__(
        self, store: Any, scan_ids: Sequence[str], size: int, progress: Any = False, fit: str = "resize"
    ) -> None:
        st = open_store(store)
        self.scan_ids = list(scan_ids)
        cubes = []
        with _progress(progress, len(self.scan_ids), "loading scans") as advance:
            for sid in self.scan_ids:
                hu, _ = cube_hu(st.load(sid), size, fit)
                cubes.append(hu.round().clamp(-32768, 32767).to(torch.int16))
                advance(1)
        self.cubes = torch.stack(cubes) if cubes else torch.zeros((0, size, size, size), dtype=torch.int16)
        self.size = size
        self.fit = fit
        self._fractions: dict[tuple[int, ...], np.ndarray] = {}  # grid -> (n, N), see brain_fractions

    def batch(self, idx: Any, windows: Sequence[Sequence[float]]) -> Any:
        """``(B, C, S, S, S)`` float32 model inputs (torch) of rows ``idx``."""

        return apply_windows(self.cubes[idx].float(), windows).transpose(0, 1).contiguous()

    def subset(self, scan_ids: Sequence[str]) -> CubeCache:
        """A cache over some of these scans (shares no memory with this one)."""
        pos = {s: i for i, s in enumerate(self.scan_ids)}
        out = CubeCache.__new__(CubeCache)
        out.scan_ids = list(scan_ids)
        out.cubes = self.cubes[[pos[s] for s in scan_ids]]
        out.size = self.size
        out.fit = self.fit
        out._fractions = {}
        return out

    def brain_fractions(self, grid: Sequence[int]) -> np.ndarray:
        """``(n, N)`` intracranial fraction of each patch of a ``grid`` for every cube (computed once per
        grid, then shared by every model embedded from this cache)."""

        key = tuple(int(g) for g in grid)
        if key not in self._fractions:
            masks = (intracranial_mask(c.numpy()) for c in self.cubes)
            self._fractions[key] = np.stack([patch_fractions(m, key) for m in masks])
        return self._fractions[key]


def model_input_spec(model: Any) -> tuple[int, list[tuple[float, float]]]:
    """``(input_size, windows)`` of a loaded model (``.input_size``, ``.preprocessing['windows']``)."""
    size = getattr(model, "input_size", None)
    if size is None:
        raise ValueError(f"{type(model).__name__} has no input_size")
    if isinstance(size, list | tuple):
        size = int(size[0])
    prep = getattr(model, "preprocessing", None) or {}
    if not isinstance(prep, dict):
        prep = prep.to_dict() if hasattr(prep, "to_dict") else vars(prep)
    windows = prep.get("windows") or DEFAULT_WINDOWS
    return int(size), [tuple(float(v) for v in w) for w in windows]


def model_input_fit(model: Any) -> str:
    """How a scan becomes a loaded model's input cube: its ``preprocessing["input_fit"]`` (``"resize"``,
    fmct's own, or ``"pad_crop"``; :func:`fmct.preprocess.model_input.cube_hu`)."""

    prep = getattr(model, "preprocessing", None)
    return input_fit(prep if isinstance(prep, dict) else None)


def _to_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().float().cpu().numpy()
    return np.asarray(t, dtype=np.float32)


def embed_batch(model: Any, x: Any) -> dict[str, np.ndarray]:
    """Run ``model.embed`` on a batch ``(B, C, S, S, S)`` under no_grad -> numpy ``cls``, ``mean_patch``,
    ``patch`` (``mean_patch`` computed from ``patch`` when the model does not return it).

    The batch goes to the model's device; on CUDA under bf16 autocast (:func:`fmct.device.inference_autocast`),
    on the CPU in fp32, with freed blocks kept in the heap for the next batch (:mod:`fmct.cpu_heap`). The
    outputs are float32 numpy arrays either way."""

    dev = module_device(model)
    if dev.type == "cpu":
        reuse_freed_memory()
    with torch.inference_mode(), inference_autocast(dev):
        out = model.embed(x.to(dev, non_blocking=True))
    res = {k: _to_numpy(v) for k, v in out.items() if k in ("cls", "mean_patch", "patch") and v is not None}
    if "mean_patch" not in res and "patch" in res:
        res["mean_patch"] = res["patch"].mean(axis=1)
    if "cls" not in res:
        res["cls"] = res["mean_patch"]
    return res


def embed_store(
    model: Any,
    store_root: Any,
    out: str | Path,
    batch_size: int = 4,
    workers: int = 0,
    keep_patch: bool = True,
    scan_ids: Sequence[str] | None = None,
    part_size: int = 32,
    progress: bool | Callable[[int, int], None] = True,
    meta: dict[str, Any] | None = None,
    device: Any = None,
) -> Path:
    """Embed the scans of a store into ``out`` (see the module docstring for the format).

    Args:
        model: a directory (loaded with ``fmct.models.hub.load_model``) or a loaded model with
            ``.embed``, ``.input_size``, ``.preprocessing``.
        store_root: a store directory (``fmct.store.ScanStore``) or an object with ``.load``/``.scan_ids``.
        scan_ids: subset to embed (default: every usable scan of the store).
        workers: DataLoader worker processes (0 = load in the main process).
        part_size: scans per resumable part file.
        progress: show a rich progress bar (True), or a callback ``(done, total)``.
        device: run the model there (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``; the model is moved);
            None: where the model is.

    Returns:
        ``out`` as a Path. Scans already embedded in ``out`` or its parts are skipped.
    """

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    if isinstance(model, str | Path):
        meta.setdefault("model", str(model))
        model = load_model(model)
    if not hasattr(model, "embed") and hasattr(model, "as_backbone"):
        model = model.as_backbone()  # a classifier directory: embed with its backbone
    if hasattr(model, "eval"):
        model.eval()
    on_gpu = place(model, device).type == "cuda"
    size, windows = model_input_spec(model)
    meta.update({"input_size": size, "windows": windows})
    if scan_ids is None:
        scan_ids = list(open_store(store_root).scan_ids)
    scan_ids = list(scan_ids)
    parts = _parts_dir(out)
    parts.mkdir(exist_ok=True)
    done = _embedded_ids(out, parts)
    todo = [s for s in scan_ids if s not in done]
    next_part = len(list(parts.glob("part-*.parquet")))

    grid_of = _grid_of(model)
    loader = DataLoader(
        StoreInputs(store_root, todo, size, windows, grid_of is not None, model_input_fit(model)),
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=on_gpu,
    )
    buf: dict[str, list] = {k: [] for k in ("ids", "cls", "mean_patch", "patch", *BRAIN_READOUTS)}

    def flush() -> None:
        nonlocal next_part
        if not buf["ids"]:
            return
        name = parts / f"part-{next_part:05d}.parquet"
        patch = np.concatenate(buf["patch"]) if keep_patch and buf["patch"] else None
        if patch is not None:
            _save_npy(patch_path(name), patch.astype(np.float16))
        brain = {k: np.concatenate(buf[k]) if buf[k] else None for k in BRAIN_READOUTS}
        _write_table(
            name, buf["ids"], np.concatenate(buf["cls"]), np.concatenate(buf["mean_patch"]), meta, brain
        )
        next_part += 1
        for v in buf.values():
            v.clear()

    with _progress(progress, len(todo), "embedding") as advance:
        for ids, x, *brain in loader:
            res = embed_batch(model, x)
            buf["ids"].extend(ids)
            buf["cls"].append(res["cls"])
            buf["mean_patch"].append(res["mean_patch"])
            if brain and "patch" in res:
                fractions = _mask_fractions(brain[0].numpy(), grid_of(x.shape), res["patch"].shape[1])
                for k, v in _brain_readouts(res["patch"], fractions).items():
                    buf[k].append(v)
            if keep_patch and "patch" in res:
                buf["patch"].append(res["patch"].astype(np.float16))
            if len(buf["ids"]) >= part_size:
                flush()
            advance(len(ids))
        flush()
    _merge(out, parts, scan_ids, keep_patch, meta)
    return out


def _embedded_ids(out: Path, parts: Path) -> set[str]:
    """Scan ids already in the output file or in the part files of an interrupted run."""
    done: set[str] = set()
    for p in ([out] if out.exists() else []) + sorted(parts.glob("part-*.parquet")):
        done.update(load_embeddings(p, with_patch=False).scan_ids)
    return done


def _collate(items: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """``[(scan_id, x[, brain]), ...]`` -> ``(ids, x (B, ...)[, brain (B, ...)])``."""

    columns = list(zip(*items, strict=True))
    return (list(columns[0]), *(torch.stack(c) for c in columns[1:]))


def _grid_of(model: Any) -> Callable[[Sequence[int]], Sequence[int]] | None:
    """The backbone's ``grid_size(input_shape)``; None: a model without a token grid (no brain readouts)."""
    return getattr(getattr(model, "backbone", None), "grid_size", None)


def _mask_fractions(masks: np.ndarray, grid: Sequence[int], n_patches: int) -> np.ndarray:
    """``(B, N)`` intracranial fraction of each patch from cavity masks ``(B, S, S, S)``; ``ValueError`` when
    the grid does not give the model's ``n_patches`` tokens."""

    fractions = np.stack([patch_fractions(m, grid) for m in masks])
    if fractions.shape[1] != n_patches:
        raise ValueError(
            f"patch grid {tuple(grid)} gives {fractions.shape[1]} patches, model returned {n_patches}"
        )
    return fractions


def _brain_readouts(patch: np.ndarray, fractions: np.ndarray) -> dict[str, np.ndarray]:
    """The brain readouts of tokens ``(B, N, D)`` with intracranial fractions ``(B, N)``: ``brain_max``
    ``(B, D)`` and ``brain_stats`` ``(B, 3D)`` (:mod:`fmct.preprocess.brain_mask`)."""

    return {"brain_max": brain_max_pool(patch, fractions), "brain_stats": brain_stats_pool(patch, fractions)}


def _merge(out: Path, parts: Path, order: Sequence[str], keep_patch: bool, meta: dict) -> None:
    """Merge the existing output and the parts into ``out`` (store order), then drop the parts."""
    pieces = ([out] if out.exists() else []) + sorted(parts.glob("part-*.parquet"))
    embs = [load_embeddings(p, with_patch=keep_patch) for p in pieces]
    embs = [e for e in embs if e.scan_ids]
    if not embs:
        merged = Embeddings([], np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), None, meta)
    else:
        ids = [s for e in embs for s in e.scan_ids]
        pos = {s: i for i, s in enumerate(ids)}
        rank = {s: i for i, s in enumerate(order)}
        final = sorted(pos, key=lambda s: (rank.get(s, len(rank)), s))
        idx = np.asarray([pos[s] for s in final])
        patch = None
        if keep_patch and all(e.patch is not None for e in embs):
            patch = np.concatenate([np.asarray(e.patch) for e in embs])[idx]
        brain: dict[str, np.ndarray | None] = {}
        for k in BRAIN_READOUTS:  # a column some piece lacks (an older output file) is dropped
            cols = [getattr(e, k) for e in embs]
            brain[k] = np.concatenate(cols)[idx] if all(c is not None for c in cols) else None
        merged = Embeddings(
            final,
            np.concatenate([e.cls for e in embs])[idx],
            np.concatenate([e.mean_patch for e in embs])[idx],
            patch,
            {**embs[0].meta, **meta},
            **brain,
        )
    save_embeddings(merged, out)
    shutil.rmtree(parts, ignore_errors=True)


class _progress:
    """Context manager yielding ``advance(n)``: a rich progress bar, a callback, or nothing."""

    def __init__(self, how: bool | Callable[[int, int], None], total: int, label: str) -> None:
        self.how, self.total, self.label, self.done = how, total, label, 0
        self._bar: Any = None

    def __enter__(self) -> Callable[[int], None]:
        if self.how is True:

            def cols() -> list[Any]:
                from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

                return [
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                ]

            self._bar = progress(cols)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total)

        def advance(n: int) -> None:
            self.done += n
            if self._bar is not None:
                self._bar.advance(self._task, n)
            elif callable(self.how):
                self.how(self.done, self.total)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


def embed_cache(
    model: Any,
    cache: CubeCache,
    batch_size: int = 4,
    keep_patch: bool = True,
    meta: dict[str, Any] | None = None,
    device: Any = None,
    progress: bool | Callable[[int, int], None] = False,
) -> Embeddings:
    """Embed the scans of a :class:`CubeCache` (HU cubes already at the model's input size) on ``device``
    (see :func:`embed_store`); ``progress``: a rich bar (True) or a ``(done, total)`` callback."""

    size, windows = model_input_spec(model)
    if cache.cubes.shape[-1] != size or cache.fit != model_input_fit(model):
        raise ValueError(
            f"cache holds {cache.cubes.shape[-1]}³ cubes ({cache.fit}) but the model expects {size}³ "
            f"({model_input_fit(model)})"
        )
    if hasattr(model, "eval"):
        model.eval()
    place(model, device)
    grid_of = _grid_of(model)
    acc: dict[str, list[np.ndarray]] = {k: [] for k in ("cls", "mean_patch", "patch", *BRAIN_READOUTS)}
    with _progress(progress, len(cache.scan_ids), "embedding") as advance:
        for i in range(0, len(cache.scan_ids), batch_size):
            idx = torch.arange(i, min(i + batch_size, len(cache.scan_ids)))
            x = cache.batch(idx, windows)
            res = embed_batch(model, x)
            if grid_of is not None and "patch" in res:
                fractions = cache.brain_fractions(grid_of(x.shape))[idx.numpy()]
                for k, v in _brain_readouts(res["patch"], fractions).items():
                    acc[k].append(v)
            for k in ("cls", "mean_patch", "patch"):
                if k in res and (k != "patch" or keep_patch):
                    acc[k].append(res[k].astype(np.float16) if k == "patch" else res[k])
            advance(len(idx))
    cat = {k: np.concatenate(v) for k, v in acc.items() if v}
    return Embeddings(
        list(cache.scan_ids),
        cat["cls"],
        cat["mean_patch"],
        cat.get("patch"),
        {**(meta or {}), "input_size": size, "windows": windows},
        **{k: cat.get(k) for k in BRAIN_READOUTS},
    )


def embed_volumes(model: Any, volumes: Iterable[Any], batch_size: int = 4) -> dict[str, np.ndarray]:
    """Embed in-memory :class:`~fmct.io.volume.Volume` objects -> ``{"cls", "mean_patch", "patch"}``
    ``(n, ...)``, and ``brain_max`` / ``brain_stats`` for a backbone with a token grid (as :func:`embed_store`)."""

    size, windows = model_input_spec(model)
    fit = model_input_fit(model)
    grid_of = _grid_of(model)
    acc: dict[str, list[np.ndarray]] = {}
    batch: list[Any] = []
    masks: list[np.ndarray] = []

    def run() -> None:
        if batch:
            x = torch.stack(batch)
            res = embed_batch(model, x)
            if grid_of is not None and "patch" in res:
                fractions = _mask_fractions(np.stack(masks), grid_of(x.shape), res["patch"].shape[1])
                res.update(_brain_readouts(res["patch"], fractions))
            for k, v in res.items():
                acc.setdefault(k, []).append(v)
            batch.clear()
            masks.clear()

    for vol in volumes:
        hu, _ = cube_hu(vol, size, fit)
        batch.append(apply_windows(hu, windows))
        if grid_of is not None:
            masks.append(intracranial_mask(hu.numpy()))
        if len(batch) >= batch_size:
            run()
    run()
    return {k: np.concatenate(v) for k, v in acc.items()}
