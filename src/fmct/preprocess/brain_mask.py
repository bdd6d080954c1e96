"""Where the brain is in a model-input cube, per voxel and per ViT patch.

The cranial cavity of a non-contrast head CT is the largest connected body of soft tissue (CSF, brain,
blood: about -5 to 110 HU) once a one-voxel erosion has cut the thin bridges to the scalp through
foramina and skull gaps. This is crude next to a skull-stripping network, but it needs no model, takes
10-20 ms per 48³ or 96³ cube (measured on 2 busy cores) and is all the brain readouts (``brain_max``,
``brain_stats``) need: they only have to keep scalp, face, skull and air out of the pooled patch tokens
(docs/results.md "Does pretraining learn?": pooling over every patch lets head pose and shape dominate the
embedding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: Soft-tissue HU range of the cavity: CSF (~0-15), brain (20-45), acute blood (50-90), calcified rims below.
SOFT_TISSUE_HU = (-5.0, 110.0)

#: A patch counts as intracranial when at least this fraction of its voxels is in the cavity mask.
INSIDE_FRACTION = 0.9


def intracranial_mask(hu: np.ndarray, soft_hu: Sequence[float] = SOFT_TISSUE_HU) -> np.ndarray:
    """Boolean ``(X, Y, Z)`` mask of the cranial cavity of an HU volume ``(X, Y, Z)``.

    All False when the volume holds no soft tissue at all.
    """
    from scipy import ndimage as ndi

    v = np.asarray(hu)
    soft = ndi.binary_erosion((v > soft_hu[0]) & (v < soft_hu[1]), iterations=1)
    lab, n = ndi.label(soft)
    if n == 0:
        return np.zeros(v.shape, dtype=bool)
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def patch_fractions(mask: np.ndarray, grid: Sequence[int]) -> np.ndarray:
    """Fraction of each patch's voxels inside ``mask`` ``(X, Y, Z)``, for a ViT patch grid ``(gx, gy, gz)``.

    Returns ``(gx * gy * gz,)`` float32 in the ViT's token order (z fastest, as ``Conv3d(...).flatten(2)``).
    Voxels beyond the last whole patch (a size not divisible by the grid) are ignored, as the patch
    embedding ignores them.
    """
    gx, gy, gz = (int(g) for g in grid)
    px, py, pz = (s // g for s, g in zip(mask.shape, (gx, gy, gz), strict=True))
    m = np.asarray(mask, dtype=np.float32)[: gx * px, : gy * py, : gz * pz]
    return m.reshape(gx, px, gy, py, gz, pz).mean(axis=(1, 3, 5)).reshape(-1)


def inside_patches(fractions: np.ndarray, inside: float = INSIDE_FRACTION) -> np.ndarray:
    """Boolean ``(B, N)``: the patches a brain readout uses, from their ``(B, N)`` intracranial fractions.

    A patch is used when its fraction is at least ``inside``; a scan with no such patch (a tiny or
    badly cropped head) uses its most intracranial patches instead, so every scan gets a feature.
    """
    f = np.asarray(fractions, dtype=np.float32)
    return f >= np.minimum(inside, f.max(axis=1, keepdims=True))


def _tokens_and_fractions(patch_tokens: np.ndarray, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(B, N, D)`` tokens and ``(B, N)`` fractions; ``ValueError`` when the shapes do not fit."""
    t = np.asarray(patch_tokens, dtype=np.float32)
    f = np.asarray(fractions, dtype=np.float32)
    if t.ndim != 3 or f.shape != t.shape[:2]:
        raise ValueError(f"expected tokens (B, N, D) and fractions (B, N), got {t.shape} and {f.shape}")
    return t, f


def brain_max_pool(
    patch_tokens: np.ndarray, fractions: np.ndarray, inside: float = INSIDE_FRACTION
) -> np.ndarray:
    """Max over the intracranial patch tokens: ``(B, N, D)`` tokens, ``(B, N)`` fractions -> ``(B, D)``
    (the patches of :func:`inside_patches`)."""
    t, f = _tokens_and_fractions(patch_tokens, fractions)
    return np.where(inside_patches(f, inside)[..., None], t, -np.inf).max(axis=1)


