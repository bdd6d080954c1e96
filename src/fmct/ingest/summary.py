"""What one ingest run did: counts per status and the manifest path (:class:`IngestSummary`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class IngestSummary:
    """Counts of this run (``present`` = already in the store, not re-processed; ``warned`` = scans stored
    this run whose manifest row has warnings; ``damaged`` = stored scans whose file was found damaged
    (wrong size) and were re-done) and the manifest path."""

    ok: int = 0
    skipped: int = 0
    failed: int = 0
    present: int = 0
    cleaned: int = 0
    warned: int = 0
    took_over: str | None = None
    unlocked: str | None = None
    damaged: list[str] = field(default_factory=list)
    manifest: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)  # this run's manifest rows

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        setattr(self, row["status"], getattr(self, row["status"]) + 1)
        self.warned += bool(row["status"] == "ok" and row.get("warnings"))

    def line(self) -> str:
        """``ingested N ok (W with warnings), M skipped, F failed -> STORE/manifest.parquet``."""
        present = f", {self.present} already present" if self.present else ""
        ok = f"{self.ok} ok" + (f" ({self.warned} with warnings: see the manifest)" if self.warned else "")
        return f"ingested {ok}, {self.skipped} skipped, {self.failed} failed{present} -> {self.manifest}"

    def exit_code(self, strict: bool = False) -> int:
        """0 when something was ingested or everything was already present; 1 when nothing was, or
        (``strict``) when any input failed."""
        if strict and self.failed:
            return 1
        return 0 if (self.ok + self.present) > 0 else 1
