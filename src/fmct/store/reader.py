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
from fmct.store.writer import scan_paths


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
        return json.loads(side.read_text())

    def load(self, scan_id: str, mmap: bool = False) -> Volume:
        """The stored scan as a :class:`Volume` (``int16 (X, Y, Z)`` HU; ``meta`` holds ``scan_id``,
        ``preprocess`` and the source's de-identified facts). ``mmap=True`` memory-maps the array."""
        side = self.meta(scan_id)
        npy, _ = scan_paths(self.root, scan_id)
        arr = np.load(npy, mmap_mode="r" if mmap else None, allow_pickle=False)
        meta = dict(side.get("meta") or {})
        meta["scan_id"] = scan_id
        meta.setdefault("preprocess", side.get("preprocess"))
        return Volume(arr, np.asarray(side["affine"], dtype=np.float64), meta)
