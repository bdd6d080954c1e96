"""Saliency maps for a ViT3D classifier, on the model-input cube.

Three maps, all ``(S, S, S)`` on the cube the network sees, scaled to ``[0, 1]``:

* ``attention`` — attention rollout (Abnar & Zuidema 2020): head-averaged attention of every block
  mixed with the identity for the residual path (``0.5 A + 0.5 I``, rows renormalised), multiplied
  through all layers; the CLS row over the patch tokens. Class-agnostic: the same for every finding.
* ``grad_rollout`` — per finding: rollout of gradient-weighted attention (Chefer et al. 2021,
  "Generic attention-model explainability"): ``R <- R + mean_h((dlogit/dA * A)^+) R`` from ``R = I``;
  CLS row over patches.
* ``grad_x_input`` — per finding: ``|sum_c x_c * dlogit/dx_c|`` smoothed with a Gaussian of
  ``sigma = patch/2`` voxels.

Token order is the patch-embedding flatten order: patch ``(i, j, k)`` of grid ``(gx, gy, gz)`` is token
``num_prefix + (i * gy + j) * gz + k``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from fmct.device import module_device

METHODS: tuple[str, ...] = ("attention", "grad_rollout", "grad_x_input")


def attention_rollout(
    attns: Sequence[torch.Tensor], num_prefix: int, grid: tuple[int, int, int], residual: float = 0.5
) -> torch.Tensor:
    """Attention rollout, CLS -> patches.

    Args:
        attns: per block ``(B, H, T, T)`` row-stochastic attention, ``T = num_prefix + prod(grid)``.
        num_prefix: CLS + register tokens before the patches (CLS is token 0).
        grid: patch grid ``(gx, gy, gz)``.
        residual: weight of the identity (residual connection) in each layer's mixing matrix.

    Returns:
        ``(B, gx, gy, gz)`` non-negative relevance of each patch for the CLS token.
    """
    a0 = attns[0]
    b, _, t, _ = a0.shape
    eye = torch.eye(t, dtype=torch.float64, device=a0.device)
    r = eye.expand(b, t, t).clone()
    for a in attns:
        m = (1.0 - residual) * a.detach().double().mean(1) + residual * eye
        m = m / m.sum(-1, keepdim=True)
        r = m @ r
    return r[:, 0, num_prefix:].reshape(b, *grid).float()


def gradient_rollout(
    attns: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    num_prefix: int,
    grid: tuple[int, int, int],
) -> torch.Tensor:
    """Gradient-weighted attention rollout (class-specific), CLS -> patches.

    Args:
        attns / grads: per block ``(B, H, T, T)`` attention and d(logit)/d(attention).

    Returns:
        ``(B, gx, gy, gz)`` non-negative relevance of each patch for the chosen logit.
    """
    b, _, t, _ = attns[0].shape
    r = torch.eye(t, dtype=torch.float64, device=attns[0].device).expand(b, t, t).clone()
    for a, g in zip(attns, grads, strict=True):
        cam = (a.detach().double() * g.detach().double()).clamp(min=0).mean(1)
        r = r + cam @ r
    return r[:, 0, num_prefix:].reshape(b, *grid).float()


def blur_maps(v: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, X, Y, Z)`` (sigma in voxels; zero padding). Same shape back."""
    if sigma <= 0:
        return v
    radius = max(1, int(math.ceil(3 * sigma)))
    xs = torch.arange(-radius, radius + 1, dtype=v.dtype, device=v.device)
    k = torch.exp(-0.5 * (xs / sigma) ** 2)
    k = k / k.sum()
    out = v[:, None]
    for dim in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + dim] = k.numel()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - dim)] = pad[2 * (2 - dim) + 1] = radius
        out = F.conv3d(F.pad(out, pad), k.view(shape))
    return out[:, 0]


def grad_x_input(x: torch.Tensor, grad: torch.Tensor, sigma: float) -> torch.Tensor:
    """``(B, C, X, Y, Z)`` input and gradient -> ``(B, X, Y, Z)`` smoothed ``|sum_c x*grad|``."""
    return blur_maps((x.detach() * grad.detach()).sum(1).abs(), sigma)


