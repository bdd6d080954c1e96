"""The store of preprocessed scans: ``scans/<scan_id>.npy`` + ``.json``, ``manifest.parquet``.

``ingest`` builds it (crash-safe, resumable, parallel); ``ScanStore`` reads it.
"""

from fmct.store.batch import IngestSummary, ingest, parse_shard
from fmct.store.manifest import COLUMNS as MANIFEST_COLUMNS
from fmct.store.manifest import build_manifest
from fmct.store.reader import ScanStore, StoreReadError
from fmct.store.writer import write_scan

__all__ = [
    "MANIFEST_COLUMNS",
    "IngestSummary",
    "ScanStore",
    "StoreReadError",
    "build_manifest",
    "ingest",
    "parse_shard",
    "write_scan",
]
