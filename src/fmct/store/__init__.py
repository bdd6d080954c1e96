"""The store of preprocessed scans: ``scans/<scan_id>.npy`` + ``.json``, ``manifest.parquet``.

``fmct.ingest`` builds it (crash-safe, resumable, parallel); ``ScanStore`` reads it. The names below are
imported lazily, so that an ingest worker never imports pandas/pyarrow (about 100 MB of RSS) for the
reader it does not use.
"""

from importlib import import_module
from typing import Any

__all__ = [
    "MANIFEST_COLUMNS",
    "ScanStore",
    "StoreReadError",
    "build_manifest",
    "open_store",
    "write_scan",
]
_LAZY = {
    "MANIFEST_COLUMNS": ("fmct.store.manifest", "COLUMNS"),
    "build_manifest": ("fmct.store.manifest", "build_manifest"),
    "ScanStore": ("fmct.store.reader", "ScanStore"),
    "StoreReadError": ("fmct.store.reader", "StoreReadError"),
    "open_store": ("fmct.store.reader", "open_store"),
    "write_scan": ("fmct.store.writer", "write_scan"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'fmct.store' has no attribute {name!r}")
