"""No PHI anywhere: synthetic DICOM series whose headers carry sentinel PHI go through
ingest -> pretrain -> embed -> probe (+ classifier) -> predict --saliency, and no byte of any file written
(gzip content included), nor any console output, contains a sentinel or a raw DICOM UID."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from reliakit import TINY_PRETRAIN, find_bytes, write_head
from typer.testing import CliRunner

from fmct.cli import app
from fmct.synth import generate_cohort

SENTINELS = {
    "PatientName": "SENTINELNAME^ZQX",
    "PatientID": "SENTINELID7731",  # + a per-series suffix: one patient per series, as in real data
    "PatientBirthDate": "19010203",
    "AccessionNumber": "SENTINELACC991",
    "InstitutionName": "SENTINELHOSPITALQ",
}
#: more identifying attributes (dates of service, other people, address), also planted
EXTRA = {
    "ReferringPhysicianName": "SENTINELDOCTOR^P",
    "PatientAddress": "SENTINELSTREET 5",
    "StudyDate": "19020304",
    "SeriesDate": "19020304",
    "AcquisitionDate": "19020304",
    "ContentDate": "19020304",
}
#: byte strings searched for; the dates also in ISO form
NEEDLES = [b"SENTINELNAME", b"SENTINELID7731", b"19010203", b"1901-02-03", b"SENTINELACC991", b"SENTINELHOSPITALQ",
           b"SENTINELDOCTOR", b"SENTINELSTREET", b"19020304", b"1902-03-04"]  # fmt: skip
N_SCANS = 8


def _plant_phi(dicom_root: Path) -> set[str]:
    """Rewrite every header with the sentinels; return the raw Study/Series Instance UIDs seen."""
    uids: set[str] = set()
    for i, series in enumerate(sorted(p for p in dicom_root.iterdir() if p.is_dir())):
        for f in sorted(series.glob("*.dcm")):
            ds = pydicom.dcmread(f)
            for key, value in {**SENTINELS, **EXTRA}.items():
                setattr(ds, key, value + (f"{i:02d}" if key == "PatientID" else ""))
            uids |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)}
            ds.save_as(f)
    return uids


def _first_scan(store: Path) -> str:
    return sorted(p.stem for p in (store / "scans").glob("*.npy"))[0]


def _invoke(args: list[str], outputs: list[str]) -> None:
    res = CliRunner().invoke(app, args)
    outputs.append(res.output)
    assert res.exit_code == 0, f"fmct {args[0]} failed:\n{res.output}"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("nophi")
    cohort = root / "cohort"
    labels = generate_cohort(cohort, N_SCANS, "a", 1, fmt="dicom", size=48)
    lab = pd.read_csv(labels)
    assert lab["ich"].sum() >= 2 and (lab["ich"] == 0).sum() >= 2, "want positive and negative scans"
    uids = _plant_phi(cohort / "dicom")
    assert all(s not in str(root) for s in [*SENTINELS.values(), *EXTRA.values()])
    out = root / "out"
    store, run, emb, probe, clf = out / "store", out / "run", out / "emb.parquet", out / "probe", out / "clf"
    series = sorted((cohort / "dicom").iterdir())
    logs: list[str] = []
    _invoke(["ingest", str(cohort / "dicom"), "--out", str(store)], logs)
    _invoke(["pretrain", "--data", str(store), "--out", str(run), "--no-progress", *TINY_PRETRAIN,
             "max_steps=2", "checkpoint_every=1", "monitor_every=1"], logs)  # fmt: skip
    _invoke(["embed", "--model", str(run / "model"), "--data", str(store), "--out", str(emb)], logs)
    _invoke(["probe", "--embeddings", str(emb), "--labels", str(labels), "--out", str(probe),
             "--fractions", "1.0", "--seeds", "1", "--n-boot", "20", "--method", "linear",
             "--model", str(run / "model"), "--save-classifier", str(clf)], logs)  # fmt: skip
    _invoke(["predict", str(series[0]), f"{store}::{_first_scan(store)}", "--model", str(clf),
             "--out", str(out / "pred.json"), "--saliency", str(out / "saliency"), "--methods", "attention",
             "--findings", "ich"], logs)  # fmt: skip
    return {"root": root, "out": out, "cohort": cohort, "uids": uids, "logs": logs, "n_series": len(series)}


def test_pipeline_ran_on_every_scan(pipeline) -> None:
    out = pipeline["out"]
    man = pd.read_parquet(out / "store" / "manifest.parquet")
    assert len(man) == N_SCANS and (man["status"] == "ok").all(), man[["status", "reason"]]
    # the planted PatientIDs (one per series) still give one pseudonymous patient per series
    assert man["patient_id"].nunique() == N_SCANS
    pred = json.loads((out / "pred.json").read_text())
    assert [r["status"] for r in pred["results"]] == ["ok", "ok"]
    assert any((out / "saliency").rglob("*.nii.gz")) and any((out / "saliency").rglob("*.png"))
    assert (out / "probe" / "report.json").exists() and (out / "clf" / "model.safetensors").exists()


def test_no_sentinel_in_any_output_file(pipeline) -> None:
    files = [p for p in pipeline["out"].rglob("*") if p.is_file()]
    assert len(files) > 3 * N_SCANS  # scans, records, checkpoints, tb events, reports, saliency ...
    assert find_bytes([pipeline["out"]], NEEDLES) == []
    assert not [p for p in files if any(n.decode() in str(p) for n in NEEDLES)]  # nor in file names
    # the inputs do hold them (the scanner works)
    some = next((pipeline["cohort"] / "dicom").rglob("*.dcm"))
    assert {n for _, n in find_bytes([some], NEEDLES)} == {n.decode() for n in NEEDLES} - {
        "1901-02-03",
        "1902-03-04",
    }


def test_no_raw_dicom_uid_in_any_output_file(pipeline) -> None:
    """The raw Study/Series Instance UIDs stay in fmct.io (ids are salted hashes of them)."""
    uids = [u.encode() for u in pipeline["uids"]]
    assert len(uids) > pipeline["n_series"]  # one series UID per series + the study UIDs
    assert find_bytes([pipeline["out"]], uids) == []


def test_no_sentinel_in_console_output(pipeline) -> None:
    text = "\n".join(pipeline["logs"])
    assert text.strip()
    assert not [n for n in NEEDLES if n.decode() in text]


def test_models_and_reports_carry_no_source_paths(pipeline) -> None:
    """Model directories and probe reports do not name the input folder (real folders are often named
    after patients); the store's manifest names inputs only relative to the input root (see below)."""
    cohort = str(pipeline["cohort"]).encode()
    out = pipeline["out"]
    shared = [out / "run" / "model", out / "clf", out / "probe", out / "emb.parquet"]
    assert find_bytes(shared, [cohort]) == []


