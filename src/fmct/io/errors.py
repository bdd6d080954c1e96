"""Why a scan was not ingested. Both carry a human-readable reason that goes into the manifest."""

from __future__ import annotations


class ScanProblem(Exception):
    """Base class: ``str(exc)`` is the reason written to the manifest (never contains PHI)."""

    status = "failed"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SkipScan(ScanProblem):
    """Not a head-CT image series we should ingest (scout, dose report, MR, too few slices …)."""

    status = "skipped"


class InvalidScan(ScanProblem):
    """Meant to be a CT series but broken (truncated file, inconsistent slices, NaN values …)."""

    status = "failed"
