"""MONAI networks as fmct backbones: feature-map tokens in RAS order, their grid, other outputs, clear errors,
and the model directory round trip."""

from __future__ import annotations

import pytest
import torch

from fmct.models.factory import build_backbone
from fmct.models.monai_net import MonaiBackbone, MonaiNetConfig, segres_encoder_config


def _segres(axcodes: str = "RAS", **kw) -> MonaiBackbone:
    torch.manual_seed(0)
    return MonaiBackbone(
        segres_encoder_config(2, init_filters=4, blocks_down=(1, 1, 1), norm="group", axcodes=axcodes, **kw)
    )


def test_tokens_are_the_last_feature_map_in_ras_order_and_cls_their_mean() -> None:
    bb = _segres().eval()
    x = torch.rand(2, 2, 20, 24, 16)
    with torch.no_grad():
        out = bb.forward_features(x)
        last = bb.net(x)[-1]  # SegResEncoder returns one map per level
    assert last.shape == (2, 16, 5, 6, 4) and bb.embed_dim == 16
    assert torch.equal(out["patch"], last.flatten(2).transpose(1, 2))
    assert torch.allclose(out["cls"], last.mean(dim=(2, 3, 4))) and out["registers"].shape == (2, 0, 16)
    assert bb.grid_size(x.shape) == (5, 6, 4)
    odd = torch.rand(1, 2, 21, 23, 13)
    predicted = _segres().grid_size(odd.shape)  # computed from the levels, no forward pass
    with torch.no_grad():
        assert predicted == tuple(bb.net(odd)[-1].shape[-3:]) == (6, 6, 4)


def test_another_orientation_sees_a_reoriented_input_and_returns_ras_tokens() -> None:
    """A network trained in SPL sees the RAS cube permuted and flipped; its tokens come back in RAS order, so
    the grid and the brain mask of the RAS cube line up with them."""
    ras, spl = _segres("RAS").eval(), _segres("SPL").eval()
    spl.load_state_dict(ras.state_dict())
    x = torch.rand(1, 2, 16, 24, 32)
    with torch.no_grad():
        f_spl = spl.net(x.permute(0, 1, 4, 3, 2).flip(3, 4))[-1]  # SPL by hand: (S, P, L)
        out = spl.forward_features(x)
    back = f_spl.flip(3, 4).permute(0, 1, 4, 3, 2)
    assert spl.grid_size(x.shape) == (4, 6, 8) == tuple(back.shape[-3:])
    assert torch.allclose(out["patch"], back.flatten(2).transpose(1, 2))


def test_any_network_by_name_with_a_layer_or_a_vector_output() -> None:
    """A chosen submodule's output is the feature map (grid measured once per shape, without touching
    batch-norm statistics); a (B, D) output counts as a 1³ map."""
    cfg = MonaiNetConfig("DenseNet121", {"spatial_dims": 3, "in_channels": 1, "out_channels": 4,
                                         "init_features": 8, "growth_rate": 4, "block_config": [2, 2]},
                         in_chans=1, embed_dim=16, layer="features.denseblock2")  # fmt: skip
    bb = MonaiBackbone(cfg).train()
    stats = {k: v.clone() for k, v in bb.state_dict().items() if "running" in k}
    assert bb.grid_size((32, 32, 32)) == (4, 4, 4)
    assert bb.training and all(torch.equal(v, bb.state_dict()[k]) for k, v in stats.items())
    logits = MonaiBackbone(MonaiNetConfig("DenseNet121", {**cfg.kwargs}, 1, 4)).eval()
    with torch.no_grad():
        out = logits.forward_features(torch.rand(2, 1, 32, 32, 32))
    assert out["patch"].shape == (2, 1, 4) and logits.grid_size((32, 32, 32)) == (1, 1, 1)


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"network": "NoSuchNet"}, "unknown MONAI network 'NoSuchNet'"),
        ({"network": "os.system"}, "unknown MONAI network"),
        ({"network": "../x"}, "expected a class of monai.networks.nets"),
        ({"network": "SegResNet", "kwargs": {"nope": 1}}, "SegResNet with {'nope': 1}"),
        ({"network": "SegResNet", "layer": "decoder"}, "has no submodule 'decoder'"),
        ({"network": "SegResNet", "axcodes": "RAX"}, "axis codes"),
    ],
)
def test_bad_networks_are_named(cfg: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MonaiBackbone(MonaiNetConfig(**cfg))


def test_wrong_token_width_is_reported() -> None:
    bb = MonaiBackbone(segres_encoder_config(1, init_filters=4, blocks_down=(1, 1)))
    bb.embed_dim = 5
    with pytest.raises(ValueError, match=r"expected a feature map \(B, 5, X, Y, Z\).*got \(1, 8, 8, 8, 8\)"):
        bb.forward_features(torch.rand(1, 1, 16, 16, 16))


def test_model_directory_round_trip_keeps_the_config_unchanged(tmp_path) -> None:
    """save_pretrained / load_model rebuild the same network; MONAI's in-place defaults (norm affine) do not
    leak into the recorded architecture."""
    from fmct.models.hub import load_model, save_pretrained

    bb = _segres("SPL")
    arch = bb.config.to_dict()
    assert arch["kwargs"]["norm"] == ["group", {"num_groups": 4}]
    save_pretrained(
        bb, tmp_path / "m", kind="backbone", preprocessing={"input_size": 16, "input_fit": "pad_crop"}
    )
    m = load_model(tmp_path / "m")
    assert m.architecture == arch and isinstance(build_backbone(arch), MonaiBackbone)
    x = torch.rand(1, 2, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(m.embed(x)["cls"], bb.eval().forward_features(x)["cls"])