#: a PACS export whose folder and file names carry the patient's name and record number
PHI_NAMES = ["DOE", "JANE", "MRN123456"]


@pytest.fixture(scope="module")
def phi_folders(pipeline) -> dict:
    """``in/DOE_JANE_MRN123456/STUDY_DOE^JANE/``: two series (one with a truncated file), a NIfTI named
    after the patient and a text file; ingested and predicted with and without --hash-sources."""
    root = pipeline["root"] / "phi"
    study = root / "in" / "DOE_JANE_MRN123456" / "STUDY_DOE^JANE"
    series = sorted((pipeline["cohort"] / "dicom").iterdir())
    for k in (0, 1):
        shutil.copytree(series[k], study / f"SERIES_{k + 1}_DOE")
    bad = sorted((study / "SERIES_2_DOE").glob("*.dcm"))[3]
    bad.write_bytes(bad.read_bytes()[:-900])  # pixel data truncated: the reason names the file
    write_head(study / "DOE_JANE_MRN123456.nii.gz", seed=3)
    (study / "notes_DOE_JANE.txt").write_text("not a scan\n")
    clf = pipeline["out"] / "clf"
    runs: dict = {}
    for mode, flag in (("hashed", ["--hash-sources"]), ("relative", [])):
        out, logs = pipeline["root"] / f"phi_out_{mode}", []
        res = CliRunner().invoke(app, ["ingest", str(root / "in"), "--out", str(out / "store"), *flag])
        logs.append(res.output)
        assert res.exit_code == 0, res.output
        inputs = [study / "SERIES_1_DOE", study / "DOE_JANE_MRN123456.nii.gz", study / "SERIES_2_DOE",
                  study / "MISSING_DOE"]  # fmt: skip
        args = ["predict", *map(str, inputs), "--model", str(clf), "--out", str(out / "pred" / "result.json"),
                "--saliency", str(out / "saliency"), "--methods", "attention", "--findings", "ich", *flag]  # fmt: skip
        res = CliRunner().invoke(app, args)
        logs.append(res.output)
        assert res.exit_code == 0, res.output
        runs[mode] = {"out": out, "logs": "\n".join(logs)}
    return {"root": root, "study": study, **runs}


