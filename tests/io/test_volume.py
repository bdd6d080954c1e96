"""Volume: a short repr, and NIfTI round trips through to_nifti / from_nifti."""

import numpy as np

from fmct.io.volume import Volume


def _vol(affine: np.ndarray) -> Volume:
    a = (np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) * 7 - 1000).astype(np.int16)
    return Volume(a, affine, {"source_kind": "test"})


def test_repr_is_short_and_says_shape_spacing_orientation_and_range() -> None:
    v = _vol(np.diag([-0.5, -0.5, 2.0, 1.0]))
    text = repr(v)
    assert (
        text
        == "Volume(shape=(4, 5, 6), spacing=0.5x0.5x2 mm, orientation=LPS, -1000 to -167 HU, dtype=int16)"
    )
    assert len(repr(Volume(np.zeros((64, 64, 64), np.float32), np.eye(4)))) < 120  # never the array


def test_nifti_round_trip_keeps_values_and_affine(tmp_path) -> None:
    shear = np.eye(4)
    shear[:3, :3] = [[0.5, 0.0, 0.0], [0.0, 0.5, 0.6], [0.0, 0.0, 2.0]]  # a tilted (sheared) grid
    for affine in (np.diag([-0.5, -0.5, 2.0, 1.0]), shear):
        v = _vol(affine)
        path = v.to_nifti(tmp_path / "v.nii.gz")
        back = Volume.from_nifti(path)
        assert np.array_equal(back.array, v.array.astype(np.float32))
        np.testing.assert_allclose(back.affine, v.affine, atol=1e-5)
        assert not list(tmp_path.glob(".tmp-*"))  # written atomically, nothing left behind
