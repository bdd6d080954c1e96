"""``fmct.ingest`` is both the Python API's function and the ingest package."""

from __future__ import annotations

import fmct
import fmct.api.ingestion
import fmct.ingest.plan
from fmct.ingest.pipeline import run_ingest
from fmct.ingest.summary import IngestSummary


def test_calling_the_package_runs_the_api(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(fmct.api.ingestion, "ingest", lambda *a, **k: calls.append((a, k)) or "summary")
    assert fmct.ingest(["in"], "store", spacing=2.0) == "summary"
    assert calls == [((["in"], "store"), {"spacing": 2.0})]


def test_the_package_holds_the_pipeline() -> None:
    assert fmct.ingest.plan.parse_shard("2/3") == (2, 3)
    assert fmct.ingest.run_ingest is run_ingest and fmct.ingest.IngestSummary is IngestSummary
    assert fmct.api.IngestSummary is IngestSummary