def upsample_to_cube(patch_map: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Patch-grid map ``(B, gx, gy, gz)`` -> voxel map ``(B, *size)`` (trilinear, patch centres kept)."""
    size = (size,) * 3 if isinstance(size, int) else tuple(size)
    return F.interpolate(patch_map[:, None], size=size, mode="trilinear", align_corners=False)[:, 0]


def normalize01(v: torch.Tensor) -> torch.Tensor:
    """Scale each map of ``(B, ...)`` to ``[0, 1]`` (min -> 0, max -> 1; constant maps -> 0)."""
    flat = v.reshape(v.shape[0], -1)
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp(min=1e-12)).reshape(v.shape)


@contextmanager
def capture_attention(backbone: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """While active, every ``backbone.forward_features`` call computes explicit attention maps and
    appends them (``(B, H, T, T)`` per block, still in the autograd graph) to the yielded list."""
    store: list[torch.Tensor] = []
    original = backbone.forward_features

    def forward_features(x: torch.Tensor, *args: Any, **kwargs: Any) -> dict[str, Any]:
        kwargs["return_attention"] = True
        out = original(x, *args, **kwargs)
        store.extend(out["attn"])
        return out

    backbone.forward_features = forward_features  # instance attribute shadows the method
    try:
        yield store
    finally:
        del backbone.forward_features


def compute_saliency(
    model: torch.nn.Module,
    x: torch.Tensor,
    labels: Sequence[str],
    findings: Sequence[str] | None = None,
    methods: Sequence[str] = METHODS,
) -> dict[str, dict[str, torch.Tensor]]:
    """Saliency maps of one input for a classifier whose ``forward(x) -> logits (B, L)`` runs
    ``model.backbone`` (a :class:`fmct.models.vit3d.ViT3D`).

    Args:
        x: ``(1, C, S, S, S)`` model input.
        labels: the ``L`` output names of ``model``.
        findings: which outputs to explain (default: all).
        methods: subset of :data:`METHODS`.

    Returns:
        ``{finding: {method: (S, S, S) float32 in [0, 1]}}`` on the CPU (only ``grad_x_input`` for a non-ViT
        backbone); the class-agnostic ``attention`` map is the
        same tensor under every finding. Computed where the model is, in fp32.
    """

    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown saliency methods {unknown}; choose from {METHODS}")
    findings = list(findings or labels)
    backbone = model.backbone
    size = tuple(x.shape[-3:])
    is_vit = hasattr(backbone, "blocks") and hasattr(backbone, "num_prefix")
    if not is_vit:  # e.g. a 3D ResNet baseline: only the gradient map applies
        methods = [m for m in methods if m == "grad_x_input"]
        if not methods:
            raise ValueError("attention-based saliency needs a ViT3D backbone; use method 'grad_x_input'")
    grid = tuple(backbone.grid_size(x.shape)) if is_vit else (0, 0, 0)
    sigma = float(max(backbone.patch_size)) / 2.0 if is_vit else 2.0
    was_training = model.training
    model.eval()
    xg = x.detach().to(module_device(model)).clone().requires_grad_(True)
    try:
        with torch.enable_grad(), capture_attention(backbone) if is_vit else nullcontext([]) as attns:
            logits = model(xg)
            if is_vit and not attns:
                raise RuntimeError("the classifier did not call backbone.forward_features")
            if is_vit:
                attns = attns[-len(backbone.blocks) :]  # the last full pass if forward_features ran twice
            shared = None
            if "attention" in methods:
                shared = normalize01(
                    upsample_to_cube(attention_rollout(attns, backbone.num_prefix, grid), size)
                )[0]
            out: dict[str, dict[str, torch.Tensor]] = {}
            for f in findings:
                idx = list(labels).index(f)
                maps: dict[str, torch.Tensor] = {}
                if shared is not None:
                    maps["attention"] = shared
                if "grad_rollout" in methods or "grad_x_input" in methods:
                    wrt = [xg, *attns] if "grad_rollout" in methods else [xg]
                    grads = torch.autograd.grad(logits[0, idx], wrt, retain_graph=True)
                    if "grad_rollout" in methods:
                        pm = gradient_rollout(attns, grads[1:], backbone.num_prefix, grid)
                        maps["grad_rollout"] = normalize01(upsample_to_cube(pm, size))[0]
                    if "grad_x_input" in methods:
                        maps["grad_x_input"] = normalize01(grad_x_input(xg, grads[0], sigma))[0]
                out[f] = {m: maps[m].float().cpu() for m in methods}
    finally:
        model.train(was_training)
    return out
