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


def ibot_masks(
    n_images: int,
    grid: Sequence[int],
    ratio_range: tuple[float, float] = (0.1, 0.5),
    probability: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """iBOT masks for a batch of global views.

    ``round(n_images * probability)`` images get a block mask; their ratios are spread evenly over
    ``ratio_range`` (as DINOv2's collate does), the other images are unmasked. Which images are masked is
    shuffled.

    Returns:
        ``(n_images, prod(grid))`` bool.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    n_patches = math.prod(int(v) for v in grid)
    n_masked = int(round(n_images * probability))
    lo, hi = ratio_range
    masks = torch.zeros(n_images, n_patches, dtype=torch.bool)
    if n_masked == 0:
        return masks
    ratios = torch.linspace(lo, hi, n_masked + 1)[:-1] if n_masked > 1 else torch.tensor([(lo + hi) / 2])
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
