"""Ingest on a full disk: one line "no space left on <folder>", exit 1, the stored scans and the former
manifest kept, no partial files (before: a per-scan "N requested and M written" and a raw traceback)."""

from __future__ import annotations

import errno
import shutil

import pandas as pd
from typer.testing import CliRunner

from fmct.cli import app
from fmct.ingest import run_ingest as ingest
from fmct.store import ScanStore


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_scan_write_on_a_full_disk_stops_the_batch_and_keeps_stored_scans(inputs, tmp_path, monkeypatch):
    store = tmp_path / "store"
    first = tmp_path / "first"
    first.mkdir()
    shutil.copy(inputs / "head_a.nii.gz", first)
    assert ingest([first], store).ok == 1
    monkeypatch.setattr("fmct.store.writer.write_npy", _enospc)
    r = CliRunner().invoke(app, ["ingest", str(inputs), "--out", str(store)])
    assert r.exit_code == 1, r.output
    assert f"fmct ingest: no space left on {store / 'scans'} (writing head_b.npy)" in r.output.replace(
        "\n", ""
    )
    assert "Traceback" not in r.output
    assert not list(store.rglob("*.tmp"))
    st = ScanStore(store)
    assert st.scan_ids == ["head_a"] and st.verify("head_a") is None
    monkeypatch.undo()
    assert ingest([inputs], store).ok == 1  # a re-run after freeing space resumes


def test_manifest_write_on_a_full_disk_keeps_the_former_manifest(inputs, tmp_path, monkeypatch):
    store = tmp_path / "store"
    ingest([inputs], store)
    before = (store / "manifest.parquet").read_bytes()
    monkeypatch.setattr(pd.DataFrame, "to_parquet", _enospc)
    r = CliRunner().invoke(app, ["ingest", str(inputs), "--out", str(store)])
    assert r.exit_code == 1, r.output
    assert f"no space left on {store} (writing manifest.parquet)" in r.output.replace("\n", "")
    assert (store / "manifest.parquet").read_bytes() == before
    assert not list(store.rglob("*.tmp"))
