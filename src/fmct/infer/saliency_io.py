"""Write the saliency maps of one scan for its positive findings: a PNG montage and a NIfTI stack each.

Layout under ``out_dir`` (only findings the model calls positive, ``p >= positive_at``, or those named)::

    <finding>.png      one row per method, the same axial / coronal / sagittal slices (through the
                       finding's peak) in every row; orientation labels, colour bar, the lesion outline
                       when a mask is known
    <finding>.nii.gz   the maps as a 4D NIfTI, volume ``m`` = method ``m`` (the order is in the header's
                       description and in the returned dict), uint8, on the model cube's grid: its affine
                       places it over the source in any viewer that reads NIfTI affines (the maps are no
                       finer than that grid; on the source grid they took 10x the bytes)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fmct.infer.overlay import Montage, brain_window, montage_figure, planes, save_figure, save_nifti
from fmct.infer.resample import resample_planes
from fmct.infer.saliency import METHODS, compute_saliency
from fmct.infer.saliency_metrics import POINTING_TOL_MM, peak_world, score_maps
from fmct.io.volume import Volume

if TYPE_CHECKING:
    from fmct.synth.masks import LesionMask

#: A finding is explained when the model gives it at least this probability (unless findings are named).
POSITIVE_AT = 0.5


def cube_peak_world(cube_map: torch.Tensor | np.ndarray, grid_affine: np.ndarray) -> list[float]:
    """World position (RAS mm, rounded to 0.01) of the maximum of a cube map."""
    return [round(float(v), 2) for v in peak_world(cube_map, grid_affine)]


def head_region(x: torch.Tensor) -> torch.Tensor:
    """``(S, S, S)`` bool: the head in a ``(C, S, S, S)`` windowed input (any channel above 0; air is 0 in
    every default window)."""
    return x.detach().amax(0) > 0


def restrict_to_head(
    maps: dict[str, dict[str, torch.Tensor]], x: torch.Tensor
) -> dict[str, dict[str, torch.Tensor]]:
    """Zero the maps outside the head and rescale each to ``[0, 1]``.

    The model cube pads the head with air; attention and gradients also land there (on padding tokens),
    which says nothing about where a finding is. The head (:func:`head_region`) is softened over ~2 voxels.
    """
    head = head_region(x).to(torch.float32)[None, None]
    for _ in range(2):  # a soft edge, so resampling does not cut a peak at the border
        head = torch.nn.functional.avg_pool3d(head, 3, stride=1, padding=1, count_include_pad=False)
    head = head[0, 0]
    out: dict[str, dict[str, torch.Tensor]] = {}
    for finding, per_method in maps.items():
        out[finding] = {}
        for method, m in per_method.items():
            m = torch.as_tensor(m, dtype=torch.float32) * head
            top = float(m.max())
            out[finding][method] = m / top if top > 0 else m
    return out


def findings_to_explain(
    labels: Sequence[str],
    probs: Mapping[str, float] | None,
    findings: Sequence[str] | None = None,
    positive_at: float | Mapping[str, float] = POSITIVE_AT,
) -> list[str]:
    """The named ``findings``, else those with ``probs[f] >= positive_at`` (all when ``probs`` is None).
    ``positive_at`` may be one probability or one per finding (a model's operating thresholds; findings it
    does not name use :data:`POSITIVE_AT`)."""
    if findings:
        unknown = [f for f in findings if f not in labels]
        if unknown:
            raise ValueError(f"unknown findings {unknown}; the model predicts {list(labels)}")
        return list(findings)
    if probs is None:
        return list(labels)

    def threshold(f: str) -> float:
        return float(positive_at.get(f, POSITIVE_AT)) if isinstance(positive_at, Mapping) else positive_at

    return [f for f in labels if probs.get(f, 0.0) >= threshold(f)]


def finding_peak(per_method: Mapping[str, torch.Tensor | np.ndarray]) -> tuple[int, int, int]:
    """Cube index of the finding's peak: the maximum of the mean of its class-specific maps (the
    class-agnostic ``attention`` map only when there is no other)."""
    own = [m for k, m in per_method.items() if k != "attention"] or list(per_method.values())
    mean = np.mean([np.asarray(m, np.float32) for m in own], axis=0)
    i, j, k = (int(v) for v in np.unravel_index(int(np.argmax(mean)), mean.shape))
    return i, j, k


def world_to_index(world_mm: Sequence[float], vol: Volume) -> tuple[int, int, int]:
    """Nearest voxel of ``vol`` to a RAS mm position, clipped into the grid."""
    v = np.linalg.inv(vol.affine) @ np.array([*world_mm, 1.0])
    i, j, k = (int(np.clip(np.rint(c), 0, n - 1)) for c, n in zip(v[:3], vol.shape, strict=True))
    return i, j, k


def _slice_names(world: Sequence[float]) -> list[str]:
    x, y, z = world
    side = lambda v, pos, neg: f"{pos if v >= 0 else neg} {abs(v):.0f} mm"  # noqa: E731
    return [f"axial, {side(z, 'S', 'I')}", f"coronal, {side(y, 'A', 'P')}", f"sagittal, {side(x, 'R', 'L')}"]


def finding_montage(
    per_method: Mapping[str, torch.Tensor],
    grid_affine: np.ndarray,
    processed: Volume,
    lesion_mask: np.ndarray | None = None,
    lesion_affine: np.ndarray | None = None,
) -> tuple[Montage, list[float]]:
    """The montage of one finding's maps on the preprocessed grid, all rows through the finding's peak.

    Args:
        per_method: ``{method: (S, S, S)}`` cube maps (cube voxel -> RAS ``grid_affine``).
        processed: the preprocessed scan (RAS, isotropic): background and slice grid.
        lesion_mask / lesion_affine: the finding's bool mask on its own grid, drawn as an outline.

    Returns:
        The :class:`~fmct.infer.overlay.Montage` and the shared point (RAS mm) its slices go through.
    """
    peak = np.asarray(grid_affine, np.float64)[:3] @ np.array([*finding_peak(per_method), 1.0])
    idx = world_to_index(peak, processed)
    shared = list(processed.affine[:3] @ np.array([*idx, 1.0]))
    heats = {
        m: resample_planes(c, grid_affine, processed.affine, processed.shape, idx)
        for m, c in per_method.items()
    }
    outline = None
    if lesion_mask is not None and lesion_mask.any():
        mask = lesion_mask.astype(np.float32)
        outline = resample_planes(mask, lesion_affine, processed.affine, processed.shape, idx)
    notes = {}
    for m, cube in per_method.items():
        d = float(np.linalg.norm(peak_world(cube, grid_affine) - np.asarray(shared)))
        notes[m] = (
            "its maximum: here" if d < 1.5 * max(processed.spacing) else f"its maximum: {d:.0f} mm away"
        )
    montage = Montage(
        background=planes(brain_window(processed.array), idx),
        heats=heats,
        slice_names=_slice_names(shared),
        spacing=processed.spacing,
        outline=outline,
        row_notes=notes,
    )
    return montage, [round(float(v), 2) for v in shared]


def write_saliency(
    model: Any,
    x: torch.Tensor,
    grid_affine: np.ndarray,
    processed: Volume,
    labels: Sequence[str],
    out_dir: str | Path,
    findings: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    probs: Mapping[str, float] | None = None,
    positive_at: float = POSITIVE_AT,
    lesions: LesionMask | None = None,
    tol_mm: float = POINTING_TOL_MM,
) -> dict[str, Any]:
    """Compute and write the maps of one scan's positive findings (see the module docstring).

    Args:
        x: ``(C, S, S, S)`` model input; ``grid_affine`` its cube voxel -> RAS mm affine.
        processed: the preprocessed volume (RAS, isotropic; background of the montages).
        findings: explain these (default: those with ``probs >= positive_at``).
        lesions: a :class:`fmct.synth.LesionMask` of the scan (outlines, and each map scored against it).

    Returns:
        ``{"dir", "positive_at", "methods", "findings": {f: {"png", "nifti", "volumes", "p", "slices_mm",
        "peak_mm": {method: [x, y, z]}, "lesion": score_maps() output or None}}}``.
    """
    chosen = findings_to_explain(labels, probs, findings, positive_at)
    result: dict[str, Any] = {"dir": str(out_dir), "positive_at": positive_at, "findings": {}}
    if not chosen:
        return {**result, "methods": [], "note": f"no finding at p >= {positive_at:g}: no maps written"}
    maps = restrict_to_head(compute_saliency(model, x[None], labels, chosen, list(methods or METHODS)), x)
    result["methods"] = list(next(iter(maps.values())))  # a non-ViT backbone only gets grad_x_input
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    head = head_region(x).numpy()
    for finding, per_method in maps.items():
        mask = None if lesions is None else lesions.of(finding)
        mask = mask if mask is not None and mask.any() else None
        mask_affine = None if lesions is None else lesions.affine
        montage, shared = finding_montage(per_method, grid_affine, processed, mask, mask_affine)
        p = None if probs is None else probs.get(finding)
        info: dict[str, Any] = {"p": p, "slices_mm": shared, "volumes": list(per_method), "lesion": None}
        info["peak_mm"] = {m: cube_peak_world(c, grid_affine) for m, c in per_method.items()}
        if mask is not None:
            info["lesion"] = score_maps(per_method, grid_affine, mask, mask_affine, head, tol_mm)
            montage.row_notes = {m: _lesion_note(s) for m, s in info["lesion"]["methods"].items()}
        montage.title = f"{finding}" + ("" if p is None else f"  (p = {p:.2f})") + ": slices through its peak"
        if lesions is not None:
            montage.footer = (
                "magenta outline: the lesion mask" if mask is not None else f"no {finding} in the mask"
            )
        info["png"] = str(save_figure(montage_figure(montage), out_dir / f"{finding}.png"))
        stack = np.stack([np.asarray(c, np.float32) for c in per_method.values()], axis=-1)
        desc = f"fmct saliency {finding}: " + ",".join(per_method)
        info["nifti"] = str(save_nifti(stack, grid_affine, out_dir / f"{finding}.nii.gz", "uint8", desc))
        result["findings"][finding] = info
    return result


def _lesion_note(score: Mapping[str, Any]) -> str:
    d = score["peak_to_mask_mm"]
    where = "in the lesion" if d == 0 else f"{d:.0f} mm from the lesion"
    return f"maximum {where}: {'hit' if score['hit'] else 'miss'}"
