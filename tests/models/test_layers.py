"""Transformer layers: the optimised attention and patch embedding compute what the textbook formulas (the
convolutions) do, keys unchanged."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fmct.models.layers import Attention, Block, PatchEmbed3D
from fmct.models.vit3d import ViT3D, ViT3DConfig


def reference_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Multi-head attention written out from the weights: ``proj(concat_h softmax(q_h k_h^T / sqrt(d)) v_h)``.

    ``qkv.weight`` rows are ``[q | k | v]``, each split into heads of ``head_dim`` consecutive rows.
    """
    b, t, d = x.shape
    h, hd = attn.num_heads, attn.head_dim
    w = attn.qkv.weight.view(3, h, hd, d)
    bias = attn.qkv.bias.view(3, h, hd)
    heads = []
    for i in range(h):
        q, k, v = (x @ w[j, i].T + bias[j, i] for j in range(3))  # (B, T, hd)
        a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd), dim=-1)
        heads.append(a @ v)
    return F.linear(torch.cat(heads, dim=-1), attn.proj.weight, attn.proj.bias)


def previous_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """The layout the attention used before (qkv permuted to (3, B, H, T, hd), then unbound on dim 0)."""
    b, t, d = x.shape
    qkv = attn.qkv(x).reshape(b, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(*qkv.unbind(0))
    return attn.proj(out.transpose(1, 2).reshape(b, t, d))


def _grads(module: torch.nn.Module, x: torch.Tensor, fn) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    module.zero_grad(set_to_none=True)
    xi = x.clone().requires_grad_(True)
    y = fn(xi)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    return y.detach(), {"input": xi.grad, **{n: p.grad.clone() for n, p in module.named_parameters()}}


def test_attention_matches_reference_and_previous_layout() -> None:
    torch.manual_seed(0)
    attn = Attention(48, 3)
    x = torch.randn(2, 37, 48)  # odd token count, as with a CLS token
    y, g = _grads(attn, x, lambda t: attn(t)[0])
    y_ref, g_ref = _grads(attn, x, lambda t: reference_attention(attn, t))
    y_old, g_old = _grads(attn, x, lambda t: previous_attention(attn, t))
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-4)
    assert torch.equal(y, y_old)  # same kernel on the same strides: bit-identical
    assert set(g) == {"input", "qkv.weight", "qkv.bias", "proj.weight", "proj.bias"}
    for name in g:
        torch.testing.assert_close(g[name], g_ref[name], atol=1e-5, rtol=1e-4, msg=name)
        torch.testing.assert_close(g[name], g_old[name], atol=1e-6, rtol=1e-5, msg=name)
    # the explicit-attention path returns the same output plus the maps
    y_maps, maps = attn(x, return_attention=True)
    torch.testing.assert_close(y_maps, y_ref, atol=1e-5, rtol=1e-4)
    assert maps is not None and maps.shape == (2, 3, 37, 37)


def test_block_state_dict_keys_unchanged() -> None:
    """Checkpoints saved by earlier versions load strictly: the block's key layout and shapes are fixed."""
    sd = Block(48, 3, layerscale_init=0.1).state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == {
        "norm1.weight": (48,), "norm1.bias": (48,),
        "attn.qkv.weight": (144, 48), "attn.qkv.bias": (144,),
        "attn.proj.weight": (48, 48), "attn.proj.bias": (48,),
        "ls1.gamma": (48,),
        "norm2.weight": (48,), "norm2.bias": (48,),
        "mlp.fc1.weight": (192, 48), "mlp.fc1.bias": (192,),
        "mlp.fc2.weight": (48, 192), "mlp.fc2.bias": (48,),
        "ls2.gamma": (48,),
    }  # fmt: skip


