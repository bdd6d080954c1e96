"""Masked autoencoder (MAE) on 3D patches: ViT3D encoder on the visible 25 %, light decoder, pixel loss.

Batch: ``global`` ``(B, C, X, Y, Z)`` (one view per scan). Targets are the patches of the input, flattened
as ``(B, N, p_x * p_y * p_z * C)``; the loss is the MSE on masked patches, per-patch normalised
(mean/var of each target patch) when ``norm_pix_loss``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fmct.models.layers import Block
from fmct.models.pos_embed import resize_pos_embed, sincos_3d
from fmct.models.vit3d import ViT3D
from fmct.preprocess.brain_mask import SOFT_TISSUE_HU, hu_from_channels
from fmct.ssl.masking import random_masking

MAE_DEFAULTS: dict[str, Any] = {
    "mask_ratio": 0.75,
    "decoder_dim": 128,
    "decoder_depth": 2,
    "decoder_heads": 4,
    "norm_pix_loss": True,
    "loss_patches": "all",  # all | soft_tissue (masked patches >= 90 % soft tissue: the brain, not skull/air)
}

#: Values of ``mae.loss_patches``.
LOSS_PATCHES = ("all", "soft_tissue")
#: A patch counts as soft tissue when at least this fraction of its voxels lies in ``SOFT_TISSUE_HU``.
SOFT_PATCH_FRACTION = 0.9


def patchify(x: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """``(B, C, X, Y, Z) -> (B, N, px*py*pz*C)``, patches in C order over the (x, y, z) grid."""
    b, c, X, Y, Z = x.shape
    px, py, pz = patch
    t = x.reshape(b, c, X // px, px, Y // py, py, Z // pz, pz)
    t = t.permute(0, 2, 4, 6, 3, 5, 7, 1)
    return t.reshape(b, (X // px) * (Y // py) * (Z // pz), px * py * pz * c)


def soft_tissue_patches(
    x: torch.Tensor, windows: Sequence[Sequence[float]], patch: tuple[int, int, int]
) -> torch.Tensor:
    """``(B, N)`` float 0/1: patches of model inputs ``x (B, C, X, Y, Z)`` whose voxels are at least
    :data:`SOFT_PATCH_FRACTION` soft tissue (:data:`fmct.preprocess.brain_mask.SOFT_TISSUE_HU`, CSF to acute
    blood), read back from the widest window. With 8³ patches of ~4 mm voxels these are the patches inside
    the cranial cavity (plus thick soft tissue such as the neck): skull, air and the head's edge are out.
    A fast, torch-only stand-in for the connected-component cavity of ``brain_max`` (20 ms per cube there)."""

    hu = hu_from_channels(x, windows)
    soft = ((hu > SOFT_TISSUE_HU[0]) & (hu < SOFT_TISSUE_HU[1])).float()[:, None]
    frac = torch.nn.functional.avg_pool3d(soft, kernel_size=patch, stride=patch).flatten(1)
    return (frac >= SOFT_PATCH_FRACTION).float()


def init_mae_layer(m: nn.Module) -> None:
    """MAE's initialisation (He et al. 2022, official code): Linear weights Xavier-uniform with zero bias,
    LayerNorm weight 1 and bias 0. Applied to the decoder; the encoder keeps :class:`ViT3D`'s own
    initialisation, shared with DINO (docs/ssl-recipe.md)."""
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class MAEModel(nn.Module):
    """Encoder (:class:`ViT3D`, visible tokens only) + transformer decoder predicting all patches."""

    def __init__(self, backbone: ViT3D, cfg: dict[str, Any]) -> None:
        super().__init__()
        c = {**MAE_DEFAULTS, **cfg}
        if c["loss_patches"] not in LOSS_PATCHES:
            raise ValueError(
                f"mae.loss_patches must be one of {list(LOSS_PATCHES)}, got {c['loss_patches']!r}"
            )
        self.cfg = c
        self.backbone = backbone
        backbone.mask_token.requires_grad_(False)  # MAE drops masked tokens instead (keeps DDP happy)
        dd = int(c["decoder_dim"])
        self.decoder_embed = nn.Linear(backbone.embed_dim, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.register_buffer("dec_pos", sincos_3d(dd, backbone.base_grid)[None], persistent=False)
        self.decoder_blocks = nn.ModuleList(
            Block(dd, int(c["decoder_heads"])) for _ in range(c["decoder_depth"])
        )
        self.decoder_norm = nn.LayerNorm(dd, eps=1e-6)
        cin = backbone.config.in_chans
        self.decoder_pred = nn.Linear(dd, int(torch.tensor(backbone.patch_size).prod()) * cin)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            m.apply(init_mae_layer)

    def forward(
        self,
        x: torch.Tensor,
        noise_gen: torch.Generator | None = None,
        patch_weights: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``x (B, C, X, Y, Z)`` -> ``{"loss", "pred" (B, N, P), "mask" (B, N), "cls" (B, D)}``.

        ``patch_weights (B, N)``: the loss is the weighted mean over masked patches (default: every masked
        patch weighs 1)."""
        bb = self.backbone
        grid = bb.grid_size(x.shape)
        n = grid[0] * grid[1] * grid[2]
        keep, mask, restore = random_masking(
            x.shape[0], n, float(self.cfg["mask_ratio"]), noise_gen, x.device
        )
        enc = bb.forward_features(x, keep_indices=keep)
        t = self.decoder_embed(enc["patch"])  # (B, n_keep, dd)
        b, k, dd = t.shape
        t = torch.cat([t, self.mask_token.to(t.dtype).expand(b, n - k, dd)], dim=1)
        t = torch.gather(t, 1, restore[..., None].expand(-1, -1, dd))
        t = t + resize_pos_embed(self.dec_pos, bb.base_grid, grid).to(t.dtype)
        t = torch.cat([self.decoder_embed(enc["cls"])[:, None], t], dim=1)
        for blk in self.decoder_blocks:
            t, _ = blk(t)
        pred = self.decoder_pred(self.decoder_norm(t))[:, 1:]
        target = patchify(x, bb.patch_size)
        if self.cfg["norm_pix_loss"]:
            mu = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mu) / (var + 1e-6).sqrt()
        per_patch = ((pred.float() - target.float()) ** 2).mean(dim=-1)
        w = mask.float() if patch_weights is None else mask.float() * patch_weights.to(per_patch)
        loss = (per_patch * w).sum() / w.sum().clamp_min(1)
        # copies, not views: FSDP2 hooks backward on the outputs, which a view can lose (see StudentNet)
        return {"loss": loss, "pred": pred.clone(), "mask": mask, "cls": enc["cls"].clone()}


