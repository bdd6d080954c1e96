"""``fmct.pretrain``: a new run, resume, export, the checks made before any folder is written, and the CLI
going through it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

import fmct
from fmct.api import PretrainSummary, UsageError
from fmct.api.pretraining import override_list
from fmct.cli import app
from fmct.models.hub import BackboneModel


def test_overrides_as_a_dict_or_key_value_strings() -> None:
    assert override_list({"max_steps": 3, "optim": {"lr": 1e-4}, "labels": "l.csv", "best_by": None}) == [
        "max_steps=3",
        "optim.lr=0.0001",
        'labels="l.csv"',
        "best_by=null",
    ]
    assert override_list(["max_steps=3"]) == ["max_steps=3"] and override_list(None) == []


def test_pretrain_resume_and_export(tiny_store: Path, tiny_overrides: list[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    s = fmct.pretrain(None, tiny_store, run, [*tiny_overrides, "max_steps=2"], progress=False)
    assert isinstance(s, PretrainSummary) and (s.run, s.model, s.step) == (run, run / "model", 2)
    assert s.loss is not None and math.isfinite(s.loss) and s.best is None
    losses = [json.loads(ln)["loss"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert s.loss == pytest.approx(losses[-1])
    assert s.line() == f"done: step 2, loss {s.loss:.4f}; model in {run / 'model'}"
    model = s.load_model()
    assert isinstance(model, BackboneModel) and model.embed_dim == 32 and model.training_info["steps"] == 2
    with pytest.raises(UsageError, match="keeps no best model"):
        s.load_model(best=True)

    more = fmct.pretrain(resume=run, overrides={"max_steps": 3}, progress=False)
    assert more.step == 3 and more.loss is not None
    done = fmct.pretrain(resume=run, progress=False)  # already at max_steps: nothing to train
    assert done.step == 3 and done.loss is None and done.line().startswith(f"nothing to train: {run}")
    exported = fmct.pretrain(resume=run, export_only=True)
    assert exported.step == 3 and exported.model == run / "model"


def test_arguments_are_checked_before_a_run_folder_exists(
    tiny_store: Path, tiny_overrides, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    with pytest.raises(UsageError, match="needs a store"):
        fmct.pretrain(None, None, run)
    with pytest.raises(UsageError, match="unknown config key 'max_stepz'"):
        fmct.pretrain(None, tiny_store, run, {"max_stepz": 3})
    with pytest.raises(FileNotFoundError, match="not a store"):
        fmct.pretrain(None, tmp_path, run, tiny_overrides)
    with pytest.raises(FileNotFoundError, match="config file not found"):
        fmct.pretrain(tmp_path / "none.yaml", tiny_store, run)
    with pytest.raises(UsageError, match="needs a run to resume"):
        fmct.pretrain(None, tiny_store, run, export_only=True)
    with pytest.raises(FileNotFoundError, match="config.yaml: not found"):
        fmct.pretrain(resume=run)
    assert not run.exists()


def test_the_pretrain_command_calls_the_api(
    tiny_store: Path, tiny_overrides, tmp_path: Path, monkeypatch
) -> None:
    import fmct.api.pretraining as api

    seen = {}

    def fake(config, data, out, overrides, *, resume, export_only, progress):
        seen.update(config=config, data=data, out=out, overrides=overrides, resume=resume, progress=progress)
        return PretrainSummary(Path(out), Path(out) / "model", 7, 0.5)

    monkeypatch.setattr(api, "pretrain", fake)
    args = [
        "pretrain",
        "--data",
        str(tiny_store),
        "--out",
        str(tmp_path / "r"),
        "--no-progress",
        "max_steps=7",
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert seen == dict(config=None, data=tiny_store, out=tmp_path / "r", overrides=["max_steps=7"], resume=None,
                        progress=False)  # fmt: skip
    assert f"done: step 7, loss 0.5000; model in {tmp_path / 'r' / 'model'}" in r.output