def test_backbone_loss_and_grads_match_reference_attention(monkeypatch) -> None:
    """A fixed batch gives the same loss and parameter gradients as the model built on the textbook formula."""
    torch.manual_seed(0)
    cfg = ViT3DConfig(img_size=16, patch_size=4, embed_dim=48, depth=2, num_heads=3, n_registers=1)
    model = ViT3D(cfg).train()
    x = torch.rand(2, 3, 16, 16, 16)
    mask = torch.zeros(2, 64, dtype=torch.bool)
    mask[:, ::5] = True

    def loss_and_grads() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        out = model.forward_features(x, mask)
        loss = out["cls"].pow(2).mean() + out["patch"].sin().mean()
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads()
    monkeypatch.setattr(Attention, "forward", lambda self, t, ra=False: (reference_attention(self, t), None))
    loss_ref, grads_ref = loss_and_grads()
    torch.testing.assert_close(loss, loss_ref, atol=1e-6, rtol=1e-5)
    assert set(grads) == set(grads_ref) and "blocks.1.attn.qkv.weight" in grads
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], atol=1e-5, rtol=1e-4, msg=name)


def conv_patch_embed(pe: PatchEmbed3D, x: torch.Tensor) -> torch.Tensor:
    """The patch embedding as the two ``nn.Conv3d`` modules compute it (the path before the matrix-product one)."""
    return pe.proj(pe.voxel(x) if pe.voxel is not None else x).flatten(2).transpose(1, 2)


def test_voxel_mlp_patch_embedding_matches_the_convolutions() -> None:
    """The matrix-product path gives the convolutions' tokens: to 1e-5 of the output's scale (fp32 sums of
    C*P = 512 products in another order: rounding ~ sqrt(512) * 6e-8 = 1.4e-6 relative), for a cube, an
    anisotropic patch with a size not divisible by it, and the gradients of every weight and of the input."""
    torch.manual_seed(0)
    for patch, shape in (((4, 4, 4), (2, 3, 48, 48, 48)), ((4, 2, 3), (1, 3, 10, 6, 7))):
        pe = PatchEmbed3D(patch, 3, 32, voxel_mlp=8)
        x = torch.rand(*shape, requires_grad=True)
        out, ref = pe(x), conv_patch_embed(pe, x)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, atol=1e-5 * ref.abs().max().item(), rtol=0)
        g = torch.randn_like(ref)
        grads = torch.autograd.grad((out * g).sum(), [x, *pe.parameters()])
        grads_ref = torch.autograd.grad((ref * g).sum(), [x, *pe.parameters()])
        for a, b in zip(grads, grads_ref, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5 * b.abs().max().item(), rtol=0)
    assert set(pe.state_dict()) == {"voxel.0.weight", "voxel.0.bias", "proj.weight", "proj.bias"}


def test_mae_p4_backbone_same_loss_as_the_convolutions(monkeypatch) -> None:
    """The mae-p4-cpu backbone (192/4/3, patch 4, voxel_mlp 8) on a fixed 48³ batch: the same MAE loss and
    gradients with the matrix-product patch embedding as with the convolutions, and the same embedding in
    inference mode (the ``fmct embed`` path)."""
    from fmct.ssl.mae import MAEModel

    torch.manual_seed(0)
    cfg = ViT3DConfig(img_size=48, patch_size=4, embed_dim=192, depth=4, num_heads=3, voxel_mlp=8)
    mae = MAEModel(ViT3D(cfg), {"decoder_dim": 64, "decoder_depth": 1, "decoder_heads": 4}).train()
    x = torch.rand(2, 3, 48, 48, 48)

    def loss_grads_embedding() -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        mae.zero_grad(set_to_none=True)
        loss = mae(x, torch.Generator().manual_seed(0))["loss"]  # the same masks each call
        loss.backward()
        grads = {n: p.grad.clone() for n, p in mae.named_parameters() if p.grad is not None}
        with torch.inference_mode():
            emb = mae.backbone.eval().forward_features(x)["patch"]
        mae.backbone.train()
        return loss.detach(), grads, emb

    loss, grads, emb = loss_grads_embedding()
    monkeypatch.setattr(PatchEmbed3D, "forward", conv_patch_embed)
    loss_ref, grads_ref, emb_ref = loss_grads_embedding()
    torch.testing.assert_close(loss, loss_ref, atol=0, rtol=1e-5)
    torch.testing.assert_close(emb, emb_ref, atol=1e-5 * emb_ref.abs().max().item(), rtol=0)
    assert set(grads) == set(grads_ref) and "backbone.patch_embed.voxel.0.weight" in grads
    for name in grads:
        torch.testing.assert_close(grads[name], grads_ref[name], atol=1e-4 * grads_ref[name].abs().max().item(),
                                   rtol=0, msg=name)  # fmt: skip
