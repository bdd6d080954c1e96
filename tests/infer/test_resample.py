import numpy as np
import pytest
import torch

from fmct.infer.resample import resample_to_grid
from fmct.io.volume import Volume
from fmct.preprocess import preprocess
from fmct.preprocess.model_input import to_model_input


def _rotation_z(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def _peak_cube(size: int, at: tuple[int, int, int], sigma: float = 1.5) -> torch.Tensor:
    idx = torch.stack(torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * 3, indexing="ij"), -1)
    d2 = ((idx - torch.tensor(at, dtype=torch.float32)) ** 2).sum(-1)
    return torch.exp(-d2 / (2 * sigma**2))


def test_identity_geometry_is_exact():
    cube = torch.rand(6, 7, 8)
    aff = np.diag([2.0, 3.0, 1.5, 1.0])
    aff[:3, 3] = [5, -4, 10]
    out = resample_to_grid(cube, aff, aff, cube.shape)
    np.testing.assert_allclose(out, cube.numpy(), atol=1e-5)


def test_outside_the_cube_is_fill():
    cube = torch.ones(4, 4, 4)
    target = np.eye(4)
    target[:3, 3] = 100.0
    assert np.all(resample_to_grid(cube, np.eye(4), target, (3, 3, 3)) == 0)
    assert np.allclose(resample_to_grid(cube, np.eye(4), target, (3, 3, 3), fill=-1.0), -1.0)


@pytest.mark.parametrize("slab_points", [4_000_000, 500])
def test_peak_in_model_grid_lands_at_its_world_position_in_the_original_geometry(
    slab_points, make_head_volume
):
    """Oblique, anisotropic, flipped source scan -> preprocess -> model cube; a peak placed in the cube
    comes back at the same world position (within a source voxel) on the ORIGINAL grid."""
    src = make_head_volume(shape=(40, 46, 24), spacing=(4.0, 4.0, 6.0), flip_xy=True)
    rot = np.eye(4)
    rot[:3, :3] = _rotation_z(12.0)
    src = Volume(src.array, rot @ src.affine, src.meta)
    pp = preprocess(src)
    size = 32
    _, grid_affine = to_model_input(pp, size)
    at = (20, 11, 17)
    heat = resample_to_grid(_peak_cube(size, at), grid_affine, src.affine, src.shape, max_points=slab_points)
    assert heat.shape == src.shape
    peak_vox = np.array(np.unravel_index(int(np.argmax(heat)), heat.shape), dtype=float)
    world_found = src.affine[:3, :3] @ peak_vox + src.affine[:3, 3]
    world_true = grid_affine[:3, :3] @ np.array(at, dtype=float) + grid_affine[:3, 3]
    assert np.linalg.norm(world_found - world_true) <= np.linalg.norm(src.spacing) / 2 + 1e-6
    # sub-voxel check: the centre of mass of the top of the map is close to the true position
    w = np.clip(heat - 0.5 * heat.max(), 0, None)
    com = (np.stack(np.nonzero(w), 1) * w[w > 0][:, None]).sum(0) / w.sum()
    com_world = src.affine[:3, :3] @ com + src.affine[:3, 3]
    assert np.linalg.norm(com_world - world_true) < 1.5
