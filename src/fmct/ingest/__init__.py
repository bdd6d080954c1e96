"""Ingest: DICOM folders / NIfTI files -> a store of preprocessed scans (``fmct ingest``).

- :mod:`~fmct.ingest.plan` — the work: one item per DICOM series / NIfTI file (headers only), shards ``K/N``.
- :mod:`~fmct.ingest.worker` — one item read, preprocessed and stored; the crash-tolerant process pool.
- :mod:`~fmct.ingest.pipeline` — :func:`run_ingest`: lock, resume, plan, process, rebuild the manifest.
- :mod:`~fmct.ingest.summary` — :class:`IngestSummary`, the counts of one run.

Calling the package, ``fmct.ingest(inputs, out, ...)``, runs :func:`fmct.api.ingestion.ingest` (options checked,
progress shown). The names below are imported on first use, so that an ingest worker imports only what it runs.
"""

from importlib import import_module
from types import ModuleType
from typing import Any

__all__ = ["IngestSummary", "parse_shard", "run_ingest"]
_LAZY = {
    "IngestSummary": "fmct.ingest.summary",
    "run_ingest": "fmct.ingest.pipeline",
    "parse_shard": "fmct.ingest.plan",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fmct.ingest' has no attribute {name!r}")


class _CallablePackage(ModuleType):
    """Lets users write ``fmct.ingest(inputs, out, ...)`` (:func:`fmct.api.ingestion.ingest`) while
    ``fmct.ingest`` stays the package that holds ``plan``, ``worker``, ``pipeline`` …"""

    def __call__(self, *args, **kwargs):
        return import_module("fmct.api.ingestion").ingest(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallablePackage
