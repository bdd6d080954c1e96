"""fmct.infer.batch: what a batch INPUT expands to, and the one-row-per-series table."""

import csv
import io

import pytest

from fmct.infer.batch import (
    BatchInputError,
    batch_inputs,
    columns,
    failure_summary,
    list_file_inputs,
    results_csv,
)


def test_a_folder_gives_its_subfolders_and_nifti_files_in_name_order(tmp_path):
    root = tmp_path / "studies"
    for name in ("b_series", "a_study", ".hidden"):
        (root / name).mkdir(parents=True)
    for name in ("c.nii.gz", "d.NII", "notes.txt", "x.dcm"):
        (root / name).write_bytes(b"")
    assert batch_inputs(root) == [str(root / n) for n in ("a_study", "b_series", "c.nii.gz", "d.NII")]
    assert batch_inputs(root / "c.nii.gz") == [str(root / "c.nii.gz")]  # one scan: a batch of one


def test_a_store_gives_its_ok_scans(tmp_path):
    import numpy as np
    import pandas as pd

    root = tmp_path / "store"
    root.mkdir()
    pd.DataFrame(
        {"scan_id": ["s-2", "s-1", "s-3"], "status": ["ok", "ok", "failed"], "source": ["a", "b", "c"]}
    ).to_parquet(root / "manifest.parquet")
    assert np.array_equal(batch_inputs(root), [f"{root}::s-1", f"{root}::s-2"])


def test_a_list_file_gives_one_input_a_line_relative_to_its_folder(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    text = "# scans of the week\n\nscans/a.nii.gz\n  /abs/series_7  \nstore::s-123\n/abs/store::s-9\n"
    (lists / "week.txt").write_text(text)
    expected = [
        str(lists / "scans/a.nii.gz"),
        "/abs/series_7",
        f"{lists / 'store'}::s-123",
        "/abs/store::s-9",
    ]
    assert list_file_inputs(lists / "week.txt") == expected
    assert batch_inputs(lists / "week.txt") == expected


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such folder or list file"),
        (lambda p: p.mkdir(), "no subfolder or NIfTI file"),
        (lambda p: (p.mkdir(), (p / "1.dcm").write_bytes(b"DICM")), "predicted without --batch"),
        (lambda p: p.write_text("# nothing\n\n"), r"no input \(one DICOM folder"),
        (lambda p: p.write_bytes(b"\x89PNG\xff\xfe\x00"), "not a text file listing inputs"),
    ],
)
def test_a_batch_with_nothing_to_predict_is_an_error_naming_it(tmp_path, make, message):
    path = tmp_path / "DOE_JANE"
    make(path)
    with pytest.raises(BatchInputError, match=message) as e:
        batch_inputs(path, name="h-0123")
    assert str(e.value).startswith("h-0123: ") and "DOE_JANE" not in str(e.value)


def test_one_csv_row_per_series_with_the_reason_of_a_failure():
    ok = {"input": "s1", "scan_id": "s-1", "patient_id": "p-1", "study_id": "t-1", "status": "ok",
          "probabilities": {"ich": 0.25, "sdh": 0.5}, "warnings": ["thick", "small"],
          "timings": {"read_s": 0.1, "preprocess_s": 0.2, "model_s": 0.3}}  # fmt: skip
    bad = {"input": "s2", "status": "failed", "error": "s2: pixel data truncated, file 3", "timings": {}}
    text = results_csv([ok, bad], ["ich", "sdh"])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0].split(",") == columns(["ich", "sdh"])
    assert rows[0]["ich"] == "0.25" and rows[0]["warnings"] == "thick; small" and rows[0]["n_warnings"] == "2"
    assert rows[0]["patient_id"] == "p-1" and rows[0]["error"] == "" and rows[0]["model_s"] == "0.3"
    assert rows[1]["status"] == "failed" and rows[1]["error"] == bad["error"] and rows[1]["ich"] == ""
    assert failure_summary([ok]) is None
    skipped = {**bad, "status": "skipped"}
    assert failure_summary([ok, bad, skipped, bad]) == "3 of 4 series not predicted (2 failed, 1 skipped)"


# ------------------------------------------------------------------------------------ fmct predict --batch
@pytest.fixture(scope="module")
def study_batch(tmp_path_factory, nifti_scan):
    """``batch/``: two DICOM series in folders named after their patient, a NIfTI scan, a damaged NIfTI, a
    series of 3 slices (ingest skips it), a text file and a hidden folder (both left out)."""
    import shutil

    from fmct.synth import generate_cohort

    root = tmp_path_factory.mktemp("batch")
    generate_cohort(root / "c", n=2, site="a", seed=0, fmt="dicom", size=32, progress=False)
    a, b = sorted((root / "c" / "dicom").iterdir())
    batch = root / "batch"
    shutil.copytree(a, batch / "DOE_JANE_MRN123")
    shutil.copytree(b, batch / "ROE_RICHARD_MRN456")
    (batch / "few").mkdir()
    for f in sorted(a.iterdir())[:3]:
        shutil.copy(f, batch / "few" / f.name)
    shutil.copy(nifti_scan, batch / "head.nii.gz")
    (batch / "broken.nii.gz").write_bytes(b"not a nifti")
    (batch / "notes.txt").write_text("DOE JANE\n")
    (batch / ".cache").mkdir()
    return batch


