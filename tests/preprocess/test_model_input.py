import numpy as np
import pytest

from fmct.io.volume import Volume
from fmct.preprocess.model_input import cube_hu, to_model_input


def _volume_with_marker(shape=(40, 30, 20), marker=(30, 10, 5), spacing=(1.0, 1.0, 1.0)):
    # a smooth Gaussian marker, so resampling does not bias its intensity centroid
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    d2 = ((grid - np.asarray(marker)) ** 2).sum(-1)
    arr = (-1000.0 + 2000.0 * np.exp(-d2 / (2 * 3.0**2))).astype(np.float32)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-20.0, 5.0, 100.0]
    return Volume(arr, affine)


def test_cube_keeps_world_position_of_a_marker():
    vol = _volume_with_marker()
    hu, grid_affine = cube_hu(vol, 16)
    assert hu.shape == (16, 16, 16)
    w = (hu.numpy() + 1000.0).clip(min=0)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in hu.shape], indexing="ij"), -1)
    idx = (grid * w[..., None]).reshape(-1, 3).sum(0) / w.sum()
    world_cube = grid_affine @ np.r_[idx, 1.0]
    world_true = vol.affine @ np.r_[30.0, 10.0, 5.0, 1.0]
    # the intensity centroid survives resizing far better than one cube voxel (2.5 mm)
    assert np.linalg.norm(world_cube[:3] - world_true[:3]) <= 0.5


def test_aspect_ratio_kept_and_padding_is_air():
    vol = _volume_with_marker()
    hu, grid_affine = cube_hu(vol, 40)  # no resize: pure padding
    np.testing.assert_allclose(np.linalg.norm(grid_affine[:3, :3], axis=0), 1.0)
    assert float(hu[:, :, 0].max()) == pytest.approx(-1000.0)  # padded z slab


def test_model_input_is_windowed_channels():
    x, _ = to_model_input(_volume_with_marker(), 8)
    assert tuple(x.shape) == (3, 8, 8, 8)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


@pytest.mark.parametrize("size", [16, 33, 48])
def test_pad_crop_fit_matches_monai_resize_with_pad_or_crop_and_keeps_world_positions(size):
    """fit="pad_crop" (CT-FM's ResizeWithPadOrCrop): voxels kept at their spacing, centred, each axis padded
    with air or cropped exactly as MONAI does; the grid affine maps each cube voxel to its world point."""
    import torch
    from monai.transforms import ResizeWithPadOrCrop

    vol = _volume_with_marker()  # 40 x 30 x 20: cropped along x for 16 and 33, padded elsewhere
    hu, grid_affine = cube_hu(vol, size, fit="pad_crop")
    ref = ResizeWithPadOrCrop((size,) * 3, constant_values=-1000.0)(torch.from_numpy(vol.array[None]))[0]
    np.testing.assert_array_equal(hu.numpy(), np.asarray(ref))
    np.testing.assert_allclose(grid_affine[:3, :3], vol.affine[:3, :3])  # no resampling: spacing kept
    inside = np.argwhere(hu.numpy() > -999.0)
    src = np.rint((np.linalg.inv(vol.affine) @ grid_affine @ np.c_[inside, np.ones(len(inside))].T)[:3].T)
    np.testing.assert_array_equal(hu.numpy()[tuple(inside.T)], vol.array[tuple(src.astype(int).T)])
    with pytest.raises(ValueError, match="input_fit must be one of"):
        cube_hu(vol, size, fit="stretch")
