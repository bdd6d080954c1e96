"""Write saliency maps of one scan: PNG montages on the preprocessed grid and NIfTI heat maps on the
ORIGINAL scan grid (same affine and shape as the source, so they open over it in any viewer).

Layout under ``out_dir``::

    attention.nii.gz                       class-agnostic attention rollout
    <finding>_<method>.nii.gz              per-finding maps (grad_rollout, grad_x_input)
    <finding>.png                          one row per method: axial / coronal / sagittal through the peak
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmct.infer.overlay import brain_window, planes, save_montage_planes, save_nifti
from fmct.infer.resample import resample_planes, resample_to_grid
from fmct.infer.saliency import METHODS, compute_saliency
from fmct.io.volume import Volume


def cube_peak_world(cube_map: torch.Tensor | np.ndarray, grid_affine: np.ndarray) -> list[float]:
    """World position (RAS mm) of the maximum of a cube map."""
    m = np.asarray(cube_map)
    idx = np.array(np.unravel_index(int(np.argmax(m)), m.shape), dtype=np.float64)
    return [round(float(v), 2) for v in (grid_affine[:3, :3] @ idx + grid_affine[:3, 3])]


def restrict_to_head(
    maps: dict[str, dict[str, torch.Tensor]], x: torch.Tensor
) -> dict[str, dict[str, torch.Tensor]]:
    """Zero the maps outside the head and rescale each to ``[0, 1]``.

    The model cube pads the head with air; attention and gradients also land there (on padding tokens),
    which says nothing about where a finding is. ``x`` is the ``(C, S, S, S)`` windowed input: a voxel
    belongs to the head when any window channel is above 0 (air is 0 in every default window); the
    mask is softened over ~2 voxels.
    """
    head = (x.detach().amax(0) > 0).to(torch.float32)[None, None]
    for _ in range(2):  # a soft edge, so resampling to the source grid does not cut a peak at the border
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


def write_saliency(
    model: Any,
    x: torch.Tensor,
    grid_affine: np.ndarray,
    source: Volume,
    processed: Volume,
    labels: Sequence[str],
    out_dir: str | Path,
    findings: Sequence[str] | None = None,
    methods: Sequence[str] | None = None,
    probs: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Compute and write the maps of one scan.

    Args:
        x: ``(C, S, S, S)`` model input; ``grid_affine`` its cube voxel -> RAS mm affine.
        source: the scan as read (its grid receives the NIfTI heat maps).
        processed: the preprocessed volume (RAS, isotropic; background of the PNG montages).

    Returns:
        ``{"dir", "attention": {"nifti", "peak_mm"}, "findings": {f: {"png", "nifti": {method: path},
        "peak_mm": {method: [x, y, z]}}}}`` (paths as strings, peaks in RAS mm).
    """
    methods = list(methods or METHODS)
    unknown = [f for f in (findings or []) if f not in labels]
    if unknown:
        raise ValueError(f"unknown findings {unknown}; the model predicts {list(labels)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    maps = restrict_to_head(compute_saliency(model, x[None], labels, findings, methods), x)
    methods = list(next(iter(maps.values())))  # a non-ViT backbone only gets grad_x_input
    bw = brain_window(processed.array)
    result: dict[str, Any] = {"dir": str(out_dir), "findings": {}}

    def montage_row(cube: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
        idx = world_to_index(cube_peak_world(cube, grid_affine), processed)
        return planes(bw, idx), resample_planes(cube, grid_affine, processed.affine, processed.shape, idx)

    shared_row = None
    if "attention" in methods:
        cube = next(iter(maps.values()))["attention"]
        path = save_nifti(
            resample_to_grid(cube, grid_affine, source.affine, source.shape),
            source.affine,
            out_dir / "attention.nii.gz",
            dtype="uint8",
        )
        result["attention"] = {"nifti": str(path), "peak_mm": cube_peak_world(cube, grid_affine)}
        shared_row = montage_row(cube)
    for finding, per_method in maps.items():
        info: dict[str, Any] = {"nifti": {}, "peak_mm": {}}
        rows: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for method, cube in per_method.items():
            info["peak_mm"][method] = cube_peak_world(cube, grid_affine)
            if method == "attention":
                rows[method] = shared_row  # type: ignore[assignment]
                continue
            path = save_nifti(
                resample_to_grid(cube, grid_affine, source.affine, source.shape),
                source.affine,
                out_dir / f"{finding}_{method}.nii.gz",
                dtype="uint8",
            )
            info["nifti"][method] = str(path)
            rows[method] = montage_row(cube)
        p = None if probs is None else probs.get(finding)
        title = f"{finding}" + ("" if p is None else f"  p = {p:.3f}")
        png = save_montage_planes(rows, out_dir / f"{finding}.png", processed.spacing, title)
        info["png"] = str(png)
        result["findings"][finding] = info
    return result


def world_to_index(world_mm: Sequence[float], vol: Volume) -> tuple[int, int, int]:
    """Nearest voxel of ``vol`` to a RAS mm position, clipped into the grid."""
    v = np.linalg.inv(vol.affine) @ np.array([*world_mm, 1.0])
    return tuple(int(np.clip(np.rint(c), 0, n - 1)) for c, n in zip(v[:3], vol.shape, strict=True))  # type: ignore[return-value]