class MAEMetaArch(nn.Module):
    """Same interface as :class:`fmct.ssl.meta_arch.DINOMetaArch` for the training loop."""

    method = "mae"

    def __init__(self, backbone: ViT3D, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.student = MAEModel(backbone, cfg)
        self.set_student_forward(self.student)

    def set_student_forward(self, module: nn.Module) -> None:
        """Use ``module`` (e.g. a DDP wrapper of ``self.student``) for the forward pass (not registered)."""
        object.__setattr__(self, "student_forward", module)

    def last_layer_names(self) -> set[str]:
        return set()

    def export_backbone(self) -> ViT3D:
        return self.student.backbone

    def compute_loss(
        self, batch: dict[str, Any], values: dict[str, Any], gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        x = batch["global"]
        weights = None
        if self.student.cfg["loss_patches"] == "soft_tissue":
            if not batch.get("windows"):
                raise ValueError("mae.loss_patches=soft_tissue needs the batch's windows (batch['windows'])")
            weights = soft_tissue_patches(x, batch["windows"], self.student.backbone.patch_size)
        out = self.student_forward(x, gen, weights)
        return out["loss"], {"mae": out["loss"].detach()}, {"teacher_cls": out["cls"].detach().float()}

    def update_teacher(self, momentum: float) -> None:
        """No teacher in MAE."""
