"""ViT3D: shapes, masking, position interpolation, attention, SDPA equivalence, checkpointing, drop-path."""

from __future__ import annotations

import json

import pytest
import torch

from fmct.models.pos_embed import sincos_3d
from fmct.models.vit3d import PRESETS, ViT3D, ViT3DConfig, vit3d_config_from_preset, vit3d_from_preset


def small_cfg(**kw) -> ViT3DConfig:
    base = dict(img_size=16, patch_size=4, in_chans=3, embed_dim=48, depth=2, num_heads=3)
    base.update(kw)
    return ViT3DConfig(**base)


def test_shapes_and_registers() -> None:
    m = ViT3D(small_cfg(n_registers=2)).eval()
    x = torch.rand(2, 3, 16, 16, 16)
    out = m.forward_features(x)
    assert out["cls"].shape == (2, 48)
    assert out["patch"].shape == (2, 64, 48)
    assert out["registers"].shape == (2, 2, 48)
    assert "attn" not in out
    assert torch.equal(m(x), out["cls"])
    assert m.grid_size(x.shape) == (4, 4, 4)
    with pytest.raises(ValueError, match="not divisible"):
        m.grid_size((15, 16, 16))


def test_anisotropic_patch_and_other_grids() -> None:
    m = ViT3D(small_cfg(img_size=(16, 16, 8), patch_size=(4, 4, 2))).eval()
    assert m.base_grid == (4, 4, 4)
    out = m.forward_features(torch.rand(1, 3, 8, 12, 6))
    assert out["patch"].shape == (1, 2 * 3 * 3, 48)


@pytest.mark.parametrize("kind", ["sincos", "learned"])
def test_pos_embed_interpolation(kind: str) -> None:
    m = ViT3D(small_cfg(pos_embed=kind)).eval()
    # same grid -> table unchanged; other grids -> trilinear resize with the right token count
    assert torch.equal(m.pos_embed_for(m.base_grid), m.pos_embed)
    assert m.pos_embed_for((2, 2, 2)).shape == (1, 8, 48)
    assert m.pos_embed_for((8, 8, 8)).shape == (1, 512, 48)
    # 8³ local crops and 32³ larger inputs both run through the same model
    assert m.forward_features(torch.rand(1, 3, 8, 8, 8))["patch"].shape == (1, 8, 48)
    assert m.forward_features(torch.rand(1, 3, 32, 32, 32))["patch"].shape == (1, 512, 48)
    # learned tables are parameters (saved); sincos tables are fixed buffers
    assert ("pos_embed" in dict(m.named_parameters())) == (kind == "learned")


def test_sincos_distinct_positions() -> None:
    e = sincos_3d(48, (3, 3, 3))
    assert e.shape == (27, 48)
    assert torch.cdist(e, e).add(torch.eye(27) * 10).min() > 1e-3  # all positions different
    assert sincos_3d(1024, (2, 2, 2)).shape == (8, 1024)  # dim not divisible by 6: zero padded


def test_mask_replaces_patch_tokens() -> None:
    torch.manual_seed(0)
    m = ViT3D(small_cfg(depth=1)).eval()
    x = torch.rand(2, 3, 16, 16, 16)
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[0, :10] = True
    t_masked = m.prepare_tokens(x, mask)
    t_plain = m.prepare_tokens(x)
    pos = m.pos_embed_for(m.base_grid)
    # masked positions = mask token + position, others unchanged
    torch.testing.assert_close(t_masked[0, 1:11], (m.mask_token + pos)[0, :10].expand(10, -1))
    torch.testing.assert_close(t_masked[0, 11:], t_plain[0, 11:])
    torch.testing.assert_close(t_masked[1], t_plain[1])
    # the output of masked positions does not depend on the masked voxels' content
    x2 = x.clone()
    x2[0, :, :4, :4, :4] = torch.rand(3, 4, 4, 4)  # patch 0 only
    mask0 = torch.zeros(2, 64, dtype=torch.bool)
    mask0[:, 0] = True
    torch.testing.assert_close(m.forward_features(x, mask0)["cls"], m.forward_features(x2, mask0)["cls"])
    with pytest.raises(ValueError, match="mask"):
        m.forward_features(x, torch.zeros(2, 63, dtype=torch.bool))


def test_keep_indices_selects_tokens() -> None:
    m = ViT3D(small_cfg(depth=1)).eval()
    x = torch.rand(2, 3, 16, 16, 16)
    keep = torch.stack([torch.randperm(64)[:16] for _ in range(2)])
    full = m.prepare_tokens(x)
    kept = m.prepare_tokens(x, keep_indices=keep)
    assert kept.shape == (2, 17, 48)
    torch.testing.assert_close(kept[1, 1:], full[1, 1:][keep[1]])
    assert m.forward_features(x, keep_indices=keep)["patch"].shape == (2, 16, 48)


def test_attention_maps_and_sdpa_equivalence() -> None:
    torch.manual_seed(0)
    m = ViT3D(small_cfg(n_registers=1, layerscale_init=0.1)).eval()
    x = torch.rand(2, 3, 16, 16, 16)
    with torch.no_grad():
        fast = m.forward_features(x)
        slow = m.forward_features(x, return_attention=True)
    attn = slow["attn"]
    assert len(attn) == 2
    t = 1 + 1 + 64
    assert all(a.shape == (2, 3, t, t) for a in attn)
    torch.testing.assert_close(attn[0].sum(-1), torch.ones(2, 3, t))
    assert (attn[-1] >= 0).all()
    for k in ("cls", "patch", "registers"):
        torch.testing.assert_close(fast[k], slow[k], atol=1e-5, rtol=1e-4)


