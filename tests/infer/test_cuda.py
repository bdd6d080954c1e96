"""Prediction and saliency on a CUDA GPU agree with the CPU (bf16 autocast for the probabilities, fp32 for the
saliency gradients). Skipped without a GPU; the suite hides GPUs unless FMCT_TEST_GPU=1 (tests/conftest.py)."""

import csv

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fmct.cli import app
from fmct.infer.predict import predict_paths

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (FMCT_TEST_GPU=1)")


def test_predict_and_saliency_on_the_gpu_agree_with_the_cpu(make_classifier, nifti_scan, tmp_path):
    runs = {}
    for device in ("cpu", "cuda"):
        clf = make_classifier(seed=2)
        (runs[device],) = predict_paths(
            clf, [str(nifti_scan)], saliency_dir=tmp_path / device, saliency_findings=["ich"], device=device
        )
        assert {p.device.type for p in clf.parameters()} == {device}
    cpu, gpu = runs["cpu"], runs["cuda"]
    assert gpu["status"] == "ok", gpu.get("error")
    pc, pg = np.array(list(cpu["probabilities"].values())), np.array(list(gpu["probabilities"].values()))
    assert np.abs(pc - pg).max() < 2e-2  # bf16 autocast
    for method, path in cpu["saliency"]["findings"]["ich"]["nifti"].items():
        a = np.asarray(nib.load(path).dataobj, np.float64).ravel()
        b = np.asarray(
            nib.load(gpu["saliency"]["findings"]["ich"]["nifti"][method]).dataobj, np.float64
        ).ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.99, method  # fp32 gradients on both
    direct = make_classifier(seed=2).predict(str(nifti_scan), device="cuda")
    assert list(direct.values()) == pytest.approx(list(pg), abs=1e-6)


def test_batch_predict_uses_the_gpu_by_default(model_dir, nifti_scan, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text(f"{nifti_scan}\n{nifti_scan}\n")
    tables = {}
    for device in ("auto", "cpu"):
        out = tmp_path / device / "r.csv"
        torch.cuda.reset_peak_memory_stats()
        res = CliRunner().invoke(
            app,
            [
                "predict",
                "--batch",
                str(lst),
                "--model",
                str(model_dir),
                "--out",
                str(out),
                "--device",
                device,
            ],
        )
        assert res.exit_code == 0, res.output
        assert (torch.cuda.max_memory_allocated() > 0) == (device == "auto")
        tables[device] = list(csv.DictReader(out.open()))
    for g, c in zip(tables["auto"], tables["cpu"], strict=True):
        assert abs(float(g["ich"]) - float(c["ich"])) < 2e-2
