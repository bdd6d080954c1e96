import numpy as np
import pytest
import torch

from fmct.infer.saliency_metrics import (
    distance_to_mask_mm,
    mask_on_cube,
    mass_share,
    pointing_hit,
    random_map,
)


def test_mass_share_limits():
    occ = np.zeros((4, 4, 4))
    occ[:2] = 1.0
    assert mass_share(np.ones((4, 4, 4)), occ) == pytest.approx(0.5)  # uniform map = volume fraction
    m = np.zeros((4, 4, 4))
    m[0, 1, 2] = 3.0
    assert mass_share(m, occ) == 1.0
    assert np.isnan(mass_share(np.zeros((4, 4, 4)), occ))


def test_mask_on_cube_and_pointing_game():
    # mask grid: 2 mm voxels; cube: 4 mm voxels over the same field, offset by half a mask voxel
    mask_aff = np.diag([2.0, 2.0, 2.0, 1.0])
    grid_aff = np.diag([4.0, 4.0, 4.0, 1.0])
    grid_aff[:3, 3] = 1.0
    mask = np.zeros((32, 32, 32), bool)
    mask[20:28, 4:12, 10:18] = True  # world x 40..54, y 8..22, z 20..34
    occ = mask_on_cube(mask, mask_aff, grid_aff, 16)
    assert occ.shape == (16, 16, 16) and 0 <= occ.min() and occ.max() == pytest.approx(1.0)
    assert occ.sum() * 4**3 == pytest.approx(mask.sum() * 2**3, rel=0.15)  # volume kept
    dist = distance_to_mask_mm(mask, (2.0, 2.0, 2.0))
    inside = np.zeros((16, 16, 16))
    inside[11, 3, 6] = 1.0  # world (45, 13, 25): inside the mask
    far = np.zeros((16, 16, 16))
    far[1, 14, 1] = 1.0
    assert pointing_hit(inside, grid_aff, dist, mask_aff)
    assert not pointing_hit(far, grid_aff, dist, mask_aff)
    assert mass_share(inside, occ) > 0.9 and mass_share(far, occ) == 0.0


def test_random_map_is_smooth_and_normalised():
    g = torch.Generator().manual_seed(0)
    m = random_map(16, 2.0, g)
    assert m.shape == (16, 16, 16) and float(m.min()) == 0.0 and float(m.max()) == 1.0
    assert float((m[1:] - m[:-1]).abs().mean()) < 0.15  # neighbouring voxels are correlated