def _invoke(args):
    from typer.testing import CliRunner

    from fmct.cli import app

    return CliRunner().invoke(app, args)


def test_batch_predicts_every_series_with_one_model_load(study_batch, model_dir, tmp_path, monkeypatch):
    import json

    import pandas as pd
    import pydicom

    import fmct.models.hub as hub
    from fmct.infer.predict import predict_paths
    from fmct.labels import FINDINGS

    loads = []
    real = hub.load_model
    monkeypatch.setattr(hub, "load_model", lambda *a, **k: loads.append(a) or real(*a, **k))
    out = tmp_path / "out" / "week.csv"
    res = _invoke(["predict", "--batch", str(study_batch), "--model", str(model_dir), "--out", str(out)])
    assert res.exit_code == 1, res.output  # some series failed: the batch went on, and says so
    assert len(loads) == 1
    table = pd.read_csv(out, dtype={"error": str})
    assert list(table.columns) == columns(list(FINDINGS))
    assert list(table["input"]) == [
        "DOE_JANE_MRN123",
        "ROE_RICHARD_MRN456",
        "broken.nii.gz",
        "few",
        "head.nii.gz",
    ]
    ok = table[table.status == "ok"]
    assert list(ok["input"]) == ["DOE_JANE_MRN123", "ROE_RICHARD_MRN456", "head.nii.gz"]
    assert ok[list(FINDINGS)].notna().all().all() and ok["error"].isna().all()
    bad = table[table.status != "ok"].set_index("input")
    assert bad.loc["broken.nii.gz", "status"] == "failed" and bad.loc["broken.nii.gz", "error"]
    assert bad.loc["few", "status"] in ("skipped", "failed") and bad.loc["few", "error"]
    assert bad[list(FINDINGS)].isna().all().all()
    # pseudonymous ids only: the DICOM PatientID never reaches the table
    dicom_row = ok.set_index("input").loc["DOE_JANE_MRN123"]
    assert dicom_row["patient_id"].startswith("p-") and dicom_row["scan_id"].startswith("s-")
    raw_id = str(pydicom.dcmread(next((study_batch / "DOE_JANE_MRN123").iterdir())).PatientID)
    assert raw_id and raw_id not in out.read_text()
    # the JSON beside it holds the same results; the probabilities are those of a single-series predict
    doc = json.loads(out.with_suffix(".json").read_text())
    assert [r["input"] for r in doc["results"]] == list(table["input"])
    (single,) = predict_paths(model_dir, [str(study_batch / "ROE_RICHARD_MRN456")])
    row = ok.set_index("input").loc["ROE_RICHARD_MRN456"]
    assert [row[f] for f in FINDINGS] == pytest.approx(list(single["probabilities"].values()), abs=1e-12)
    # progress, the summary and each failure with its reason
    text = " ".join(res.output.split())
    assert "predict 5/5 (100 %) 2 failed" in text
    assert "predicted 3 of 5 series" in text and "broken.nii.gz: failed:" in text
    assert "fmct predict: 2 of 5 series not predicted (" in text and f"in {out}" in text
    assert sorted(p.name for p in out.parent.iterdir()) == ["week.csv", "week.json"]  # no temporary left


def test_batch_from_a_list_file_exits_0_when_all_are_predicted(study_batch, model_dir, tmp_path):
    lst = tmp_path / "todo.txt"
    lst.write_text(f"# two scans\n{study_batch / 'ROE_RICHARD_MRN456'}\n\n")
    (tmp_path / "head.nii.gz").write_bytes((study_batch / "head.nii.gz").read_bytes())
    lst.write_text(lst.read_text() + "head.nii.gz\n")  # relative: from the list's folder
    out = tmp_path / "res" / "result.json"
    res = _invoke(
        ["predict", "--batch", str(lst), "--model", str(model_dir), "--out", str(out), "--device", "cpu"]
    )
    assert res.exit_code == 0, res.output
    assert "predicted 2 of 2 series" in res.output
    rows = list(csv.DictReader(out.with_suffix(".csv").open()))
    assert [r["status"] for r in rows] == ["ok", "ok"] and [r["input"] for r in rows][1] == "head.nii.gz"


def test_batch_with_hashed_sources_names_no_folder(study_batch, model_dir, tmp_path):
    out = tmp_path / "res.csv"
    args = [
        "predict",
        "--batch",
        str(study_batch),
        "--model",
        str(model_dir),
        "--out",
        str(out),
        "--hash-sources",
    ]
    res = _invoke(args)
    assert res.exit_code == 1
    written = out.read_text() + out.with_suffix(".json").read_text() + res.output
    for name in ("DOE", "JANE", "MRN123", "ROE_RICHARD", "head.nii", "broken", "few"):
        assert name not in written, name
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 5 and all(r["input"].startswith("h-") for r in rows)


def test_a_batch_that_is_missing_or_empty_is_a_usage_error(model_dir, tmp_path):
    res = _invoke(["predict", "--batch", str(tmp_path / "PATIENT_X"), "--model", str(model_dir)])
    assert res.exit_code == 2
    assert res.output.strip() == "fmct predict: --batch PATIENT_X: no such folder or list file"
    (tmp_path / "empty").mkdir()
    res = _invoke(["predict", "--batch", str(tmp_path / "empty"), "--model", str(model_dir)])
    assert res.exit_code == 2 and "empty: no subfolder or NIfTI file" in res.output
    assert not (tmp_path / "result.json").exists()
