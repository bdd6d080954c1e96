"""Crash safety of `fmct ingest`: SIGKILL the process group mid-run (twice), re-run, and the store is
complete and identical to an uninterrupted ingest (no duplicate, half-written or leftover files)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from reliakit import group_alive, kill_group, start_cli, wait_until, write_heads
from typer.testing import CliRunner

from fmct.cli import app
from fmct.ingest import run_ingest
from fmct.store import ScanStore

N_SCANS = 12


def _records(store: Path) -> list[Path]:
    d = store / "records"
    return sorted(d.glob("*.json")) if d.is_dir() else []


def _orphans(store: Path) -> list[Path]:
    """Half-written scans: a ``.npy`` without its ``.json`` sidecar, or temp files."""
    d = store / "scans"
    if not d.is_dir():
        return []
    return [p for p in d.glob("*.npy") if not p.with_suffix(".json").exists()] + list(d.glob("*.tmp"))


def _kill_when(args: list[str], cwd: Path, store: Path, min_records: int) -> int:
    """Run ingest slowed before each sidecar write; SIGKILL its group once ``min_records`` records exist
    and a scan is half-written (its ``.npy`` without ``.json``). Returns the number of records then."""
    proc = start_cli(args, cwd, slow="fmct.store.writer:atomic_write_json", delay_s=0.25)
    wait_until(lambda: len(_records(store)) >= min_records and bool(_orphans(store)), proc)
    kill_group(proc)
    assert proc.returncode == -9
    assert not group_alive(proc.pid)
    return len(_records(store))


def test_sigkill_mid_ingest_then_rerun_gives_a_complete_store(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    write_heads(inputs, N_SCANS)
    store = tmp_path / "store"
    args = ["ingest", str(inputs), "--out", str(store)]

    n1 = _kill_when(args, tmp_path, store, min_records=2)
    assert 2 <= n1 < N_SCANS
    assert _orphans(store), "the kill should have left a half-written scan behind"
    assert not (store / "manifest.parquet").exists()

    # second interrupted run: resumes (stored scans are kept), gets further, is killed again
    n2 = _kill_when(args, tmp_path, store, min_records=n1 + 2)
    assert n1 < n2 < N_SCANS

    done = CliRunner().invoke(app, args)  # the completing run, in this process
    assert done.exit_code == 0, done.output
    assert "leftover file(s) of an interrupted run" in done.output
    assert "took over the stale lock of an ingest that ended without releasing it (pid " in done.output
    assert f"{n2} already present" in done.output

    # no leftovers anywhere
    assert not list(store.rglob("*.tmp"))
    npys = sorted(p.stem for p in (store / "scans").glob("*.npy"))
    sides = sorted(p.stem for p in (store / "scans").glob("*.json"))
    assert npys == sides and len(npys) == N_SCANS
    # one manifest row per input, all ok, no duplicates
    man = pd.read_parquet(store / "manifest.parquet")
    assert len(man) == N_SCANS
    assert man["scan_id"].is_unique and man["source"].is_unique
    assert sorted(Path(s).name for s in man["source"]) == sorted(p.name for p in inputs.iterdir())
    assert (man["status"] == "ok").all(), man[["source", "status", "reason"]]
    assert len(_records(store)) == N_SCANS

    # every scan loads and equals an uninterrupted ingest of the same inputs, byte for byte
    ref = tmp_path / "ref"
    run_ingest([inputs], ref)
    got, want = ScanStore(store), ScanStore(ref)
    assert got.scan_ids == want.scan_ids == sorted(npys)
    for sid in got.scan_ids:
        a, b = got.load(sid), want.load(sid)
        assert a.array.dtype == np.int16 and np.array_equal(a.array, b.array)
        np.testing.assert_array_equal(a.affine, b.affine)
        assert json.loads((store / "scans" / f"{sid}.json").read_text()) == json.loads(
            (ref / "scans" / f"{sid}.json").read_text()
        )
