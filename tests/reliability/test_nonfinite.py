"""NaN/Inf: non-finite voxels are refused with a reason at every entry point, and a non-finite loss stops
`fmct pretrain` cleanly (exit 3, naming the step and the scans, the last checkpoint kept, resumable).

Already covered elsewhere (not duplicated): a NaN NIfTI gets a "failed ... NaN" manifest row in
tests/store/test_ingest.py::test_ingest_end_to_end; read_nifti refuses NaN in tests/io/test_nifti_load.py;
the in-process NaN guard of the loop in tests/train/test_loop.py::test_nan_guard_names_step_and_scans.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from reliakit import TINY_PRETRAIN, write_head, write_heads
from typer.testing import CliRunner

import fmct
from fmct.cli import app
from fmct.ingest import run_ingest
from fmct.io.errors import InvalidScan
from fmct.io.volume import Volume
from fmct.ssl.meta_arch import DINOMetaArch


def _poison(path: Path, value: float) -> Path:
    img = nib.load(path)
    arr = np.asarray(img.dataobj, dtype=np.float32).copy()
    arr[10, 12, 7] = value
    nib.save(nib.Nifti1Image(arr, img.affine), str(path))
    return path


def test_inf_nifti_is_refused_with_a_reason(tmp_path) -> None:
    write_heads(tmp_path / "in", 2, shape=(32, 32, 20))
    _poison(write_head(tmp_path / "in" / "pos_inf.nii.gz", 7, shape=(32, 32, 20)), np.inf)
    _poison(write_head(tmp_path / "in" / "neg_inf.nii.gz", 8, shape=(32, 32, 20)), -np.inf)
    run_ingest([tmp_path / "in"], tmp_path / "store")
    man = pd.read_parquet(tmp_path / "store" / "manifest.parquet")
    rows = {Path(s).name: r for s, r in zip(man["source"], man.itertuples(), strict=True)}
    for bad in ("pos_inf.nii.gz", "neg_inf.nii.gz"):
        assert rows[bad].status == "failed" and "NaN/Inf" in rows[bad].reason
    assert sum(r.status == "ok" for r in rows.values()) == 2
    assert len(list((tmp_path / "store" / "scans").glob("*.npy"))) == 2


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_preprocess_refuses_a_nonfinite_volume(value) -> None:
    """`fmct.preprocess(Volume)` (the API path that bypasses the readers) used to cast NaN silently to int16."""
    arr = np.full((32, 32, 20), -1000.0, dtype=np.float32)
    arr[6:26, 6:26, 4:16] = 40.0
    arr[16, 16, 10] = value
    with pytest.raises(InvalidScan, match="NaN/Inf"):
        fmct.preprocess(Volume(arr, np.eye(4), {}))


def test_predict_reports_a_nan_scan_and_goes_on(tmp_path) -> None:
    from fmct.models.hub import ClassifierModel
    from fmct.models.vit3d import ViT3D, ViT3DConfig

    pre = {"spacing": 1.0, "crop_head": True, "windows": [[40, 80], [80, 200], [600, 2800]], "input_size": 16}
    vit = ViT3D(ViT3DConfig(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2))
    model = ClassifierModel.from_backbone(vit, ["ich"], preprocessing=pre).save_pretrained(tmp_path / "m")
    good = write_head(tmp_path / "good.nii.gz", 1, shape=(32, 32, 20))
    bad = _poison(write_head(tmp_path / "bad.nii.gz", 2, shape=(32, 32, 20)), np.nan)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["predict", str(good), str(bad), "--model", str(model), "--out", str(out)])
    assert res.exit_code == 0, res.output
    results = {Path(r["input"]).name: r for r in json.loads(out.read_text())["results"]}
    assert results["good.nii.gz"]["status"] == "ok"
    assert results["bad.nii.gz"]["status"] != "ok" and "NaN" in results["bad.nii.gz"]["error"]
    res = CliRunner().invoke(app, ["predict", str(bad), "--model", str(model), "--out", str(out)])
    assert res.exit_code == 1 and "Traceback" not in res.output


def test_nan_loss_stops_pretrain_cleanly(tmp_path, monkeypatch) -> None:
    write_heads(tmp_path / "in", 3, shape=(40, 40, 24))
    run_ingest([tmp_path / "in"], tmp_path / "store")
    scan_ids = {p.stem for p in (tmp_path / "store" / "scans").glob("*.npy")}
    orig, calls = DINOMetaArch.compute_loss, {"n": 0}

    def poisoned(self, batch, values, gen):
        loss, parts, aux = orig(self, batch, values, gen)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 3 else loss), parts, aux

    run = tmp_path / "run"
    args = ["pretrain", "--data", str(tmp_path / "store"), "--out", str(run), "--no-progress", *TINY_PRETRAIN,
            "max_steps=4", "checkpoint_every=2"]  # fmt: skip
    with monkeypatch.context() as m:
        m.setattr(DINOMetaArch, "compute_loss", poisoned)
        res = CliRunner().invoke(app, args)
    assert res.exit_code == 3, res.output
    assert "Traceback" not in res.output and "step 2" in res.output
    named = {s for s in scan_ids if s in res.output}
    assert len(named) >= 1  # the scans of the offending batch (batch_size 2, 3 scans)
    steps = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in steps] == [0, 1] and all(np.isfinite(r["loss"]) for r in steps)
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 2
    assert not (run / "model").exists()
    res = CliRunner().invoke(app, ["pretrain", "--resume", str(run), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (run / "model" / "model.safetensors").exists()
