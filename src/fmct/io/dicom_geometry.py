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


def _real_gaps(gaps: np.ndarray, thickness: np.ndarray | None, median: float, tol: float) -> np.ndarray:
    """Which gaps leave tissue unimaged: a gap is real only when it exceeds both the series' median spacing
    and what the two neighbouring slices' thicknesses cover (``(t_i + t_{i+1}) / 2``), by more than
    ``tol`` of that. Unknown thicknesses fall back to the median spacing alone. ``(N-1,)`` bool."""
    allowed = np.full(len(gaps), median)
    if thickness is not None and len(thickness) == len(gaps) + 1:
        cover = (np.asarray(thickness[:-1], float) + np.asarray(thickness[1:], float)) / 2.0
        allowed = np.fmax(allowed, np.where(np.isfinite(cover) & (cover > 0), cover, np.nan))
    return gaps > allowed * (1.0 + tol) + 1e-3


def plan_stack(
    dist: np.ndarray,
    gap_tolerance: float = 0.1,
    max_missing: int = 2,
    thickness: np.ndarray | None = None,
) -> StackPlan:
    """Decide how to regularise slices at sorted distinct distances ``dist`` ``(N,)`` mm.

    ``dist`` is measured perpendicular to the image plane (for a tilted stack, the distance along the
    stack times the cosine of the tilt), as is ``thickness`` ``(N,)`` (SliceThickness in mm, NaN where
    unknown). Regular if no slice is more than ``gap_tolerance`` x median gap away from the uniform grid
    between the first and last slice. Otherwise the slices are resampled onto a uniform grid (about the
    finer of the series' spacings) by linear interpolation, with a warning; a gap that neither the median
    spacing nor the neighbours' thicknesses cover (:func:`_real_gaps`) counts ``round(gap / median) - 1``
    missing slices, and more than ``max_missing`` missing in total raises InvalidScan. So a series whose
    spacing changes with its slice thickness (13 x 4 mm then 13 x 7 mm) is resampled, not refused.
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
    real = _real_gaps(gaps, thickness, median, gap_tolerance)
    missing = int(np.where(real, np.maximum(np.rint(gaps / median).astype(np.int64) - 1, 0), 0).sum())
    if missing > max_missing:
        raise InvalidScan(
            f"{missing} slices missing (largest gap {gaps.max():.2f} mm, median spacing {median:.2f} mm, "
            "measured perpendicular to the slices)"
        )
    base = min(median, float(np.percentile(gaps, 25)))  # keep the finer part of a mixed series
    m = max(int(round(float(dist[-1] - dist[0]) / base)) + 1, 2)
    targets = np.linspace(float(dist[0]), float(dist[-1]), m)
    new_step = float(targets[1] - targets[0])
    if missing:
        msg = (
            f"filled {missing} missing slice(s) by linear interpolation "
            f"(gap {gaps.max():.2f} mm, median spacing {median:.2f} mm)"
        )
    else:
        lo, hi = np.percentile(gaps, [10, 90])
        msg = (
            f"variable slice spacing {lo:.1f}-{hi:.1f} mm resampled to a regular {new_step:.3f} mm grid by "
            f"linear interpolation (gaps {gaps.min():.2f}-{gaps.max():.2f} mm, none beyond the slice coverage)"
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
    """Signed gantry tilt (degrees): the angle between the stacking direction ``u`` and the image-plane
    normal (both unit LPS vectors, ``u @ normal > 0``).

    Sign convention (from the geometry, never from the vendor's GantryDetectorTilt tag): with both vectors
    taken pointing superior, the tilt is **positive when slice positions drift posterior** relative to the
    normal as the stack advances superior (the image plane's superior normal leans anterior, the usual
    tilt parallel to the skull base), negative when they drift anterior. A drift purely left-right counts
    as positive. The Philips series ``dcm_qa_ct/Philips/S21610/S3010`` is +16.5 (its header says +16.5);
    the GE series ``dcm_qa_ct/GE`` is -18.5 (its header says +18.5: GE records the opposite sense).
    """
    cos = min(1.0, abs(float(u @ normal)))
    angle = math.degrees(math.acos(cos))
    n_sup = normal if normal[2] >= 0 else -normal
    u_sup = u if float(u @ n_sup) >= 0 else -u
    drift = u_sup - n_sup * float(u_sup @ n_sup)  # LPS: +y is posterior
    return -angle if drift[1] < -1e-9 else angle
