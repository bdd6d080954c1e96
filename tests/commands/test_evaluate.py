"""`fmct evaluate` parses its options into one :func:`fmct.api.evaluate` call and prints the report's lines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fmct.api import EvaluationReport
from fmct.cli import app

runner = CliRunner()


def _row(model: str, setting: str, mean: float | None, ci: list[float | None]) -> dict[str, Any]:
    macro = {"mean": mean, "ci": ci}
    return {"model": model, "method": "linear", "setting": setting, "test_set": "id", "n_test": 8,
            "n_seeds": 2, "auroc": {"macro": macro}, "ap": {"macro": macro}}  # fmt: skip


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[tuple, dict]]:
    """fmct.api.evaluate replaced by a recorder returning a two-row report."""
    import fmct.api.evaluation as evaluation

    calls: list[tuple[tuple, dict]] = []
    raw = {"results": [_row("ssl", "0.1", 0.81234, [0.7, 0.9]), _row("rand", "1", None, [None, None])]}

    def fake(*args: Any, **kwargs: Any) -> EvaluationReport:
        calls.append((args, kwargs))
        return EvaluationReport(tmp_path / "ev", raw)

    monkeypatch.setattr(evaluation, "evaluate", fake)
    return calls


def test_options_become_one_api_call_and_the_report_is_printed(spy, tmp_path: Path) -> None:
    args = ["evaluate", "-m", "ssl=runs/a/model", "-m", "rand=e.parquet", "--labels", "l.csv", "-d", "s1",
            "-d", "s2", "--fractions", "0.1, 1", "--seeds", "3", "--method", "linear,knn", "--n-boot", "50",
            "--set", "protocol.plots=false", "--device", "cpu"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    (models, labels, data, out), kw = spy[0]
    assert len(spy) == 1 and models == {"ssl": "runs/a/model", "rand": "e.parquet"}
    assert (labels, data, out) == ("l.csv", ["s1", "s2"], None)
    assert kw["fractions"] == [0.1, 1.0] and kw["seeds"] == [0, 1, 2] and kw["methods"] == ["linear", "knn"]
    assert kw["n_boot"] == 50 and kw["device"] == "cpu" and kw["overrides"] == ["protocol.plots=false"]
    lines = r.output.splitlines()
    assert lines[0] == f"{'ssl':>10} {'linear':>14} labels {'0.1':>6}  id: macro AUROC 0.812 [0.700, 0.900]"
    assert lines[1].endswith("macro AUROC n/a") and lines[2] == f"wrote {tmp_path / 'ev' / 'report.html'}"

    r = runner.invoke(app, ["evaluate", "--config", "eval.yaml", "--seeds", "1,5"])
    (models, labels, data, out), kw = spy[1]
    assert r.exit_code == 0 and models is None and labels is None and data is None
    assert kw["config"] == Path("eval.yaml") and kw["seeds"] == [1, 5] and kw["device"] is None  # auto


def test_a_malformed_model_option_exits_2_before_the_api(spy) -> None:
    r = runner.invoke(app, ["evaluate", "-m", "runs/a/model", "--labels", "l.csv"])
    assert (
        r.exit_code == 2 and r.output.strip() == "fmct evaluate: --model 'runs/a/model': expected NAME=PATH"
    )
    assert spy == []


def test_api_errors_keep_the_cli_style(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["evaluate", "-m", "a=x", "--labels", "l.csv", "--set", "protocol.n_boot"])
    assert r.exit_code == 2
    assert r.output.strip() == "fmct evaluate: override 'protocol.n_boot' is not of the form key=value"
    r = runner.invoke(app, ["evaluate", "-m", "a=x", "--labels", "l.csv", "-d", "nostore"])
    assert (
        r.exit_code == 2
        and r.output.strip() == "fmct evaluate: nostore: not an fmct store (no manifest.parquet)"
    )
