"""Scores of saliency maps against a ground-truth finding mask (demo report, experiments/saliency_score.py).

* pointing game (Zhang et al. 2016) — a hit when the map's maximum lies within ``tol_mm`` of the mask;
* mass share — the fraction of the map's total mass that falls inside the mask (``1`` = all of it).

Chance levels come from a map that is uniform over the head: its maximum is anywhere in the head with equal
probability (expected hit rate = the share of head voxels within ``tol_mm`` of the mask), and its mass share
is the mask's share of the head. A method is worth reading only where it beats them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from fmct.infer.resample import resample_to_grid
from fmct.infer.saliency import blur_maps, normalize01

#: Pointing-game tolerance (mm): a hit when the map's maximum is at most this far from the mask.
POINTING_TOL_MM = 10.0


def mask_on_cube(
    mask: np.ndarray, mask_affine: np.ndarray, grid_affine: np.ndarray, size: int | Sequence[int]
) -> np.ndarray:
    """Fractional occupancy ``(S, S, S)`` in ``[0, 1]`` of a binary mask ``(X, Y, Z)`` (voxel -> RAS
    ``mask_affine``) on the model cube (cube voxel -> RAS ``grid_affine``); trilinear, so small findings
    keep partial weight instead of vanishing."""
    shape = (size,) * 3 if isinstance(size, int) else tuple(size)
    return np.clip(resample_to_grid(mask.astype(np.float32), mask_affine, grid_affine, shape), 0, 1)


def mass_share(saliency: np.ndarray | torch.Tensor, occupancy: np.ndarray) -> float:
    """``sum(map * mask) / sum(map)`` for a non-negative map and a (fractional) mask on the same grid."""
    s = np.asarray(saliency, dtype=np.float64)
    total = s.sum()
    return float((s * np.asarray(occupancy, dtype=np.float64)).sum() / total) if total > 0 else float("nan")


class MaskDistance:
    """Distance (mm) from RAS points to a finding mask: 0 in a mask voxel, else to the nearest mask voxel
    centre.

    A k-d tree over the mask's voxel centres in world mm (any affine, sheared ones included): querying the
    ~10^5 voxels of a model cube takes milliseconds, where a distance transform of a 512² source grid took
    seconds per finding.
    """

    def __init__(self, mask: np.ndarray, mask_affine: np.ndarray):
        from scipy.spatial import cKDTree

        self.mask = np.asarray(mask, bool)
        if not self.mask.any():
            raise ValueError("the finding mask is empty")
        self.affine = np.asarray(mask_affine, np.float64)
        idx = np.argwhere(self.mask).astype(np.float64)
        self.tree = cKDTree(idx @ self.affine[:3, :3].T + self.affine[:3, 3])

    def __call__(self, world_mm: np.ndarray, upper_mm: float = np.inf) -> np.ndarray:
        """``(N,)`` distances of ``world_mm (N, 3)``; ``inf`` beyond ``upper_mm`` (a faster query)."""
        pts = np.asarray(world_mm, np.float64).reshape(-1, 3)
        dist, _ = self.tree.query(pts, distance_upper_bound=upper_mm)
        vox = np.rint((pts - self.affine[:3, 3]) @ np.linalg.inv(self.affine[:3, :3]).T).astype(int)
        inside = np.all((vox >= 0) & (vox < np.asarray(self.mask.shape)), axis=1)
        inside[inside] = self.mask[tuple(vox[inside].T)]
        return np.where(inside, 0.0, dist)


def peak_world(cube_map: np.ndarray | torch.Tensor, grid_affine: np.ndarray) -> np.ndarray:
    """RAS mm ``(3,)`` of the maximum of a cube map."""
    m = np.asarray(cube_map)
    idx = np.array(np.unravel_index(int(np.argmax(m)), m.shape), dtype=np.float64)
    return np.asarray(grid_affine, np.float64)[:3] @ np.array([*idx, 1.0])


def pointing_hit(
    saliency: np.ndarray | torch.Tensor,
    grid_affine: np.ndarray,
    distance: MaskDistance,
    tol_mm: float = POINTING_TOL_MM,
) -> bool:
    """Whether the maximum of a cube map (cube voxel -> RAS ``grid_affine``) lies within ``tol_mm`` of the
    mask."""
    return bool(distance(peak_world(saliency, grid_affine)[None])[0] <= tol_mm)


def score_maps(
    maps: Mapping[str, np.ndarray | torch.Tensor],
    grid_affine: np.ndarray,
    mask: np.ndarray,
    mask_affine: np.ndarray,
    head: np.ndarray,
    tol_mm: float = POINTING_TOL_MM,
) -> dict[str, Any]:
    """Score every map of one (scan, finding) against the finding's mask, with the chance levels.

    Args:
        maps: ``{method: (S, S, S)}`` non-negative maps on the model cube (cube voxel -> RAS ``grid_affine``).
        mask: ``(X, Y, Z)`` bool finding mask on its own grid (voxel -> RAS ``mask_affine``), not empty.
        head: ``(S, S, S)`` bool, the head on the cube (where a uniform "chance" map lives).

    Returns:
        ``{"methods": {method: {"hit", "peak_to_mask_mm", "mass_share"}}, "chance": {"hit_rate",
        "mass_share"}}`` (distances as :class:`MaskDistance` measures them).
    """
    distance = MaskDistance(mask, mask_affine)
    shape = np.asarray(next(iter(maps.values()))).shape
    occ = mask_on_cube(mask, mask_affine, grid_affine, shape)
    out: dict[str, Any] = {"methods": {}}
    for method, m in maps.items():
        d = float(distance(peak_world(m, grid_affine)[None])[0])
        out["methods"][method] = {
            "hit": bool(d <= tol_mm),
            "peak_to_mask_mm": round(d, 1),
            "mass_share": mass_share(m, occ),
        }
    head = np.asarray(head, bool)
    idx = np.argwhere(head).astype(np.float64)
    world = np.c_[idx, np.ones(len(idx))] @ np.asarray(grid_affine, np.float64)[:3].T
    out["chance"] = {
        "hit_rate": float(np.mean(distance(world, tol_mm + 1e-6) <= tol_mm)) if len(idx) else 0.0,
        "mass_share": mass_share(head.astype(np.float64), occ),
    }
    return out


def wilson_ci(hits: int, n: int) -> list[float]:
    """95 % Wilson score interval of a hit rate ``hits / n``."""
    from scipy.stats import binomtest

    ci = binomtest(int(hits), int(n)).proportion_ci(confidence_level=0.95, method="wilson")
    return [float(ci.low), float(ci.high)]


def summarise_scores(scores: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per method over cases: pointing-game hits, hit rate with its 95 % Wilson CI and mean mass share; and
    the chance levels averaged over the same cases.

    Args:
        scores: :func:`score_maps` outputs, one per (scan, finding).

    Returns:
        ``{"cases": n, "methods": [{"method", "cases", "hits", "hit_rate", "ci", "mass_share"}],
        "chance": {"hit_rate", "mass_share"}}`` (methods in first-seen order).
    """
    methods = list(dict.fromkeys(m for s in scores for m in s["methods"]))
    rows = []
    for method in methods:
        per = [s["methods"][method] for s in scores if method in s["methods"]]
        hits = sum(bool(p["hit"]) for p in per)
        shares = [
            p["mass_share"] for p in per if p["mass_share"] is not None and np.isfinite(p["mass_share"])
        ]
        rows.append(
            {
                "method": method,
                "cases": len(per),
                "hits": hits,
                "hit_rate": hits / len(per),
                "ci": wilson_ci(hits, len(per)),
                "mass_share": float(np.mean(shares)) if shares else None,
            }
        )
    chance = {
        k: float(np.mean([s["chance"][k] for s in scores])) if scores else None
        for k in ("hit_rate", "mass_share")
    }
    return {"cases": len(scores), "methods": rows, "chance": chance}


def random_map(size: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """A smooth random ``(S, S, S)`` map in ``[0, 1]`` (Gaussian-blurred uniform noise), the chance peer."""
    noise = torch.rand(1, size, size, size, generator=generator)
    return normalize01(blur_maps(noise, sigma))[0]
