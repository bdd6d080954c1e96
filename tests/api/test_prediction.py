"""``fmct.predict``: one row per input with a probability per finding, the same numbers as ``fmct predict``."""

from __future__ import annotations

import json
import math
from pathlib import Path

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

    r = CliRunner().invoke(
        app, ["predict", "--model", str(classifier_dir), *map(str, scans), "-o", str(tmp_path / "c.json")]
    )
    assert r.exit_code == 0, r.output
    cli = json.loads((tmp_path / "c.json").read_text())["results"]
    for row, entry in zip(df.itertuples(), cli, strict=False):
        assert [getattr(row, f) for f in FINDINGS] == pytest.approx(
            [entry["probabilities"][f] for f in FINDINGS]
        )


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
