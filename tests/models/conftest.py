"""Tiny models and a preprocessing dict shared by the models tests."""

from __future__ import annotations

import pytest

from fmct.models.vit3d import ViT3D, ViT3DConfig

PREPROCESSING = {
    "spacing": 1.0,
    "crop_head": True,
    "deface": False,
    "windows": [[40.0, 80.0], [80.0, 200.0], [600.0, 2800.0]],
    "input_size": 16,
}


@pytest.fixture
def preprocessing() -> dict:
    return dict(PREPROCESSING)


@pytest.fixture
def tiny_vit() -> ViT3D:
    cfg = ViT3DConfig(
        img_size=16,
        patch_size=4,
        embed_dim=24,
        depth=2,
        num_heads=2,
        n_registers=1,
        pos_embed="learned",
        layerscale_init=1e-2,
    )
    return ViT3D(cfg).eval()
