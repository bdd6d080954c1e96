"""Scores of a saliency map against a ground-truth finding mask (used by experiments/saliency_score.py).

* mass share — the fraction of the map's total mass that falls inside the mask (``1`` = all of it);
  a uniform map scores the mask's volume fraction.
* pointing game (Zhang et al. 2016) — a hit when the map's maximum lies within ``tol_mm`` of the mask.
"""

from __future__ import annotations

import numpy as np
import torch

from fmct.infer.resample import resample_to_grid
from fmct.infer.saliency import blur_maps, normalize01


def mask_on_cube(mask: np.ndarray, mask_affine: np.ndarray, grid_affine: np.ndarray, size: int) -> np.ndarray:
    """Fractional occupancy ``(S, S, S)`` in ``[0, 1]`` of a binary mask ``(X, Y, Z)`` (voxel -> RAS
    ``mask_affine``) on the model cube (cube voxel -> RAS ``grid_affine``); trilinear, so small findings
    keep partial weight instead of vanishing."""
    return np.clip(resample_to_grid(mask.astype(np.float32), mask_affine, grid_affine, (size,) * 3), 0, 1)


def mass_share(saliency: np.ndarray | torch.Tensor, occupancy: np.ndarray) -> float:
    """``sum(map * mask) / sum(map)`` for a non-negative map and a (fractional) mask on the same grid."""
    s = np.asarray(saliency, dtype=np.float64)
    total = s.sum()
    return float((s * np.asarray(occupancy, dtype=np.float64)).sum() / total) if total > 0 else float("nan")


def distance_to_mask_mm(mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Euclidean distance (mm) of every voxel to the nearest mask voxel (0 inside)."""
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~mask.astype(bool), sampling=spacing).astype(np.float32)


def pointing_hit(
    saliency: np.ndarray | torch.Tensor,
    grid_affine: np.ndarray,
    dist_mm: np.ndarray,
    mask_affine: np.ndarray,
    tol_mm: float = 10.0,
) -> bool:
    """Whether the maximum of a cube map lands within ``tol_mm`` of the mask.

    ``dist_mm`` is :func:`distance_to_mask_mm` on the mask grid (``mask_affine``); a peak outside that
    grid is a miss.
    """
    s = np.asarray(saliency)
    idx = np.array(np.unravel_index(int(np.argmax(s)), s.shape), dtype=np.float64)
    world = grid_affine @ np.array([*idx, 1.0])
    vox = np.rint(np.linalg.inv(mask_affine) @ world)[:3].astype(int)
    if np.any(vox < 0) or np.any(vox >= np.asarray(dist_mm.shape)):
        return False
    return bool(dist_mm[tuple(vox)] <= tol_mm)


def random_map(size: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """A smooth random ``(S, S, S)`` map in ``[0, 1]`` (Gaussian-blurred uniform noise), the chance peer."""
    noise = torch.rand(1, size, size, size, generator=generator)
    return normalize01(blur_maps(noise, sigma))[0]
