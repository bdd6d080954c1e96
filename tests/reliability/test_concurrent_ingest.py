"""Two ingests into one store: the second is refused while the first (paused mid-scan) runs, and the
first ends with every scan stored (before the lock, the second run's clean-up deleted its in-flight
files and the first reported success over a manifest of "scan files missing")."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from reliakit import start_cli, wait_until, write_heads
from typer.testing import CliRunner

from fmct.cli import app


def _half_written(store: Path) -> list[Path]:
    d = store / "scans"
    return [p for p in d.glob("*.npy") if not p.with_suffix(".json").exists()] if d.is_dir() else []


def test_second_ingest_is_refused_while_the_first_is_mid_scan(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    write_heads(inputs, 3)
    store = tmp_path / "store"
    args = ["ingest", str(inputs), "--out", str(store)]
    first = start_cli(args, tmp_path, slow="fmct.store.writer:atomic_write_json", delay_s=1.5)
    try:
        wait_until(lambda: bool(_half_written(store)), first)  # paused between a scan's .npy and .json
        second = CliRunner().invoke(app, args)
        assert second.exit_code == 1, second.output
        assert f"is being written by pid {first.pid} on host {os.uname().nodename}" in second.output
        assert _half_written(store), "the refused run must not touch the first run's files"
        out, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, out.decode()
    assert "3 ok" in out.decode()
    man = pd.read_parquet(store / "manifest.parquet")
    assert (man["status"] == "ok").all() and len(man) == 3, man[["status", "reason"]]