def test_gradients_flow_to_all_parameters() -> None:
    m = ViT3D(small_cfg(n_registers=2, pos_embed="learned", layerscale_init=1e-2)).train()
    x = torch.rand(2, 3, 16, 16, 16)
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[:, ::3] = True
    out = m.forward_features(x, mask)
    (out["cls"].sum() + out["patch"].pow(2).mean() + out["registers"].sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_checkpointing_same_grads() -> None:
    torch.manual_seed(0)
    cfg = small_cfg(drop_path_rate=0.3)
    a = ViT3D(cfg).train()
    b = ViT3D(cfg, grad_checkpointing=True).train()
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 3, 16, 16, 16)
    grads = []
    for m in (a, b):
        torch.manual_seed(123)  # same drop-path draws
        m.forward_features(x)["patch"].pow(2).mean().backward()
        grads.append({n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    assert set(grads[0]) == set(grads[1]) and "blocks.0.attn.qkv.weight" in grads[0]
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-5)


def test_drop_path_only_in_training() -> None:
    m = ViT3D(small_cfg(drop_path_rate=0.9, depth=3))
    assert [blk.drop_path.p for blk in m.blocks] == pytest.approx([0.0, 0.45, 0.9])
    x = torch.rand(4, 3, 16, 16, 16)
    m.eval()
    torch.testing.assert_close(m(x), m(x))
    m.train()
    torch.manual_seed(0)
    y1 = m(x)
    y2 = m(x)
    assert not torch.allclose(y1, y2)


def test_config_roundtrip_and_presets() -> None:
    cfg = small_cfg(img_size=(16, 16, 8), patch_size=(4, 4, 2), layerscale_init=1e-5)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["type"] == "vit3d"
    assert ViT3DConfig.from_dict(d) == cfg
    with pytest.raises(ValueError, match="unknown"):
        ViT3DConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="divisible"):
        ViT3DConfig(img_size=30, patch_size=8)
    assert set(PRESETS) == {"tiny", "small", "base", "large"}
    c = vit3d_config_from_preset("base", img_size=96, patch_size=12)
    assert (c.embed_dim, c.depth, c.num_heads, c.img_size) == (768, 12, 12, 96)
    m = vit3d_from_preset("tiny", img_size=16, patch_size=8, depth=1)
    assert m.embed_dim == 192
    with pytest.raises(ValueError, match="preset"):
        vit3d_from_preset("huge")


def test_layer_ids_and_no_weight_decay() -> None:
    m = ViT3D(small_cfg(n_registers=1, pos_embed="learned"))
    assert m.no_weight_decay() == {"cls_token", "mask_token", "register_tokens", "pos_embed"}
    ids = {n: m.layer_id(n) for n, _ in m.named_parameters()}
    assert ids["patch_embed.proj.weight"] == 0 and ids["cls_token"] == 0
    assert ids["blocks.0.attn.qkv.weight"] == 1 and ids["blocks.1.mlp.fc2.bias"] == 2
    assert ids["norm.weight"] == m.depth + 1 == m.num_layers
    assert ViT3D(small_cfg()).no_weight_decay() == {"cls_token", "mask_token"}


def test_voxel_mlp_patch_embedding_keeps_patches_independent_and_counts_intensity_bands() -> None:
    """model.voxel_mlp > 0: a pointwise voxel layer + GELU before patchifying. Changing the voxels of one patch
    changes that patch's token only (masking stays leak-free), and the embedding can express a soft count of
    voxels in an intensity band (a linear map of the raw patch cannot tell 'half the voxels at 0.6' from
    'all at 0.3'; a pointwise nonlinearity can)."""
    torch.manual_seed(0)
    vit = ViT3D(ViT3DConfig(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2, voxel_mlp=4))
    x = torch.rand(1, 3, 16, 16, 16)
    t0 = vit.patch_embed(x)
    x2 = x.clone()
    x2[:, :, :8, :8, :8] += 0.5  # patch 0 only
    t1 = vit.patch_embed(x2)
    changed = (t1 - t0).abs().amax(dim=-1)[0] > 0
    assert changed.tolist() == [True] + [False] * 7
    assert vit.config.to_dict()["voxel_mlp"] == 4 and ViT3D(ViT3DConfig.from_dict(vit.config.to_dict()))
    half = torch.zeros(1, 3, 16, 16, 16)
    half[:, :, :8, :8, :4] = 0.6  # patch 0: half its voxels at 0.6 ...
    flat = torch.zeros(1, 3, 16, 16, 16)
    flat[:, :, :8, :8, :8] = 0.3  # ... vs all at 0.3: the same patch mean
    plain = ViT3D(ViT3DConfig(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2))
    with torch.no_grad():
        plain.patch_embed.proj.weight.fill_(1.0)  # the patch mean, linearly
    assert torch.allclose(plain.patch_embed(half)[0, 0], plain.patch_embed(flat)[0, 0], rtol=1e-4)
    assert not torch.allclose(vit.patch_embed(half)[0, 0], vit.patch_embed(flat)[0, 0], rtol=1e-2)
