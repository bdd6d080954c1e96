"""read_series on real CT series (``../shared/realdata/dcm_qa_ct``, read in place): variable spacing, tilt."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from fmct.io.dicom import discover, read_series

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "realdata" / "dcm_qa_ct"
pytestmark = pytest.mark.skipif(
    not REAL.is_dir(), reason=f"real CT DICOM not present at {REAL} (see shared/realdata/README.md)"
)
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _series(sub: str):
    found = discover([REAL / sub])
    assert len(found.series) == 1, found
    return found.series[0]


def _header_centre_of_mass(folder: Path, threshold: float) -> np.ndarray:
    """Centre (RAS mm) of voxels above ``threshold`` straight from each slice's header geometry, every
    slice weighted by the distance it covers (half the distance to each neighbour), independent of fmct."""
    slices = []
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        if "ImagePositionPatient" not in ds:
            continue
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        slices.append(
            (
                np.array(ds.ImagePositionPatient, float),
                np.array(ds.ImageOrientationPatient, float),
                np.array(ds.PixelSpacing, float),
                hu,
            )
        )
    normal = np.cross(slices[0][1][:3], slices[0][1][3:])
    slices.sort(key=lambda s: float(s[0] @ normal))
    d = np.array([s[0] @ normal for s in slices])
    cover = np.gradient(d) if len(d) > 1 else np.ones(1)
    total, weight = np.zeros(3), 0.0
    for (ipp, iop, px, hu), w in zip(slices, cover, strict=True):
        r, c = np.nonzero(hu > threshold)  # rows, cols
        world = ipp + np.outer(c * px[1], iop[:3]) + np.outer(r * px[0], iop[3:])
        total += w * world.sum(0)
        weight += w * len(r)
    return LPS_TO_RAS @ (total / weight)


def _volume_centre_of_mass(vol, threshold: float) -> np.ndarray:
    idx = np.argwhere(np.asarray(vol.array) > threshold)
    return (idx @ vol.affine[:3, :3].T + vol.affine[:3, 3]).mean(0)


def test_ge_variable_spacing_tilted_series_is_read():
    vol = read_series(_series("GE"))
    warnings = " | ".join(vol.meta["warnings"])
    assert "variable slice spacing 4.0-7.0 mm resampled" in warnings
    assert "gantry tilt -18.5 degrees" in warnings
    assert vol.meta["tilt_deg"] == pytest.approx(-18.5, abs=0.05)
    # 4.22 mm along the tilted stack is 4.0 mm between the slice planes
    assert vol.meta["slice_spacing"] == pytest.approx(4.0, abs=0.02)
    com_header = _header_centre_of_mass(REAL / "GE", threshold=-300.0)
    assert np.linalg.norm(_volume_centre_of_mass(vol, -300.0) - com_header) < 1.0


def test_philips_tilted_series_sign_and_spacing():
    vol = read_series(_series("Philips/S21610/S3010"))
    assert vol.meta["tilt_deg"] == pytest.approx(16.5, abs=0.05)
    assert vol.meta["slice_spacing"] == pytest.approx(2.5 * np.cos(np.radians(16.5)), abs=0.01)
    assert not any("slice spacing" in w for w in vol.meta["warnings"])
