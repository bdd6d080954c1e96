"""Slice-stack geometry: orientation checks, sorting, spacing regularity, resampling, voxel->RAS affine.

Conventions: DICOM positions/orientations are LPS mm. A frame's array is ``(rows, cols)``; the volume is
``(X, Y, Z) = (column index, row index, slice index)`` so ``X`` runs along the row cosine (spacing
``PixelSpacing[1]``), ``Y`` along the column cosine (spacing ``PixelSpacing[0]``) and ``Z`` along the
stacking vector between consecutive slice positions (which differs from the image-plane normal under
gantry tilt: the affine is then sheared, a valid voxel->world map).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fmct.io.errors import InvalidScan, SkipScan

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def plane_axes(orientation: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(row cosine, column cosine, normal = row x col)``, unit vectors (LPS); InvalidScan if degenerate."""
    row, col = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    nr, nc = np.linalg.norm(row), np.linalg.norm(col)
    if not (0.5 < nr < 1.5 and 0.5 < nc < 1.5):
        raise InvalidScan("ImageOrientationPatient vectors are not unit vectors")
    row, col = row / nr, col / nc
    if abs(float(row @ col)) > 0.01:
        raise InvalidScan("ImageOrientationPatient row and column vectors are not orthogonal")
    normal = np.cross(row, col)
    return row, col, normal / np.linalg.norm(normal)


def check_axial(normal: np.ndarray) -> None:
    """SkipScan unless the image plane is axial-ish (normal closest to the S-I axis; tilted axial is fine)."""
    axis = int(np.argmax(np.abs(normal)))
    if axis == 0:
        raise SkipScan("sagittal images (slice normal along left-right), not an axial CT series")
    if axis == 1:
        raise SkipScan("coronal images (slice normal along anterior-posterior), not an axial CT series")


@dataclass
class StackPlan:
    """How to turn the sorted, de-duplicated slices into a regular grid.

    ``targets`` is ``None`` for an already regular stack, else the ``(M,)`` distances (mm, along the
    stacking line from the first slice) at which to interpolate new slices.
    """

    step: float
    targets: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)


def duplicate_groups(dist: np.ndarray, tol: float = 0.01) -> list[list[int]]:
    """Runs of consecutive indices of the sorted ``dist`` (mm) closer than ``tol`` mm."""
    groups, current = [], [0]
    for i in range(1, len(dist)):
        if dist[i] - dist[i - 1] < tol:
            current.append(i)
        else:
            groups.append(current)
            current = [i]
    groups.append(current)
    return groups


def stacking_line(positions: np.ndarray, normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit stacking direction ``u`` (LPS) and each slice's distance (mm) from the first along it.

    ``positions`` ``(N, 3)`` are sorted and distinct. InvalidScan if they are not on one line
    (e.g. two stacks in one series) or the stack runs (nearly) within the image plane.
    """
    span = positions[-1] - positions[0]
    length = float(np.linalg.norm(span))
    if length <= 0:
        raise InvalidScan("all slices at the same position")
    u = span / length
    if float(u @ normal) < math.cos(math.radians(60)):
        raise InvalidScan("slice positions run within the image plane (tilt > 60 degrees)")
    rel = positions - positions[0]
    dist = rel @ u
    off_line = np.linalg.norm(rel - dist[:, None] * u[None, :], axis=1)
    gaps = np.diff(dist)
    tol = max(0.1, 0.1 * float(np.median(gaps)))
    if float(off_line.max()) > tol:
        raise InvalidScan(
            f"slice positions are not on one line (off by up to {off_line.max():.2f} mm; several stacks?)"
        )
    return u, dist


def plan_stack(dist: np.ndarray, gap_tolerance: float = 0.1, max_missing: int = 2) -> StackPlan:
    """Decide how to regularise slices at sorted distinct distances ``dist`` ``(N,)`` mm.

    Regular if no slice is more than ``gap_tolerance`` x median gap away from the uniform grid between the
    first and last slice. Otherwise resample onto a uniform grid of about the median gap by linear
    interpolation (warning recorded), unless more than ``max_missing`` slices are missing in total
    (a gap of ``k`` x median counts ``k - 1``), which raises InvalidScan.
    """
    n = len(dist)
    gaps = np.diff(dist)
    median = float(np.median(gaps))
    if not median > 0:
        raise InvalidScan("zero slice spacing")
    step = float(dist[-1] - dist[0]) / (n - 1)
    uniform = dist[0] + step * np.arange(n)
    if float(np.abs(dist - uniform).max()) <= gap_tolerance * median:
        return StackPlan(step=step)
    missing_per_gap = np.maximum(np.rint(gaps / median).astype(np.int64) - 1, 0)
    missing = int(missing_per_gap.sum())
    if missing > max_missing:
        raise InvalidScan(
            f"{missing} slices missing (largest gap {gaps.max():.2f} mm, median spacing {median:.2f} mm)"
        )
    m = int(round(float(dist[-1] - dist[0]) / median)) + 1
    targets = np.linspace(float(dist[0]), float(dist[-1]), m)
    new_step = float(targets[1] - targets[0])
    if missing:
        msg = (
            f"filled {missing} missing slice(s) by linear interpolation "
            f"(gap {gaps.max():.2f} mm, median spacing {median:.2f} mm)"
        )
    else:
        msg = (
            f"uneven slice spacing (gaps {gaps.min():.3f}-{gaps.max():.3f} mm) resampled to a regular "
            f"{new_step:.3f} mm grid by linear interpolation"
        )
    return StackPlan(step=new_step, targets=targets, warnings=[msg])


def resample_slices(stack: np.ndarray, dist: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Linear interpolation along axis 0: ``stack`` ``(N, R, C)`` at ``dist`` ``(N,)`` -> ``(M, R, C)``."""
    out = np.empty((len(targets),) + stack.shape[1:], dtype=np.float32)
    hi = np.clip(np.searchsorted(dist, targets, side="right"), 1, len(dist) - 1)
    lo = hi - 1
    w = np.clip((targets - dist[lo]) / (dist[hi] - dist[lo]), 0.0, 1.0).astype(np.float32)
    for k in range(len(targets)):
        if w[k] == 0.0:
            out[k] = stack[lo[k]]
        elif w[k] == 1.0:
            out[k] = stack[hi[k]]
        else:
            np.multiply(stack[lo[k]], 1.0 - w[k], out=out[k])
            out[k] += w[k] * stack[hi[k]]
    return out


def affine_ras(
    row: np.ndarray,
    col: np.ndarray,
    pixel_spacing: tuple[float, float],
    origin_lps: np.ndarray,
    step_lps: np.ndarray,
) -> np.ndarray:
    """``(4, 4)`` voxel ``(X=col idx, Y=row idx, Z=slice idx)`` -> RAS mm affine."""
    m = np.eye(4)
    m[:3, 0] = row * pixel_spacing[1]
    m[:3, 1] = col * pixel_spacing[0]
    m[:3, 2] = step_lps
    m[:3, 3] = origin_lps
    return LPS_TO_RAS @ m


def tilt_degrees(u: np.ndarray, normal: np.ndarray) -> float:
    """Angle (degrees) between the stacking direction and the image-plane normal (gantry tilt)."""
    return float(math.degrees(math.acos(min(1.0, abs(float(u @ normal))))))
