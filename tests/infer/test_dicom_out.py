"""`fmct predict --dicom-out`: what a user gets, what is refused, and that one bad series stops nothing."""

import json
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from fmct.cli import app
from fmct.infer.dicom_out import saliency_maps, save_dataset


@pytest.fixture()
def ich_model(model_dir, tmp_path):
    """The tiny model with recorded operating thresholds: ich always positive, the others never."""
    d = tmp_path / "model"
    shutil.copytree(model_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["thresholds"] = {f: 1.0 for f in cfg["labels"]} | {"ich": 0.0}
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_predict_writes_sr_and_seg_for_a_dicom_series(ich_model, dicom_series, patient_study, tmp_path):
    out, dcm = tmp_path / "result.json", tmp_path / "pacs"
    args = ["predict", "--model", str(ich_model), str(dicom_series), "--out", str(out)]
    args += ["--saliency", str(tmp_path / "sal"), "--methods", "grad_rollout", "--dicom-out", str(dcm)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    (entry,) = json.loads(out.read_text())["results"]
    folder = dcm / entry["scan_id"]
    assert entry["dicom"] == {"sr": str(folder / "sr.dcm"), "seg": str(folder / "seg.dcm")}
    assert sorted(p.name for p in folder.iterdir()) == ["seg.dcm", "sr.dcm"]  # no temporary files left
    sr, seg = pydicom.dcmread(folder / "sr.dcm"), pydicom.dcmread(folder / "seg.dcm")
    source = pydicom.dcmread(next(dicom_series.iterdir()), stop_before_pixels=True)
    for ds in (sr, seg):
        assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == source.PatientID
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["ich saliency (grad_rollout)"]  # positive only
    params = [
        str(i.TextValue)
        for g in sr.ContentSequence[-2].ContentSequence
        for i in g.ContentSequence
        if i.get("ValueType") == "TEXT" and i.ConceptNameCodeSequence[0].CodeMeaning == "Algorithm Parameters"
    ]
    assert params[0] == "operating threshold 0 (recorded in the model)"
    assert entry["timings"]["dicom_s"] > 0
    # the patient identifiers are in the PACS objects only: not in result.json nor on the console
    assert source.StudyInstanceUID not in out.read_text() and source.SeriesInstanceUID not in out.read_text()
    for value in patient_study.values():
        if len(value) > 3:
            assert value not in out.read_text() and value not in res.output


def test_dicom_out_refuses_nifti_and_store_inputs(model_dir, nifti_scan, tmp_path):
    out = tmp_path / "result.json"
    for spec, what in (
        (str(nifti_scan), "is a NIfTI file"),
        (f"{tmp_path}::s-1", "is a scan of an ingest store"),
    ):
        args = [
            "predict",
            "--model",
            str(model_dir),
            spec,
            "--out",
            str(out),
            "--dicom-out",
            str(tmp_path / "d"),
        ]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 2, res.output
        assert "fmct predict: --dicom-out needs DICOM series as inputs" in res.output and what in res.output
        assert not out.exists() and not (tmp_path / "d").exists()


def test_bad_thresholds_are_a_usage_error(ich_model, dicom_series, tmp_path):
    cfg = json.loads((ich_model / "config.json").read_text())
    cfg["thresholds"]["sdh"] = 3
    (ich_model / "config.json").write_text(json.dumps(cfg))
    args = ["predict", "--model", str(ich_model), str(dicom_series), "--dicom-out", str(tmp_path / "d")]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and "operating threshold of 'sdh' must be a probability" in res.output


def test_a_series_without_dicom_objects_does_not_stop_the_others(
    ich_model, dicom_series, nifti_scan, tmp_path
):
    """A folder holding only a NIfTI file predicts fine but has no study: a warning, the DICOM series still
    gets its objects; without --saliency there is no SEG."""
    folder = tmp_path / "nifti_folder"
    folder.mkdir()
    shutil.copy(nifti_scan, folder / "head.nii.gz")
    out, dcm = tmp_path / "result.json", tmp_path / "pacs"
    args = ["predict", "--model", str(ich_model), str(folder), str(dicom_series), "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--dicom-out", str(dcm)])
    assert res.exit_code == 0, res.output
    nifti, dicom = json.loads(out.read_text())["results"]
    assert nifti["status"] == "ok" and "dicom" not in nifti
    assert "dicom-out failed: ValueError: the input is not a DICOM series" in nifti["warnings"]
    assert dicom["dicom"]["seg"] is None and (dcm / dicom["scan_id"] / "sr.dcm").is_file()


def test_save_dataset_is_atomic(tmp_path):
    target = tmp_path / "x.dcm"
    target.write_bytes(b"previous")

    class Broken:
        def save_as(self, path, **kw):
            with open(path, "wb") as f:
                f.write(b"half")
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_dataset(Broken(), target)
    assert target.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["x.dcm"]


def test_saliency_maps_prefer_class_specific_methods(tmp_path):
    """One 4D NIfTI per explained finding (a volume per method, as fmct.infer.saliency_io writes): the SEG
    takes the preferred method's volume, scaled to a maximum of 1."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])

    def nifti(name, values):
        path = tmp_path / name
        stack = np.stack([np.full((3, 3, 3), v, np.float32) for v in values], axis=-1)
        stack[0, 0, 0] = 2 * max(values)  # one peak voxel: the map is scaled by it
        nib.save(nib.Nifti1Image(stack, affine), str(path))
        return str(path)

    entry = {
        "saliency": {
            "findings": {
                "ich": {
                    "nifti": nifti("ich.nii.gz", [1, 2, 3]),
                    "volumes": ["attention", "grad_x_input", "grad_rollout"],
                },
                "sdh": {"nifti": nifti("sdh.nii.gz", [1]), "volumes": ["attention"]},
                "mass": {"nifti": None, "volumes": []},
            },
        }
    }
    maps = saliency_maps(entry, ["ich", "sdh", "mass", "edh"])
    assert {f: m[0] for f, m in maps.items()} == {
        "ich": "grad_rollout",
        "sdh": "attention",
    }  # edh: not explained
    heat = maps["ich"][1]
    assert heat.shape == (3, 3, 3) and float(heat.max()) == pytest.approx(1.0)
    assert float(heat[1, 1, 1]) == pytest.approx(0.5) and np.allclose(maps["ich"][2], affine)  # 3 / peak 6


def test_failure_warnings_name_no_path_and_no_identifier(classifier, dicom_series, tmp_path, monkeypatch):
    """A failure quoting the series' absolute path (folder names hold patient names) and a header value
    becomes a warning with neither."""
    import fmct.infer.dicom_out as dicom_out
    import fmct.io.dicom_source as dicom_source
    from fmct.infer.dicom_out import write_dicom_outputs
    from fmct.infer.predict import predict_paths

    (entry,) = predict_paths(classifier, [str(dicom_series)])
    real = dicom_source.read_source_series

    def broken(ref):
        src = real(ref)
        raise OSError(f"cannot read {ref.files[0].resolve()} of {src.datasets[0].PatientName}")

    monkeypatch.setattr(dicom_out, "read_source_series", broken)
    write_dicom_outputs(classifier, [str(dicom_series)], [entry], tmp_path / "d")
    (warning,) = [w for w in entry["warnings"] if w.startswith("dicom-out failed")]
    assert str(dicom_series.parent) not in warning and "DOE" not in warning
    assert f"cannot read {dicom_series.name}/" in warning and "dicom" not in entry
    write_dicom_outputs(classifier, [str(dicom_series)], [entry], tmp_path / "d", salt="pepper")
    assert "cannot read h-" in entry["warnings"][-1] and dicom_series.name not in entry["warnings"][-1]