def brain_stats_pool(
    patch_tokens: np.ndarray, fractions: np.ndarray, inside: float = INSIDE_FRACTION
) -> np.ndarray:
    """Mean, standard deviation (population, ddof=0) and max over the intracranial patch tokens (the
    patches of :func:`inside_patches`, as :func:`brain_max_pool`), concatenated: ``(B, N, D)`` tokens,
    ``(B, N)`` fractions -> float32 ``(B, 3D)`` = ``[mean | std | max]``."""
    t, f = _tokens_and_fractions(patch_tokens, fractions)
    use = inside_patches(f, inside)[..., None]  # (B, N, 1), at least one patch per scan
    n = use.sum(axis=1)
    mean = np.where(use, t, 0.0).sum(axis=1, dtype=np.float64) / n
    var = np.where(use, (t - mean[:, None]) ** 2, 0.0).sum(axis=1) / n
    return np.concatenate([mean, np.sqrt(var), brain_max_pool(t, f, inside)], axis=1).astype(np.float32)


def soft_tissue_window(windows: Sequence[Sequence[float]]) -> tuple[int, float, float]:
    """``(channel, lowest HU, width HU)`` of the widest window, the one :func:`hu_from_channels` inverts.

    Raises ``ValueError`` when it does not span :data:`SOFT_TISSUE_HU`, since the cavity could not be
    found from such inputs.
    """
    ws = [(float(lv), float(w)) for lv, w in windows]
    c = max(range(len(ws)), key=lambda i: ws[i][1])
    level, width = ws[c]
    lo, hi = level - width / 2.0, level + width / 2.0
    if not (lo < SOFT_TISSUE_HU[0] and hi > SOFT_TISSUE_HU[1]):
        raise ValueError(
            f"the brain readout needs a window spanning {SOFT_TISSUE_HU[0]:g} to {SOFT_TISSUE_HU[1]:g} HU; "
            f"the widest of these windows is ({level:g}, {width:g}), i.e. {lo:g} to {hi:g} HU"
        )
    return c, lo, width


def hu_from_channels(x: torch.Tensor, windows: Sequence[Sequence[float]]) -> torch.Tensor:
    """HU ``(B, X, Y, Z)`` of the soft-tissue range, read back from windowed model inputs ``(B, C, X, Y, Z)``.

    Inverts the widest window (:func:`soft_tissue_window`; ``fmct.preprocess.windows``: channel =
    (HU - level + width/2) / width, clipped to [0, 1]); exact, up to float32 rounding (< 0.001 HU for the
    default 2800 HU bone window), wherever that window is not clipped.
    """
    if x.ndim != 5 or x.shape[1] != len(windows):
        raise ValueError(
            f"expected inputs (B, {len(windows)}, X, Y, Z) for {len(windows)} windows, got {tuple(x.shape)}"
        )
    c, lo, width = soft_tissue_window(windows)
    return x[:, c].detach().float() * width + lo


def input_patch_fractions(
    x: torch.Tensor, windows: Sequence[Sequence[float]], grid: Sequence[int]
) -> torch.Tensor:
    """Intracranial fraction ``(B, N)`` of each ViT patch of model inputs ``x (B, C, X, Y, Z)``.

    The same cavity mask as ``fmct embed``'s ``brain_max`` (:func:`intracranial_mask` on the HU cube),
    found from the windowed channels (:func:`hu_from_channels`); not differentiable (a fixed selection).
    """
    hu = hu_from_channels(x, windows).cpu().numpy()
    fr = np.stack([patch_fractions(intracranial_mask(v), grid) for v in hu])
    return torch.from_numpy(fr).to(x.device)


def _inside_tokens(patch_tokens: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B, N, 1)`` on the tokens' device: the patches of :func:`inside_patches` (fixed, no grad)."""
    use = torch.from_numpy(inside_patches(fractions.detach().cpu().numpy()))
    return use.to(patch_tokens.device)[..., None]


def brain_max_tokens(patch_tokens: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Differentiable torch twin of :func:`brain_max_pool`: ``(B, N, D)``, ``(B, N)`` -> ``(B, D)``."""
    use = _inside_tokens(patch_tokens, fractions)
    return patch_tokens.masked_fill(~use, float("-inf")).amax(dim=1)


def brain_stats_tokens(patch_tokens: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Differentiable torch twin of :func:`brain_stats_pool`: ``(B, N, D)``, ``(B, N)`` -> ``(B, 3D)``
    ``[mean | std | max]``, computed in float32 and returned in the tokens' dtype. Where the std is 0 (one
    patch used) its gradient is 0, not NaN."""
    t = patch_tokens.float()
    use = _inside_tokens(t, fractions)
    w = use.float()
    n = w.sum(dim=1)
    mean = (t * w).sum(dim=1) / n
    var = ((t - mean[:, None]) ** 2 * w).sum(dim=1) / n
    positive = var > 0
    std = torch.where(positive, torch.sqrt(torch.where(positive, var, torch.ones_like(var))), 0.0)
    top = t.masked_fill(~use, float("-inf")).amax(dim=1)
    return torch.cat([mean, std, top], dim=-1).to(patch_tokens.dtype)
