"""Small NIfTI heads written with nibabel."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


def write_head(path: Path, shape=(40, 40, 24), spacing=(1.2, 1.2, 2.0), flip=False, nan=False) -> Path:
    """A 40 HU ball (radius 18 mm) in air with a bright marker; ``flip`` makes the x/y axes LPS-like."""
    sx, sy, sz = spacing
    aff = np.diag([-sx if flip else sx, -sy if flip else sy, sz, 1.0])
    idx = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), -1)
    centre_idx = (np.asarray(shape) - 1) / 2.0
    aff[:3, 3] = -(aff[:3, :3] @ centre_idx)
    world = idx @ aff[:3, :3].T + aff[:3, 3]
    hu = np.where((world**2).sum(-1) < 18.0**2, 40.0, -1000.0)
    hu += 1200.0 * np.exp(-((world - [4.0, -3.0, 5.0]) ** 2).sum(-1) / (2 * 2.5**2))
    hu = hu.astype(np.float32)
    if nan:
        hu[3, 3, 3] = np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(hu, aff), str(path))
    return path


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A folder with two good heads (one LPS-like), a NaN volume, a 4-slice volume and a junk file."""
    d = tmp_path / "in"
    write_head(d / "head_a.nii.gz")
    write_head(d / "sub" / "head_b.nii.gz", flip=True, spacing=(0.9, 0.9, 2.5))
    write_head(d / "bad_nan.nii.gz", nan=True)
    write_head(d / "thin.nii.gz", shape=(40, 40, 4))
    (d / "notes.txt").write_text("not a scan\n")
    return d


@pytest.fixture
def head_writer():
    return write_head
