"""Multi-crop geometry and intensity augmentations."""

from __future__ import annotations

import torch

from fmct.ssl.augment import AugmentConfig, MultiCrop, blur_volume, crop_thetas, resample_crops


def _ramp(n: int = 24) -> torch.Tensor:
    """HU cube increasing along X (the left-right axis)."""
    return torch.linspace(-500, 500, n)[:, None, None].expand(n, n, n).clone()


def test_identity_crop_reproduces_cube() -> None:
    cube = torch.randn(16, 16, 16) * 100
    theta = torch.zeros(1, 3, 4)
    theta[0, :, :3] = torch.eye(3)
    out = resample_crops(cube, theta, 16)
    torch.testing.assert_close(out[0], cube, atol=1e-3, rtol=1e-4)


def test_flip_reverses_left_right_only() -> None:
    g = torch.Generator().manual_seed(0)
    th = crop_thetas(1, (1.0, 1.0), 0.0, 1.0, g)
    out = resample_crops(_ramp(), th, 24)[0]
    assert out[0, 5, 5] > out[-1, 5, 5]  # X reversed
    # a Y ramp is not flipped
    y_ramp = _ramp().permute(1, 0, 2)
    out_y = resample_crops(y_ramp, th, 24)[0]
    assert out_y[5, 0, 5] < out_y[5, -1, 5]


def test_outside_is_air_and_small_scale_zooms() -> None:
    cube = torch.zeros(16, 16, 16)
    theta = torch.zeros(1, 3, 4)
    theta[0, :, :3] = 2.0 * torch.eye(3)  # sample twice the extent -> border outside the cube
    out = resample_crops(cube, theta, 16)[0]
    assert float(out[0, 0, 0]) == -1000.0 and abs(float(out[8, 8, 8])) < 1e-3
    g = torch.Generator().manual_seed(0)
    th = crop_thetas(50, (0.05, 0.1), 10.0, 0.5, g)
    s = th[:, :, :3].det().abs() ** (1 / 3)
    assert float(s.min()) >= 0.05 ** (1 / 3) - 1e-4 and float(s.max()) <= 0.1 ** (1 / 3) + 1e-4
    # centres keep the box inside the cube
    assert bool((th[:, :, 3].abs() <= 1 - s[:, None] + 1e-5).all())


def test_blur_preserves_mean_and_smooths() -> None:
    torch.manual_seed(0)
    x = torch.randn(12, 12, 12)
    y = blur_volume(x, 1.0)
    assert y.shape == x.shape and float(y.std()) < 0.5 * float(x.std())
    assert abs(float(y.mean() - x.mean())) < 0.05


def test_multicrop_shapes_range_and_determinism() -> None:
    cfg = AugmentConfig(global_size=16, local_size=8, n_global=2, n_local=3)
    mc = MultiCrop(cfg)
    cube = torch.randn(24, 24, 24) * 300
    a = mc(cube, torch.Generator().manual_seed(5))
    b = mc(cube, torch.Generator().manual_seed(5))
    c = mc(cube, torch.Generator().manual_seed(6))
    assert a["global"].shape == (2, 3, 16, 16, 16) and a["local"].shape == (3, 3, 8, 8, 8)
    assert float(a["global"].min()) >= 0.0 and float(a["global"].max()) <= 1.0
    assert torch.equal(a["global"], b["global"]) and torch.equal(a["local"], b["local"])
    assert not torch.equal(a["global"], c["global"])
    assert not torch.equal(a["global"][0], a["global"][1])


def test_config_from_dict_ignores_loader_keys() -> None:
    cfg = AugmentConfig.from_dict({"global_size": 32, "global_scale": [0.5, 1.0], "cache_size": 48})
    assert cfg.global_size == 32 and cfg.global_scale == (0.5, 1.0)
