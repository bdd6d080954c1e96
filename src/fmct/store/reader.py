"""Reading a store written by ``fmct ingest``."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmct.io.volume import Volume
from fmct.store.manifest import read_manifest
from fmct.store.writer import file_crc32, npy_size_problem, scan_paths


class StoreReadError(ValueError):
    """A stored scan cannot be read: the message names the scan id, the file and the reason."""

    def one_line(self) -> str:
        """The message without the worker traceback a ``DataLoader`` re-raise puts in front of it."""
        last = str(self).strip().splitlines()[-1] if str(self).strip() else ""
        return last.split("StoreReadError: ", 1)[-1]


class ScanStore:
    """A folder of preprocessed scans (see :mod:`fmct.store.writer` for the layout).

    Example::

        store = ScanStore("out/store")
        for sid in store.scan_ids:
            vol = store.load(sid)  # int16 (X, Y, Z) HU, RAS, isotropic
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / "manifest.parquet").is_file() and not (self.root / "records").is_dir():
            raise FileNotFoundError(
                f"{self.root}: not an fmct store (no manifest.parquet); run `fmct ingest`"
            )

    @cached_property
    def manifest(self) -> pd.DataFrame:
        """One row per ingested input (see :data:`fmct.store.manifest.COLUMNS`)."""
        return read_manifest(self.root)

    @cached_property
    def scan_ids(self) -> list[str]:
        """Ids of the scans stored successfully (status ``ok``), sorted."""
        df = self.manifest
        return sorted(str(s) for s in df.loc[df["status"] == "ok", "scan_id"].dropna().unique())

    @cached_property
    def preprocess_config(self) -> dict[str, Any]:
        """The ``PreprocessConfig.to_dict()`` every scan of this store went through."""
        info = self.root / "store.json"
        return json.loads(info.read_text()).get("preprocess", {}) if info.is_file() else {}

    def __len__(self) -> int:
        return len(self.scan_ids)

    def __contains__(self, scan_id: object) -> bool:
        return scan_id in set(self.scan_ids)

    def __iter__(self):
        return iter(self.scan_ids)

    def meta(self, scan_id: str) -> dict[str, Any]:
        """The scan's sidecar: ``scan_id, shape, spacing_mm, affine, preprocess, meta`` (de-identified)."""
        _, side = scan_paths(self.root, scan_id)
        if not side.is_file():
            raise KeyError(f"{scan_id}: not in store {self.root}")
        try:
            return json.loads(side.read_text())
        except (OSError, ValueError) as exc:
            raise StoreReadError(
                f"scan {scan_id}: sidecar unreadable: {exc}; re-run fmct ingest ({side})"
            ) from None

    def load(self, scan_id: str, mmap: bool = False) -> Volume:
        """The stored scan as a :class:`Volume` (``int16 (X, Y, Z)`` HU; ``meta`` holds ``scan_id``,
        ``preprocess`` and the source's de-identified facts). ``mmap=True`` memory-maps the array.

        Raises:
            StoreReadError: the ``.npy`` is missing, of the wrong size (checked before reading) or
                unreadable; the message names the scan and the file.
        """
        side = self.meta(scan_id)
        npy, _ = scan_paths(self.root, scan_id)
        problem = npy_size_problem(npy, side.get("file_bytes"))
        if problem is None:
            try:
                arr = np.load(npy, mmap_mode="r" if mmap else None, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            raise StoreReadError(f"scan {scan_id}: {problem}; re-run fmct ingest to redo it ({npy})")
        meta = dict(side.get("meta") or {})
        meta["scan_id"] = scan_id
        meta.setdefault("preprocess", side.get("preprocess"))
        return Volume(arr, np.asarray(side["affine"], dtype=np.float64), meta)

    def verify(self, scan_id: str) -> str | None:
        """Why the stored scan's ``.npy`` is damaged (size, or CRC-32 against its sidecar), or ``None``.

        Reads the whole file (about 10 ms per 17 MB scan); ``load`` checks only the size."""
        side = self.meta(scan_id)
        npy, _ = scan_paths(self.root, scan_id)
        problem = npy_size_problem(npy, side.get("file_bytes"))
        if problem is None and side.get("crc32") and file_crc32(npy) != side["crc32"]:
            problem = f"checksum {file_crc32(npy)} differs from the recorded {side['crc32']}"
        return problem


def open_store(store: Any) -> Any:
    """A store root path -> :class:`ScanStore`; an object with ``.load(scan_id)`` (a store already open, an
    in-memory stand-in) is returned as is."""
    if hasattr(store, "load"):
        return store
    return ScanStore(store)
