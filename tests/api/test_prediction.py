"""``fmct.predict``: one row per input with a probability per finding, the same numbers as ``fmct predict``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import fmct
from fmct.api import UsageError
from fmct.cli import app
from fmct.labels import FINDINGS


def test_predict_returns_a_frame_like_the_cli(
    synth_nifti: Path, classifier_dir: Path, tmp_path: Path
) -> None:
    scans = sorted((synth_nifti / "nifti").glob("*.nii.gz"))[:2]
    inputs = [*scans, tmp_path / "missing.nii.gz"]
    seen = []
    df = fmct.predict(classifier_dir, inputs, out=tmp_path / "result.json", progress=seen.append)
    assert list(df.columns) == ["input", "scan_id", "status", *FINDINGS, "warnings", "error"]
    assert list(df["status"]) == ["ok", "ok", "failed"] and len(seen) == 3
    assert list(df["input"][:2]) == [p.name for p in scans]  # named by their own name, never the path above
    clf = fmct.load_model(classifier_dir)
    for row, scan in zip(df.itertuples(), scans, strict=False):
        expected = clf.predict(scan)
        assert [getattr(row, f) for f in FINDINGS] == pytest.approx([expected[f] for f in FINDINGS], abs=1e-6)
    failed = df.iloc[2]
    assert all(math.isnan(failed[f]) for f in FINDINGS) and "missing.nii.gz" in failed["error"]
    doc = json.loads((tmp_path / "result.json").read_text())
    assert doc["labels"] == list(FINDINGS) and doc["model"]["name"] == "tiny-api" == df.attrs["model"]["name"]
    assert doc["results"] == json.loads(json.dumps(df.attrs["results"]))
    assert df.attrs["files"] == (tmp_path / "result.json", None)


def test_predict_a_batch_writes_the_table_beside_the_json(
    synth_nifti: Path, classifier_dir: Path, tmp_path: Path
) -> None:
    df = fmct.predict(
        classifier_dir, synth_nifti / "nifti", batch=True, out=tmp_path / "r.csv", progress=False
    )
    assert len(df) == 3 and set(df["status"]) == {"ok"}
    assert df.attrs["files"] == (tmp_path / "r.json", tmp_path / "r.csv")
    table = pd.read_csv(tmp_path / "r.csv")
    assert list(table["input"]) == list(df["input"]) and table[list(FINDINGS)].to_numpy() == pytest.approx(
        df[list(FINDINGS)].to_numpy()
    )
    assert len(json.loads((tmp_path / "r.json").read_text())["results"]) == 3
    with pytest.raises(UsageError, match="^batch nope: no such folder or list file$") as err:
        fmct.predict(classifier_dir, tmp_path / "nope", batch=True)
    assert err.value.param == "batch" and err.value.cli_message().startswith("--batch nope: ")


def test_the_cli_runs_the_api_and_matches_load_model_predict(
    synth_nifti: Path, classifier_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fmct predict`` (CLI) goes through ``fmct.predict`` and gives the probabilities of
    ``fmct.load_model(d).predict(x)`` on the same scans."""
    import fmct.api.prediction as prediction

    calls = []
    api_predict = prediction.predict
    monkeypatch.setattr(prediction, "predict", lambda *a, **k: calls.append(k) or api_predict(*a, **k))
    scans = sorted((synth_nifti / "nifti").glob("*.nii.gz"))[:2]
    args = ["predict", "--model", str(classifier_dir), *map(str, scans), "-o", str(tmp_path / "c.json")]
    r = CliRunner().invoke(app, [*args, "--device", "cpu", "--methods", "attention, grad_x_input"])
    assert r.exit_code == 0, r.output
    assert len(calls) == 1 and calls[0]["methods"] == ["attention", "grad_x_input"]
    cli = json.loads((tmp_path / "c.json").read_text())["results"]
    clf = fmct.load_model(classifier_dir)
    for scan, entry in zip(scans, cli, strict=True):
        expected = clf.predict(scan)
        assert entry["input"] == scan.name and entry["probabilities"].keys() == expected.keys()
        assert entry["probabilities"] == expected  # the same numbers, not merely close
    r = CliRunner().invoke(app, [*args, "--series", "newest"])  # the API's argument named as the option
    assert r.exit_code == 2 and r.output.strip() == (
        "fmct predict: --series must be error or thinnest, got 'newest'"
    ), r.output


def test_predict_argument_errors(synth_nifti: Path, classifier_dir: Path, backbone_dir: Path) -> None:
    scan = next((synth_nifti / "nifti").glob("*.nii.gz"))
    with pytest.raises(UsageError, match="backbone without a classifier head"):
        fmct.predict(backbone_dir, scan)
    with pytest.raises(UsageError, match=r"unknown findings \['tumour'\]"):
        fmct.predict(classifier_dir, scan, findings=["tumour"])
    with pytest.raises(UsageError, match="unknown saliency methods"):
        fmct.predict(classifier_dir, scan, methods=["magic"])
    with pytest.raises(UsageError, match="hash_sources needs out"):
        fmct.predict(classifier_dir, scan, hash_sources=True)
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        fmct.predict(classifier_dir.parent / "nope", scan)
