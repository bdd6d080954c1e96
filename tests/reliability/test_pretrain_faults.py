"""`fmct pretrain` under faults: one line naming the cause, no traceback.

A truncated scan file (before: a traceback ending in numpy's "Failed to read all data for array"), a
full disk at a checkpoint (before: "enforce fail at inline_container.cc")."""

from __future__ import annotations

from pathlib import Path

from reliakit import TINY_PRETRAIN, write_heads
from typer.testing import CliRunner

from fmct.cli import app
from fmct.ingest import run_ingest as ingest
from fmct.train import checkpoint


def _store(tmp_path: Path, n: int = 3) -> Path:
    write_heads(tmp_path / "in", n)
    store = tmp_path / "store"
    ingest([tmp_path / "in"], store)
    return store


def test_pretrain_names_the_truncated_scan(tmp_path: Path) -> None:
    store = _store(tmp_path)
    npy = store / "scans" / "head_01.npy"
    npy.write_bytes(npy.read_bytes()[:1000])
    args = ["pretrain", "--data", str(store), "--out", str(tmp_path / "run"), "--no-progress"]
    r = CliRunner().invoke(app, [*args, *TINY_PRETRAIN, "max_steps=2", "export=false"])
    assert r.exit_code == 1, r.output
    out = r.output.replace("\n", "")
    assert "fmct pretrain: scan head_01: file truncated (1000 of " in out and str(npy) in out, r.output
    assert "Traceback" not in r.output


def test_pretrain_on_a_full_disk_names_the_run_folder_and_keeps_the_checkpoint(
    tmp_path: Path, monkeypatch
) -> None:
    store = _store(tmp_path)
    run = tmp_path / "run"
    args = [
        "pretrain",
        "--data",
        str(store),
        "--out",
        str(run),
        "--no-progress",
        *TINY_PRETRAIN,
        "export=false",
    ]
    assert CliRunner().invoke(app, [*args, "max_steps=2", "checkpoint_every=2"]).exit_code == 0
    saved = (run / "checkpoint.pt").read_bytes()

    def full(obj, f):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    r = CliRunner().invoke(app, ["pretrain", "--resume", str(run), "--no-progress", "max_steps=4"])
    assert r.exit_code == 1, r.output
    out = r.output.replace("\n", "")
    assert (
        f"fmct pretrain: no space left on {run} (writing checkpoint.pt); free some space and continue with --resume {run}"
        in out
    )
    assert "Traceback" not in r.output
    assert (run / "checkpoint.pt").read_bytes() == saved


def test_pretrain_on_a_store_without_usable_scans_exits_2_without_a_run_folder(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("not a scan")
    store = tmp_path / "store"
    ingest([tmp_path / "in"], store)
    run = tmp_path / "run"
    r = CliRunner().invoke(
        app, ["pretrain", "--data", str(store), "--out", str(run), "--no-progress", *TINY_PRETRAIN]
    )
    assert r.exit_code == 2, r.output
    out = r.output.replace("\n", "")
    assert f"fmct pretrain: no usable scans in {store}: 0 of 1 input(s) were stored ok" in out
    assert "Traceback" not in r.output
    assert not run.exists()
