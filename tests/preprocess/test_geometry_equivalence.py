"""The numpy resampling (issue 27's faster ingest) gives the volumes of the torch code it replaced.

The torch implementation is kept verbatim in ``reference_geometry.py`` next to this file. Stated
tolerances: on the resampled float32 grid, max |difference| < 0.02 HU (float32 rounding of a different
order of the same trilinear sums); on the stored int16 volumes of full ``preprocess`` runs (real tilted
and untilted CT and synthetic ones), identical grids, mean |difference| < 0.01 HU and max <= 1 HU (a value
within rounding of .5 can round either way).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import reference_geometry  # tests/preprocess/conftest.py puts this folder on sys.path
from geomcases import CASES as SHARED_CASES
from geomcases import affine_from

from fmct.io.volume import Volume
from fmct.preprocess import PreprocessConfig, preprocess
from fmct.preprocess import geometry as fast

HERE = Path(__file__).resolve().parent
REAL = HERE.parents[1] / ".." / "shared" / "realdata" / "dcm_qa_ct"


CASES = {
    **SHARED_CASES,
    "upsampled_z": ((70, 70, 12), affine_from([[0.45, 0, 0], [0, 0.45, 0], [0, 0, 5.0]], [-16, -16, -30])),
    "tilted_lps": (  # LPS->RAS flips, the shear negative, pixels smaller than 1 mm
        (80, 80, 20),
        affine_from([[-0.5, 0, 0], [0, -0.5, 0], [0, -2.0 * np.tan(np.deg2rad(16.5)), 2.0]], [20, 30, -19]),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_resampling_matches_the_torch_reference(name, dtype, make_volume):
    shape, affine = CASES[name]
    vol = make_volume(shape, affine, centre=(0, 0, 0), radius=24.0, marker=(6.0, -4.0, 9.0))
    src = np.asarray(vol.array)
    if dtype == np.int16:
        src = np.rint(src).astype(np.int16)
    # DICOM-like memory layout: (X, Y, Z) as a transposed view of a C-contiguous (Z, Y, X) buffer
    src = np.ascontiguousarray(src.transpose(2, 1, 0)).transpose(2, 1, 0)
    box = (np.array([-20.0, -22.0, -18.0]), np.array([21.0, 19.0, 20.0]))
    clip = (-1024.0, 1200.0)  # the marker peaks above it: clipping is part of the comparison
    new, path_new = fast.to_ras_isotropic(Volume(src, affine), 1.0, box, clip=clip)
    ref_in = np.clip(src.astype(np.float32), *clip)
    old, path_old = reference_geometry.to_ras_isotropic(Volume(ref_in, affine), 1.0, box)
    assert path_new == path_old
    assert new.shape == old.shape
    np.testing.assert_allclose(new.affine, old.affine, atol=1e-9)
    assert float(np.abs(new.array - old.array).max()) < 0.02


def _old_to_ras_isotropic(ref):
    def run(volume, spacing=1.0, world_box=None, clip=None):
        arr = np.asarray(volume.array, dtype=np.float32)
        if clip is not None:
            arr = np.clip(arr, *clip)
        return ref.to_ras_isotropic(Volume(arr, volume.affine, volume.meta), spacing, world_box)

    return run


def _compare_preprocess(vol: Volume, monkeypatch, cfg: PreprocessConfig) -> tuple[float, float]:
    new = preprocess(vol, cfg)
    with monkeypatch.context() as m:
        m.setattr(fast, "to_ras_isotropic", _old_to_ras_isotropic(reference_geometry))
        old = preprocess(Volume(np.asarray(vol.array, dtype=np.float32), vol.affine, vol.meta), cfg)
    assert new.shape == old.shape
    np.testing.assert_allclose(new.affine, old.affine, atol=1e-9)
    assert new.meta["preprocess"] == old.meta["preprocess"]
    diff = np.abs(new.array.astype(np.int32) - old.array.astype(np.int32))
    return float(diff.mean()), float(diff.max())


@pytest.mark.parametrize("name", ["tilted", "permuted"])
def test_preprocess_matches_the_old_path_synthetic(name, make_volume, monkeypatch):
    shape, affine = CASES[name]
    vol = make_volume(shape, affine, centre=(0, 0, 0), radius=24.0, marker=(6.0, -4.0, 9.0), table_z=-26.0)
    mean, worst = _compare_preprocess(vol, monkeypatch, PreprocessConfig())
    assert mean < 0.01 and worst <= 1.0


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real CT DICOM not present at {REAL}")
@pytest.mark.parametrize("series", ["Philips/S21610/S3010", "Philips/S21570/S2010", "GE"])
def test_preprocess_matches_the_old_path_on_real_ct(series, monkeypatch):
    from fmct.io.dicom import discover, read_series

    vol = read_series(discover([REAL / series]).series[0])
    # decoded without a float32 copy of the scan (GE's variable spacing is interpolated: float32)
    assert vol.array.dtype == (np.float32 if series == "GE" else np.int16)
    mean, worst = _compare_preprocess(vol, monkeypatch, PreprocessConfig())
    assert mean < 0.01 and worst <= 1.0, (mean, worst)
