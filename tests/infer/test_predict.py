import json
import os
import stat

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from fmct.cli import app
from fmct.infer.predict import predict_paths, scan_warnings, world_extent
from fmct.io.volume import Volume
from fmct.labels import FINDINGS


def test_predict_paths_mixed_inputs(model_dir, classifier, nifti_scan, tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti at all")
    res = predict_paths(model_dir, [str(nifti_scan), str(tmp_path / "missing.nii.gz"), str(broken)])
    assert len(res) == 3
    ok, missing, bad = res
    assert ok["status"] == "ok" and list(ok["probabilities"]) == list(FINDINGS)
    assert all(0.0 <= p <= 1.0 for p in ok["probabilities"].values())
    assert ok["model"]["name"] == "tiny-test" and ok["model"]["version"]
    assert ok["preprocessing"]["input_size"] == 32 and ok["preprocessing"]["spacing"] == 1.0
    assert {"read_s", "preprocess_s", "model_s"} <= set(ok["timings"])
    # 168 x 196 mm field of view, 5 mm slices: fine; the 3.5 mm in-plane grid (kept coarse for speed) is not
    assert len(ok["warnings"]) == 1 and "in-plane spacing 3.50 mm" in ok["warnings"][0]
    # same probabilities as the model's own predict() on the same file
    direct = classifier.predict(nifti_scan)
    assert ok["probabilities"] == pytest.approx(direct, abs=1e-5)
    assert missing["status"] == "failed" and "no such file" in missing["error"]
    assert bad["status"] == "failed" and bad["error"]
    json.dumps(res)  # JSON-able


def test_warnings_for_thick_slices_and_small_field_of_view(make_head_volume):
    pre = {"spacing": 1.0, "input_size": 32}
    thick = make_head_volume(shape=(48, 56, 20), spacing=(3.5, 3.5, 7.5))
    w = scan_warnings(thick, None, pre, from_store=False)
    assert any("slice thickness 7.5 mm" in s for s in w)
    small = make_head_volume(shape=(30, 30, 30), spacing=(3.0, 3.0, 3.0))
    w = scan_warnings(small, None, pre, from_store=False)
    assert any("field of view" in s for s in w)
    coarse = make_head_volume(shape=(20, 24, 40), spacing=(8.0, 8.0, 4.0))
    assert any("in-plane spacing 8.00 mm" in s for s in scan_warnings(coarse, None, pre, from_store=False))
    # a stored scan is judged by its recorded source spacing
    stored = Volume(
        np.zeros((8, 8, 8), np.int16), np.eye(4), {"preprocess": {"source_spacing_mm": [0.5, 0.5, 6]}}
    )
    assert any("slice thickness 6.0" in s for s in scan_warnings(stored, None, pre, from_store=True))


def test_world_extent_is_orientation_independent():
    a = np.diag([-2.0, 3.0, 4.0, 1.0])
    b = np.array([[0, 3.0, 0, 0], [0, 0, 4.0, 0], [2.0, 0, 0, 0], [0, 0, 0, 1]])
    arr = np.zeros((10, 20, 5), np.float32)
    np.testing.assert_allclose(world_extent(Volume(arr, a)), [20, 60, 20])
    np.testing.assert_allclose(world_extent(Volume(arr, b)), [60, 20, 20])


def test_predict_with_saliency_maps_of_the_named_findings(model_dir, nifti_scan, tmp_path):
    out = tmp_path / "sal"
    (entry,) = predict_paths(model_dir, [str(nifti_scan)], saliency_dir=out, saliency_findings=["ich", "sdh"])
    sal = entry["saliency"]
    assert set(sal["findings"]) == {"ich", "sdh"}
    folder = out / entry["scan_id"]
    assert sorted(p.name for p in folder.iterdir()) == ["ich.nii.gz", "ich.png", "sdh.nii.gz", "sdh.png"]
    img = nib.load(sal["findings"]["sdh"]["nifti"])
    assert img.shape[3] == len(sal["methods"]) == 3
    data = np.asarray(img.dataobj, dtype=np.float32)
    for k, method in enumerate(sal["findings"]["sdh"]["volumes"]):
        assert 0.95 <= data[..., k].max() <= 1.0 + 1e-3
        # the voxel nearest to the reported peak (world mm, through the NIfTI affine) holds the maximum
        vox = np.rint(np.linalg.inv(img.affine) @ np.array([*sal["findings"]["sdh"]["peak_mm"][method], 1.0]))
        assert data[(*vox[:3].astype(int), k)] >= 0.99 * data[..., k].max(), method
    import matplotlib.image as mpimg

    png = mpimg.imread(sal["findings"]["ich"]["png"])
    assert png.ndim == 3 and png.shape[0] > 100
    assert "saliency_s" in entry["timings"]


def test_predict_cli_saliency_of_positive_findings_with_lesion_outlines(model_dir, nifti_scan, tmp_path):
    """--positive-at picks the findings; --masks outlines and scores them (fmct synth --masks layout)."""
    from fmct.synth import MASK_VALUES

    src = nib.load(str(nifti_scan))
    labels = np.zeros(src.shape, np.uint8)
    labels[20:28, 20:30, 10:16] = MASK_VALUES["sdh"]
    (tmp_path / "masks").mkdir()
    out = tmp_path / "result.json"
    args = [
        "predict",
        "--model",
        str(model_dir),
        str(nifti_scan),
        "--out",
        str(out),
        "--saliency",
        str(tmp_path / "s"),
    ]
    old_umask = os.umask(0o027)
    try:
        res = CliRunner().invoke(app, [*args, "--positive-at", "0"])
    finally:
        os.umask(old_umask)
    assert res.exit_code == 0, res.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # the result follows the umask as the maps do
    entry = json.loads(out.read_text())["results"][0]
    nib.save(nib.Nifti1Image(labels, src.affine), str(tmp_path / "masks" / f"{entry['scan_id']}.nii.gz"))
    assert set(entry["saliency"]["findings"]) == set(FINDINGS)  # every finding has p >= 0
    res = CliRunner().invoke(app, [*args, "--positive-at", "1.01", "--masks", str(tmp_path / "masks")])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["results"][0]["saliency"]["findings"] == {}  # none is positive
    res = CliRunner().invoke(app, [*args, "--findings", "sdh,edh", "--masks", str(tmp_path / "masks")])
    sal = json.loads(out.read_text())["results"][0]["saliency"]["findings"]
    assert sal["edh"]["lesion"] is None and sal["sdh"]["lesion"]["chance"]["hit_rate"] > 0
    res = CliRunner().invoke(app, [*args, "--findings", "sdh", "--masks", str(tmp_path / "nomasks")])
    assert "no lesion mask" in " ".join(json.loads(out.read_text())["results"][0]["warnings"])


def test_predict_cli(model_dir, nifti_scan, tmp_path):
    runner = CliRunner()
    out = tmp_path / "result.json"
    res = runner.invoke(
        app,
        ["predict", "--model", str(model_dir), str(nifti_scan), str(tmp_path / "nope"), "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["model"]["name"] == "tiny-test" and doc["labels"] == list(FINDINGS)
    assert [r["status"] for r in doc["results"]] == ["ok", "failed"]
    res = runner.invoke(
        app, ["predict", "--model", str(model_dir), str(tmp_path / "nope"), "--out", str(out)]
    )
    assert res.exit_code == 1
    assert json.loads(out.read_text())["results"][0]["error"]
    res = runner.invoke(app, ["predict", "--model", str(tmp_path / "nomodel"), str(nifti_scan)])
    assert res.exit_code == 2 and "cannot load model" in res.output
    res = runner.invoke(app, ["predict", "--model", str(model_dir), str(nifti_scan), "--findings", "xyz"])
    assert res.exit_code == 2 and "unknown findings" in res.output


def test_predict_store_scan_matches_file(model_dir, nifti_scan, tmp_path):
    """STORE::scan_id gives the probabilities of the same scan read from its file (already preprocessed)."""
    from fmct.ingest import run_ingest as ingest
    from fmct.store import ScanStore

    ingest([str(nifti_scan)], tmp_path / "store")
    (scan_id,) = ScanStore(tmp_path / "store").scan_ids
    from_store, from_file, missing = predict_paths(
        model_dir, [f"{tmp_path / 'store'}::{scan_id}", str(nifti_scan), f"{tmp_path / 'store'}::nope"]
    )
    assert from_store["status"] == "ok" and from_store["scan_id"] == scan_id
    assert from_store["probabilities"] == pytest.approx(from_file["probabilities"], abs=1e-4)
    # judged on the recorded source grid, not on the stored 1 mm grid
    assert "in-plane spacing 3.50 mm" in " ".join(from_store["warnings"])
    assert missing["status"] == "failed" and "nope" in missing["error"]
    npy = tmp_path / "store" / "scans" / f"{scan_id}.npy"
    npy.write_bytes(npy.read_bytes()[:-7])  # a truncated store file: the error names the scan and the file
    (damaged,) = predict_paths(model_dir, [f"{tmp_path / 'store'}::{scan_id}"])
    assert damaged["status"] == "failed"
    assert f"scan {scan_id}: file truncated" in damaged["error"] and str(npy) in damaged["error"]


def test_predict_dicom_folder_and_skipped_series(model_dir, tmp_path):
    """A DICOM series folder is read like ingest reads it; a series ingest would skip gets an error entry."""
    import shutil

    from fmct.synth import generate_cohort

    generate_cohort(tmp_path / "c", n=1, site="a", seed=0, fmt="dicom", size=32, progress=False)
    (series,) = sorted((tmp_path / "c" / "dicom").iterdir())
    few = tmp_path / "few"
    few.mkdir()
    for f in sorted(series.iterdir())[:3]:
        shutil.copy(f, few / f.name)
    ok, skipped = predict_paths(model_dir, [str(series), str(few)])
    assert ok["status"] == "ok" and ok["scan_id"] == series.name, ok.get("error")
    assert ok["patient_id"].startswith("p-") and ok["study_id"].startswith("t-")  # pseudonymous (fmct.io.ids)
    assert any("slice thickness" in w for w in ok["warnings"])  # 7.2 mm slices at this tiny matrix size
    assert skipped["status"] in ("skipped", "failed") and skipped["error"] and "probabilities" not in skipped


def test_predict_folder_with_two_series_errors_or_takes_the_thinnest(model_dir, tmp_path):
    """A study folder with two usable series: an error naming both folders, or --series thinnest."""
    from fmct.synth import generate_cohort

    generate_cohort(tmp_path / "c", n=2, site="a", seed=0, fmt="dicom", size=32, progress=False)
    study = tmp_path / "c" / "dicom"
    a, b = sorted(study.iterdir())
    runner = CliRunner()
    out = tmp_path / "result.json"
    res = runner.invoke(app, ["predict", "--model", str(model_dir), str(study), "--out", str(out)])
    assert res.exit_code == 1, res.output
    error = json.loads(out.read_text())["results"][0]["error"]
    assert "2 usable CT series" in error and f"dicom/{a.name} (" in error and f"dicom/{b.name} (" in error
    assert str(study) not in error and str(study) not in res.output
    args = ["predict", "--model", str(model_dir), str(study), "--out", str(out), "--series", "thinnest"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    entry = json.loads(out.read_text())["results"][0]
    assert entry["status"] == "ok" and entry["scan_id"] in (a.name, b.name)
    assert any("thinnest of 2" in w for w in entry["warnings"])
    res = runner.invoke(app, [*args[:-1], "all"])
    assert res.exit_code == 2 and "--series must be error or thinnest" in res.output


@pytest.mark.parametrize("pooling", ["cls", "brain_max", "brain_stats"])
def test_python_api_and_cli_predict_give_identical_probabilities(
    make_classifier, nifti_scan, tmp_path, pooling
):
    """One path from a model directory to a prediction: fmct.load_model(d).predict(x) and `fmct predict` agree
    exactly on the same scan (same preprocessing, same model input, same pooling)."""
    import fmct

    d = make_classifier(seed=3, pooling=pooling).save_pretrained(tmp_path / "m")
    api = fmct.load_model(d).predict(str(nifti_scan))
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["predict", "--model", str(d), str(nifti_scan), "--out", str(out)])
    assert res.exit_code == 0, res.output
    cli = json.loads(out.read_text())["results"][0]["probabilities"]
    assert cli == api


def test_cpu_device_predicts_exactly_as_a_plain_fp32_forward_pass(
    model_dir, classifier, nifti_scan, tmp_path
):
    """--device cpu (and auto without a GPU) changes no number: the probabilities are those of an fp32
    forward pass, in the CLI, predict_paths and ClassifierModel.predict alike."""
    import torch

    from fmct.infer.predict import probabilities

    x = classifier.model_input(str(nifti_scan))[None]
    with torch.no_grad():
        plain = torch.sigmoid(classifier(x)).numpy().astype(np.float64)
    np.testing.assert_array_equal(probabilities(classifier, x), plain)
    api = classifier.predict(str(nifti_scan), device="cpu")
    assert list(api.values()) == [float(p) for p in plain[0]]
    (entry,) = predict_paths(model_dir, [str(nifti_scan)], device="cpu")
    assert entry["probabilities"] == api
    out = tmp_path / "r.json"
    args = ["predict", "--model", str(model_dir), str(nifti_scan), "--out", str(out), "--device", "cpu"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["results"][0]["probabilities"] == api
