"""``fmct.ingest``: the store a user gets from the Python API, its errors, and the CLI going through it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import fmct
from fmct.api import UsageError
from fmct.cli import app


def test_ingest_returns_a_summary_and_resumes(synth_nifti: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    s = fmct.ingest(synth_nifti / "nifti", store, spacing=2.0, progress=False)
    assert (s.ok, s.skipped, s.failed, s.present) == (3, 0, 0, 0)
    assert s.manifest == store / "manifest.parquet" and s.exit_code() == 0
    manifest = pd.read_parquet(s.manifest)
    labels = pd.read_csv(synth_nifti / "labels.csv")
    assert sorted(manifest["scan_id"]) == sorted(labels["scan_id"])  # ids join the synthetic labels
    assert set(manifest["spacing_mm"].map(tuple)) == {(2.0, 2.0, 2.0)}
    assert "rows=" not in repr(s) and len(repr(s)) < 300  # a notebook shows the counts, not every row
    again = fmct.ingest([synth_nifti / "nifti"], store, spacing=2.0, progress=False)
    assert (again.ok, again.present) == (0, 3) and again.line().endswith(f"3 already present -> {s.manifest}")


def test_ingest_errors_name_the_input(synth_nifti: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope: no such file or folder"):
        fmct.ingest([synth_nifti, tmp_path / "nope"], tmp_path / "s")
    with pytest.raises(UsageError, match=r"1 <= K <= N"):
        fmct.ingest(synth_nifti, tmp_path / "s", shard=(5, 4))
    with pytest.raises(UsageError, match="no input"):
        fmct.ingest([], tmp_path / "s")
    with pytest.raises(UsageError, match="spacing"):
        fmct.ingest(synth_nifti, tmp_path / "s", spacing=-1.0)
    assert not (tmp_path / "s").exists()  # nothing written before the arguments were checked


def test_the_ingest_command_calls_the_api(synth_nifti: Path, tmp_path: Path, monkeypatch) -> None:
    import fmct.api.ingestion as api

    calls = []
    real = api.ingest

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **{**kwargs, "progress": False})

    monkeypatch.setattr(api, "ingest", spy)
    args = [
        "ingest",
        str(synth_nifti / "nifti"),
        "--out",
        str(tmp_path / "s"),
        "--spacing",
        "2",
        "--shard",
        "1/1",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    (inputs, out), kw = calls[0]
    assert inputs == [synth_nifti / "nifti"] and out == tmp_path / "s"
    assert kw["spacing"] == 2.0 and kw["shard"] == "1/1" and kw["deface"] is False
    assert f"ingested 3 ok, 0 skipped, 0 failed -> {tmp_path / 's' / 'manifest.parquet'}" in r.output
