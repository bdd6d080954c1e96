"""Where the brain is in a model-input cube, per voxel and per ViT patch.

The cranial cavity of a non-contrast head CT is the largest connected body of soft tissue (CSF, brain,
blood: about -5 to 110 HU) once a one-voxel erosion has cut the thin bridges to the scalp through
foramina and skull gaps. This is crude next to a skull-stripping network, but it needs no model, takes
10-20 ms per 48³ or 96³ cube (measured on 2 busy cores) and is all the ``brain_max`` readout needs: it only
has to keep scalp, face, skull and air out of the pooled patch tokens (README "Does pretraining learn?":
pooling over every patch lets head pose and shape dominate the embedding).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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


def brain_max_pool(
    patch_tokens: np.ndarray, fractions: np.ndarray, inside: float = INSIDE_FRACTION
) -> np.ndarray:
    """Max over the intracranial patch tokens: ``(B, N, D)`` tokens, ``(B, N)`` fractions -> ``(B, D)``.

    A patch is used when its fraction is at least ``inside``; a scan with no such patch (a tiny or
    badly cropped head) uses its most intracranial patches instead, so every scan gets a feature.
    """
    t = np.asarray(patch_tokens, dtype=np.float32)
    f = np.asarray(fractions, dtype=np.float32)
    if t.ndim != 3 or f.shape != t.shape[:2]:
        raise ValueError(f"expected tokens (B, N, D) and fractions (B, N), got {t.shape} and {f.shape}")
    thr = np.minimum(inside, f.max(axis=1, keepdims=True))
    use = f >= thr
    return np.where(use[..., None], t, -np.inf).max(axis=1)
