import numpy as np
import pytest
import torch

from fmct.infer.saliency_metrics import (
    MaskDistance,
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
    dist = MaskDistance(mask, mask_aff)
    inside = np.zeros((16, 16, 16))
    inside[11, 3, 6] = 1.0  # world (45, 13, 25): inside the mask
    far = np.zeros((16, 16, 16))
    far[1, 14, 1] = 1.0
    assert pointing_hit(inside, grid_aff, dist)
    assert not pointing_hit(far, grid_aff, dist)
    assert mass_share(inside, occ) > 0.9 and mass_share(far, occ) == 0.0


def test_random_map_is_smooth_and_normalised():
    g = torch.Generator().manual_seed(0)
    m = random_map(16, 2.0, g)
    assert m.shape == (16, 16, 16) and float(m.min()) == 0.0 and float(m.max()) == 1.0
    assert float((m[1:] - m[:-1]).abs().mean()) < 0.15  # neighbouring voxels are correlated


def _case():
    """A 2 mm mask grid and a 4 mm cube over the same field; the head fills the cube's inner half."""
    mask_aff = np.diag([2.0, 2.0, 2.0, 1.0])
    grid_aff = np.diag([4.0, 4.0, 4.0, 1.0])
    mask = np.zeros((32, 32, 32), bool)
    mask[20:24, 20:24, 20:24] = True  # world 40..46 mm on every axis
    head = np.zeros((16, 16, 16), bool)
    head[4:12, 4:12, 4:12] = True
    return mask, mask_aff, grid_aff, head


def test_score_maps_hit_miss_and_chance():
    from fmct.infer.saliency_metrics import score_maps

    mask, mask_aff, grid_aff, head = _case()
    inside, outside = np.zeros((16, 16, 16)), np.zeros((16, 16, 16))
    inside[11, 11, 11] = 1.0  # world (44, 44, 44): in the mask
    outside[5, 5, 5] = 1.0  # world (20, 20, 20): 20 * sqrt(3) mm from the mask's corner at 40 mm
    s = score_maps({"good": inside, "bad": outside}, grid_aff, mask, mask_aff, head, tol_mm=10.0)
    assert s["methods"]["good"] == {"hit": True, "peak_to_mask_mm": 0.0, "mass_share": pytest.approx(1.0)}
    assert s["methods"]["bad"]["hit"] is False and s["methods"]["bad"]["mass_share"] == 0.0
    assert s["methods"]["bad"]["peak_to_mask_mm"] == pytest.approx(np.sqrt(3) * 20, abs=0.1)
    # chance: the share of head voxels within 10 mm of the mask, counted by hand
    idx = np.argwhere(head) * 4.0
    d = np.sqrt((np.clip(40 - idx, 0, None) ** 2 + np.clip(idx - 46, 0, None) ** 2).sum(1))
    assert s["chance"]["hit_rate"] == pytest.approx(np.mean(d <= 10.0), abs=0.01)
    assert 0 < s["chance"]["mass_share"] < 0.1
    with pytest.raises(ValueError, match="empty"):
        score_maps({"good": inside}, grid_aff, np.zeros_like(mask), mask_aff, head)


def test_summary_per_method_with_wilson_intervals():
    from fmct.infer.saliency_metrics import summarise_scores

    def case(hit_a, hit_b):
        return {"methods": {"a": {"hit": hit_a, "mass_share": 0.5}, "b": {"hit": hit_b, "mass_share": 0.1}},
                "chance": {"hit_rate": 0.1, "mass_share": 0.05}}  # fmt: skip

    s = summarise_scores([case(True, False)] * 8 + [case(False, False)] * 2)
    a, b = s["methods"]
    assert (a["method"], a["hits"], a["cases"], a["hit_rate"]) == ("a", 8, 10, 0.8)
    assert a["ci"][0] == pytest.approx(0.490, abs=0.005) and a["ci"][1] == pytest.approx(0.943, abs=0.005)
    assert (b["hits"], b["hit_rate"], b["ci"][0]) == (0, 0.0, 0.0)
    assert a["mass_share"] == pytest.approx(0.5) and s["chance"] == {"hit_rate": 0.1, "mass_share": 0.05}
    assert s["cases"] == 10
