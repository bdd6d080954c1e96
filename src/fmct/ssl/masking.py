"""3D block masks for iBOT masked-token prediction and random masks for MAE.

A mask is ``(B, N)`` bool over the patch grid flattened in C order over (x, y, z), the same order as
:meth:`fmct.models.vit3d.ViT3D.forward_features` emits patch tokens. ``True`` = masked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def block_mask_3d(
    grid: Sequence[int],
    n_target: int,
    generator: torch.Generator,
    min_block: int = 4,
    max_aspect: float = 3.0,
    max_attempts: int = 20,
) -> torch.Tensor:
    """Union of random 3D boxes covering at most ``n_target`` patches.

    Boxes have a random volume in ``[min_block, remaining]`` and random log-uniform aspect ratios in
    ``[1/max_aspect, max_aspect]`` for two of the three axes; a box is kept only if it does not push the
    count over ``n_target`` (so the result never exceeds the target, as in BEiT / DINOv2).

    Args:
        grid: patch grid ``(gx, gy, gz)``.
        n_target: number of patches to mask.
        generator: torch RNG (CPU) that drives every random choice.

    Returns:
        ``(gx, gy, gz)`` bool tensor.
    """
    gx, gy, gz = (int(g) for g in grid)
    mask = torch.zeros(gx, gy, gz, dtype=torch.bool)
    n_target = max(0, min(int(n_target), gx * gy * gz))
    log_a = math.log(max_aspect)

    def rand() -> float:
        return float(torch.rand((), generator=generator))

    count = 0
    fails = 0
    while count < n_target and fails < max_attempts:
        remaining = n_target - count
        lo = min(min_block, remaining)
        vol = lo + rand() * (remaining - lo)
        a1 = math.exp((2 * rand() - 1) * log_a)
        a2 = math.exp((2 * rand() - 1) * log_a)
        side = (vol / (a1 * a2)) ** (1 / 3)
        dx = max(1, min(gx, round(side * a1)))
        dy = max(1, min(gy, round(side * a2)))
        dz = max(1, min(gz, round(side)))
        x0 = int(torch.randint(0, gx - dx + 1, (), generator=generator))
        y0 = int(torch.randint(0, gy - dy + 1, (), generator=generator))
        z0 = int(torch.randint(0, gz - dz + 1, (), generator=generator))
        box = mask[x0 : x0 + dx, y0 : y0 + dy, z0 : z0 + dz]
        new = int((~box).sum())
        if new == 0 or count + new > n_target:
            fails += 1
            continue
        box.fill_(True)
        count += new
        fails = 0
    return mask


def masked_ratios(
    n_masked: int, ratio_range: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """Mask ratios for ``n_masked`` images: ``ratio_range`` is cut into ``n_masked`` equal bins and the
    i-th image's ratio is drawn uniformly inside the i-th bin (dinov2's collate), so the ratios cover the
    range evenly and their expected mean is the range's midpoint.

    Returns:
        ``(n_masked,)`` float ratios in ``[lo, hi]``.
    """
    lo, hi = (float(v) for v in ratio_range)
    edges = torch.linspace(lo, hi, n_masked + 1)
    u = torch.rand(n_masked, generator=generator)
    return edges[:-1] + u * (edges[1:] - edges[:-1])


def check_mask_params(ratio_range: Sequence[float], probability: float) -> None:
    """Raise ``ValueError`` unless ``0 <= lo <= hi <= 1`` and ``0 <= probability <= 1``."""
    if len(ratio_range) != 2:
        raise ValueError(f"mask_ratio must be [lo, hi], got {list(ratio_range)!r}")
    lo, hi = (float(v) for v in ratio_range)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"mask_ratio must be [lo, hi] with 0 <= lo <= hi <= 1, got {list(ratio_range)!r}")
    if not 0.0 <= float(probability) <= 1.0:
        raise ValueError(f"mask_probability must be between 0 and 1, got {probability!r}")


def ibot_masks(
    n_images: int,
    grid: Sequence[int],
    ratio_range: tuple[float, float] = (0.1, 0.5),
    probability: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """iBOT masks for a batch of global views.

    ``round(n_images * probability)`` images get a block mask, with ratios from :func:`masked_ratios`; the
    other images are unmasked. Which images are masked is shuffled.

    Returns:
        ``(n_images, prod(grid))`` bool.
    """
    check_mask_params(ratio_range, probability)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    n_patches = math.prod(int(v) for v in grid)
    n_masked = int(round(n_images * probability))
    masks = torch.zeros(n_images, n_patches, dtype=torch.bool)
    if n_masked == 0:
        return masks
    ratios = masked_ratios(n_masked, ratio_range, g)
    order = torch.randperm(n_images, generator=g)[:n_masked]
    for r, i in zip(ratios.tolist(), order.tolist(), strict=True):
        masks[i] = block_mask_3d(grid, int(n_patches * r), g).reshape(-1)
    return masks


def random_masking(
    batch: int, n_patches: int, ratio: float, generator: torch.Generator | None = None, device=None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE random masking: keep ``n_keep = round(N * (1 - ratio))`` random patches per sample.

    Returns:
        keep: ``(B, n_keep)`` long indices of visible patches (sorted ascending).
        mask: ``(B, N)`` bool, True = masked (to reconstruct).
        restore: ``(B, N)`` long permutation such that ``cat([kept, masked])[restore]`` is grid order.
    """
    n_keep = max(1, int(round(n_patches * (1.0 - ratio))))
    noise = torch.rand(batch, n_patches, generator=generator)
    if device is not None:
        noise = noise.to(device)
    shuffle = noise.argsort(dim=1)
    keep, _ = shuffle[:, :n_keep].sort(dim=1)
    masked, _ = shuffle[:, n_keep:].sort(dim=1)
    order = torch.cat([keep, masked], dim=1)
    restore = order.argsort(dim=1)
    mask = torch.ones(batch, n_patches, dtype=torch.bool, device=noise.device)
    mask.scatter_(1, keep, False)
    return keep, mask, restore