def _texts(out: Path) -> str:
    """Every text output under ``out`` (json, csv, txt, ...) and every parquet table's values and file
    names, as one string."""
    parts = [str(p.relative_to(out)) for p in out.rglob("*")]
    for p in out.rglob("*"):
        if p.suffix == ".parquet":
            parts.append(pd.read_parquet(p).to_csv())
        elif p.is_file() and p.suffix in (".json", ".csv", ".txt", ".md", ".yaml", ".html", ".log", ""):
            parts.append(p.read_text(errors="replace"))
    return "\n".join(parts)


def test_hashed_sources_leave_no_name_from_the_folders(phi_folders) -> None:
    run = phi_folders["hashed"]
    out = run["out"]
    man = pd.read_parquet(out / "store" / "manifest.parquet")
    assert sorted(man.status) == ["failed", "ok", "ok", "skipped"], man[["status", "reason"]]
    assert man.source.str.match(r"^h-[0-9a-f]{16}$").all(), list(man.source)
    assert man.source.nunique() == 4
    failed = man[man.status == "failed"].iloc[0]
    assert failed.reason.startswith("h-") and "pixel data truncated" in failed.reason
    results = json.loads((out / "pred" / "result.json").read_text())["results"]
    assert [r["status"] for r in results] == ["ok", "ok", "failed", "failed"]
    assert all(r["input"].startswith("h-") for r in results)
    # nothing from the folder or file names: not in any text output, file name, console line ...
    text = _texts(out)
    assert [n for n in PHI_NAMES if n in text] == []
    assert [n for n in PHI_NAMES if n in run["logs"]] == []
    # ... nor anywhere in any byte of any output (the record number is long enough to search binaries)
    assert find_bytes([out], [b"MRN123456"]) == []
    # the salt stays in the store, printed nowhere
    salt = (out / "store" / ".salt").read_text().strip()
    assert len(salt) >= 32 and salt not in run["logs"] and salt not in text.replace(salt, "", 1)
    # a re-run of the hashed store keeps the same names
    res = CliRunner().invoke(app, ["ingest", str(phi_folders["root"] / "in"), "--out", str(out / "store")])
    assert res.exit_code == 0 and "already present" in res.output
    again = pd.read_parquet(out / "store" / "manifest.parquet")
    assert sorted(again.source) == sorted(man.source)


def test_sources_are_relative_to_the_input_root(phi_folders) -> None:
    run = phi_folders["relative"]
    out = run["out"]
    above = f"{phi_folders['root']}/"  # the absolute path above the input root
    man = pd.read_parquet(out / "store" / "manifest.parquet")
    assert man.source.str.startswith("in/DOE_JANE_MRN123456/STUDY_DOE^JANE/").all(), list(man.source)
    reason = man[man.status == "failed"].iloc[0].reason
    assert reason.startswith("in/DOE_JANE_MRN123456/STUDY_DOE^JANE/SERIES_2_DOE/"), reason
    results = json.loads((out / "pred" / "result.json").read_text())["results"]
    assert [r["input"] for r in results] == ["SERIES_1_DOE", "DOE_JANE_MRN123456.nii.gz", "SERIES_2_DOE",
                                             "MISSING_DOE"]  # fmt: skip
    assert results[3]["error"] == "FileNotFoundError: MISSING_DOE: no such file or folder"
    assert above not in _texts(out) and above not in run["logs"]
