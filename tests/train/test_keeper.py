"""Kept teacher backbones: snapshots every N steps and RUN/model-best chosen by a kNN monitor."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from fmct.cli import app
from fmct.models.hub import load_model
from fmct.train.config import resolve_config
from fmct.train.keeper import ModelKeeper, describe_best, read_best, snapshot_dir
from fmct.train.loop import train


class _Saves:
    """A ``save`` callable that records what it was asked to write."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, int]] = []

    def __call__(self, backbone, out: Path, steps: int) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        self.calls.append((out, steps))
        return out


def test_offer_keeps_the_highest_value_and_the_earlier_of_ties(tmp_path) -> None:
    saves = _Saves()
    keeper = ModelKeeper(tmp_path, saves, best_by="knn_auroc_brain_max")
    net = torch.nn.Linear(1, 1)
    offers = [(1, 0.55), (2, 0.61), (3, 0.61), (4, float("nan")), (5, 0.58), (6, 0.64)]
    kept = [keeper.offer({"knn_auroc_brain_max": v}, net, s) for s, v in offers]
    assert kept == [True, True, False, False, False, True]
    assert [s for _, s in saves.calls] == [1, 2, 6]
    assert all(out == tmp_path / "model-best" for out, _ in saves.calls)
    assert read_best(tmp_path) == {"key": "knn_auroc_brain_max", "value": 0.64, "step": 6,
                                   "path": str(tmp_path / "model-best")}  # fmt: skip
    assert not keeper.offer({"loss": 1.0}, net, 7)  # a record without the key changes nothing


def test_describe_best_warns_when_only_the_first_update_was_kept() -> None:
    best = {"key": "knn_auroc_brain_max", "value": 0.5654, "step": 1, "path": "runs/x/model-best"}
    line = describe_best(best, 1200)
    assert line.startswith("best knn_auroc_brain_max 0.565 at step 1: runs/x/model-best")
    assert "close to its random initialisation" in line and "1200 steps" in line
    assert "note:" not in describe_best({**best, "step": 600}, 1200)
    assert "note:" not in describe_best(best, 1)  # a one-step run has nothing later to compare


def test_resume_continues_the_best_of_the_same_key_only(tmp_path) -> None:
    ModelKeeper(tmp_path, _Saves(), best_by="knn_auroc_macro").offer({"knn_auroc_macro": 0.7}, None, 10)
    saves = _Saves()
    resumed = ModelKeeper(tmp_path, saves, best_by="knn_auroc_macro", resume=True)
    assert not resumed.offer({"knn_auroc_macro": 0.65}, None, 20) and saves.calls == []
    other = ModelKeeper(tmp_path, saves, best_by="knn_auroc_brain_max", resume=True)
    assert other.best is None and other.offer({"knn_auroc_brain_max": 0.5}, None, 20)
    fresh = ModelKeeper(tmp_path, _Saves(), best_by="knn_auroc_brain_max")  # a new run ignores best.json
    assert fresh.best is None


def test_snapshot_schedule(tmp_path) -> None:
    keeper = ModelKeeper(tmp_path, _Saves(), snapshot_every=5)
    assert [n for n in range(12) if keeper.wants_snapshot(n)] == [5, 10]
    assert not ModelKeeper(tmp_path, _Saves()).needs_backbone
    assert snapshot_dir(tmp_path, 5) == tmp_path / "snapshots" / "step-000005"


def _labels(tmp_path: Path) -> Path:
    labels = tmp_path / "labels.csv"
    pd.DataFrame(
        {"scan_id": [f"scan{i:03d}" for i in range(6)], "patient_id": [f"pat{i // 2}" for i in range(6)],
         "ich": [0, 1, 0, 1, 0, 1], "mass": [1, 0, 0, 1, 1, 0]}
    ).to_csv(labels, index=False)  # fmt: skip
    return labels


def _train(store: Path, overrides: list[str], tmp_path: Path, extra: list[str]) -> Path:
    """Train the tiny config with the kNN monitor on :func:`_labels`; returns the run folder."""
    run = tmp_path / "run"
    cfg = resolve_config(None, [*overrides, "checkpoint_every=0", f"labels={_labels(tmp_path)}", *extra])
    train(cfg, store, run, progress=False)
    return run


def test_train_writes_snapshots_and_the_best_model(tiny_store, tiny_overrides, tmp_path) -> None:
    extra = ["max_steps=4", "monitor_every=1", "snapshot_every=1", "best_by=knn_auroc_brain_max"]
    run = _train(tiny_store, tiny_overrides, tmp_path, extra)
    snaps = sorted(p.name for p in (run / "snapshots").iterdir())
    assert snaps == ["step-000001", "step-000002", "step-000003", "step-000004"]
    weights = {n: load_file(run / "snapshots" / n / "model.safetensors") for n in snaps}
    final = load_file(run / "model" / "model.safetensors")
    assert all(torch.equal(final[k], weights["step-000004"][k]) for k in final)
    assert not all(torch.equal(final[k], weights["step-000001"][k]) for k in final)  # the teacher moved
    # the best step is the first maximum of the monitor (row i is logged after i + 1 updates)
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    values = [r["knn_auroc_brain_max"] for r in recs]
    best = read_best(run)
    assert best is not None and best["step"] == values.index(max(values)) + 1
    assert best["value"] == pytest.approx(max(values))
    kept = load_file(run / "model-best" / "model.safetensors")
    at_best = weights[f"step-{best['step']:06d}"]
    assert all(torch.equal(kept[k], at_best[k]) for k in kept)
    model = load_model(run / "model-best")
    assert model.training_info["steps"] == best["step"]


def test_cli_rejects_best_by_without_labels_and_unknown_keys(tiny_store, tiny_overrides, tmp_path) -> None:
    base = ["pretrain", "--data", str(tiny_store), "--no-progress", *tiny_overrides, "max_steps=2"]
    cases = {
        "best_by=knn_auroc_brain_max": "needs labels=",
        "best_by=loss": "best_by must be one of",
        "snapshot_every=-2": "snapshot_every must be",
    }
    for i, (arg, msg) in enumerate(cases.items()):
        r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / f"r{i}"), arg])
        assert r.exit_code == 2 and msg in r.output, r.output
        assert not (tmp_path / f"r{i}").exists()  # nothing was started
    r = CliRunner().invoke(
        app, [*base, "--out", str(tmp_path / "ok"), f"labels={_labels(tmp_path)}", "monitor_every=1",
              "best_by=knn_auroc_macro"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "best knn_auroc_macro" in r.output and (tmp_path / "ok" / "model-best" / "config.json").exists()
    assert "done: step 2" in r.output and "nothing to train" not in r.output
    r = CliRunner().invoke(app, [*base[:-1], "--out", str(tmp_path / "plain"), "max_steps=1"])
    assert r.exit_code == 0 and "done: step 1" in r.output, r.output
    assert "nothing to train" not in r.output and "best " not in r.output


def test_monitors_score_the_snapshot_steps(tiny_store, tiny_overrides, tmp_path) -> None:
    """With monitor_every = snapshot_every the kNN monitor is logged for exactly the snapshotted teachers
    (plus the first update and the last), so a best model is always one of the snapshots."""
    extra = ["max_steps=5", "monitor_every=2", "snapshot_every=2", "export=false"]
    run = _train(tiny_store, tiny_overrides, tmp_path, extra)
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    monitored = [r["step"] + 1 for r in recs if "knn_auroc_brain_max" in r]  # updates done
    assert monitored == [1, 2, 4, 5]
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == ["step-000002", "step-000004"]
