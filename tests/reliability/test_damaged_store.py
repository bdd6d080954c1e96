"""`fmct pretrain` on a store with a truncated scan file: one line naming the scan and the file, exit 1
(before: a traceback ending in numpy's "Failed to read all data for array" or a reshape error)."""

from __future__ import annotations

from pathlib import Path

from reliakit import TINY_PRETRAIN, write_heads
from typer.testing import CliRunner

from fmct.cli import app
from fmct.store import ingest


def test_pretrain_names_the_truncated_scan(tmp_path: Path) -> None:
    write_heads(tmp_path / "in", 3)
    store = tmp_path / "store"
    ingest([tmp_path / "in"], store)
    npy = store / "scans" / "head_01.npy"
    npy.write_bytes(npy.read_bytes()[:1000])
    args = ["pretrain", "--data", str(store), "--out", str(tmp_path / "run"), "--no-progress"]
    r = CliRunner().invoke(app, [*args, *TINY_PRETRAIN, "max_steps=2", "export=false"])
    assert r.exit_code == 1, r.output
    out = r.output.replace("\n", "")
    assert "fmct pretrain: scan head_01: file truncated (1000 of " in out and str(npy) in out, r.output
    assert "Traceback" not in r.output
