"""``fmct.evaluate``: the protocol from Python, its report object, and how its settings merge."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pandas as pd
import pytest

import fmct
from fmct.api import EvaluationReport, UsageError
from fmct.api.evaluation import resolve


def test_settings_merge_like_the_cli() -> None:
    config = {"models": {"a": "dir_a"}, "labels": "l.csv", "protocol": {"n_boot": 500, "feature": "cls"}}
    cfg = resolve(config, ["protocol.n_boot=200", "out=o"], models={"b": "dir_b"}, seeds=2, methods="linear,knn",
                  fractions=None, data="store")  # fmt: skip
    assert cfg["models"] == {"a": "dir_a", "b": "dir_b"} and cfg["labels"] == "l.csv" and cfg["out"] == "o"
    assert cfg["protocol"] == {"n_boot": 200, "feature": "cls", "seeds": [0, 1], "methods": ["linear", "knn"]}
    assert cfg["data"] == "store"
    assert resolve(None, [], models="runs/x/model")["protocol"]["feature"] == "brain_max"
    assert resolve(None, [], models="runs/x/model")["models"] == {"model": "runs/x/model"}
    with pytest.raises(UsageError, match="key=value"):
        resolve(None, ["protocol.n_boot"])


def test_evaluate_returns_a_report(labelled_store, backbone_dir: Path, tmp_path: Path) -> None:
    store, labels = labelled_store
    out = tmp_path / "eval"
    rep = fmct.evaluate({"tiny": backbone_dir}, labels, store, out, fractions=[0.5, 1.0], seeds=2, n_boot=20,
                        methods="linear", log=False)  # fmt: skip
    assert isinstance(rep, EvaluationReport) and rep.out == out and rep.html.is_file()
    assert rep.raw == json.loads((out / "report.json").read_text())
    res = rep.results
    assert (
        set(res["setting"]) == {"0.5", "1"}
        and set(res["model"]) == {"tiny"}
        and set(res["method"]) == {"linear"}
    )
    assert (res.loc[res["setting"] == "0.5", "n_seeds"] == 2).all() and set(res["test_set"]) <= {"id", "ood"}
    ok = res.dropna(subset=["auroc"])
    assert len(ok) and ((ok["auroc_lo"] <= ok["auroc"]) & (ok["auroc"] <= ok["auroc_hi"])).all()
    per = rep.per_finding()
    assert set(per["finding"]) <= {"ich", "sdh", "fracture"} and len(per) >= len(ok)
    assert len(rep.lines()) == len(res) and all("macro AUROC" in ln for ln in rep.lines())
    assert isinstance(rep.comparisons, pd.DataFrame)


def test_the_evaluate_package_is_callable_and_checks_arguments(labelled_store, tmp_path: Path) -> None:
    store, labels = labelled_store
    with pytest.raises(UsageError, match="no model to evaluate"):
        fmct.evaluate(labels=labels, data=store)
    with pytest.raises(UsageError, match="no labels"):
        fmct.evaluate({"m": "x"}, data=store)
    with pytest.raises(FileNotFoundError, match="not an fmct store"):
        fmct.evaluate({"m": "x"}, labels, tmp_path)
    with pytest.raises(ValueError, match="unknown protocol setting"):
        fmct.evaluate({"m": "x"}, labels, store, overrides=["protocol.bogus=1"])
    metrics = importlib.import_module("fmct.evaluate.metrics")  # the package keeps its modules
    assert callable(fmct.evaluate) and fmct.evaluate.metrics is metrics


def test_an_empty_report_still_has_its_columns(tmp_path: Path) -> None:
    rep = EvaluationReport(tmp_path, {"results": []})
    assert rep.results.empty and {"model", "auroc", "auroc_lo", "ap_hi"} <= set(rep.results.columns)
    assert rep.lines() == [] and rep.per_finding().empty and "0 result rows" in repr(rep)
