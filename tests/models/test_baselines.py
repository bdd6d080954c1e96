"""ResNet3D baseline: ViT-like interface, shapes, gradients, build_backbone."""

from __future__ import annotations

import json

import pytest
import torch

from fmct.models.baselines import ResNet3D, ResNet3DConfig
from fmct.models.factory import architecture_of, build_backbone
from fmct.models.vit3d import ViT3D


def test_resnet_interface_and_shapes() -> None:
    m = ResNet3D(ResNet3DConfig(widths=(4, 8, 8, 16), blocks=(1, 2, 1, 1))).eval()
    x = torch.rand(2, 3, 32, 32, 32)
    out = m.forward_features(x)
    assert m.grid_size(x.shape) == (2, 2, 2)
    assert out["cls"].shape == (2, 16) and out["patch"].shape == (2, 8, 16)
    assert out["registers"].shape == (2, 0, 16)
    assert torch.equal(m(x), out["cls"])
    # odd sizes work too; the grid helper matches the actual output
    y = torch.rand(1, 3, 20, 24, 18)
    assert m.forward_features(y)["patch"].shape[1] == torch.tensor(m.grid_size(y.shape)).prod()
    with pytest.raises(ValueError, match="mask"):
        m.forward_features(x, mask=torch.zeros(2, 8, dtype=torch.bool))


@pytest.mark.parametrize("norm", ["group", "batch", "instance"])
def test_resnet_gradients(norm: str) -> None:
    m = ResNet3D(widths=(4, 8), blocks=(1, 1), norm=norm).train()
    m(torch.rand(2, 3, 16, 16, 16)).pow(2).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    assert m.layer_id("stem.0.weight") == 0 and m.layer_id("stages.1.0.conv1.weight") == 2
    assert m.layer_id("norm.weight") == m.num_layers == 3


def test_build_backbone_roundtrip() -> None:
    r = ResNet3D(widths=(4, 8), blocks=(1, 1))
    arch = json.loads(json.dumps(architecture_of(r)))
    assert arch["type"] == "resnet3d"
    r2 = build_backbone(arch)
    assert isinstance(r2, ResNet3D)
    r2.load_state_dict(r.state_dict())
    v = build_backbone(
        {"type": "vit3d", "img_size": 16, "patch_size": 8, "embed_dim": 12, "depth": 1, "num_heads": 2}
    )
    assert isinstance(v, ViT3D)
    assert isinstance(
        build_backbone({"img_size": 16, "patch_size": 8, "embed_dim": 12, "depth": 1, "num_heads": 2}), ViT3D
    )
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone({"type": "unet"})
    with pytest.raises(ValueError, match="unknown ResNet3DConfig"):
        build_backbone({"type": "resnet3d", "depth": 3})
