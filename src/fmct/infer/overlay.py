"""PNG montages of saliency maps over the brain window, and NIfTI heat maps.

The montage has one row per map and three columns: axial, coronal and sagittal slices through that
map's maximum. Volumes are ``(X, Y, Z)`` in RAS+ (the preprocessed grid); slices are shown in the
radiological convention (patient right on the image left, anterior / superior up).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fmct.fileperm import as_umask

BRAIN_WINDOW: tuple[float, float] = (40.0, 80.0)


def _atomic_path(out: Path, suffix: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=suffix, dir=out.parent)
    os.close(fd)
    as_umask(tmp)  # mkstemp makes 0600 files: saliency maps are shared like any other output
    return Path(tmp)


def peak_index(volume_map: np.ndarray) -> tuple[int, int, int]:
    """Voxel index ``(i, j, k)`` of the maximum of a 3D map."""
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(volume_map)), volume_map.shape))  # type: ignore[return-value]


VIEWS: tuple[str, ...] = ("axial", "coronal", "sagittal")


def orient(view: str, plane: np.ndarray) -> np.ndarray:
    """Screen orientation of a plane: axial ``(X, Y)``, coronal ``(X, Z)``, sagittal ``(Y, Z)`` ->
    rows top-to-bottom = anterior/superior first, columns = patient right on the left (sagittal:
    posterior on the left)."""
    if view in ("axial", "coronal"):
        return plane.T[::-1, ::-1]
    if view == "sagittal":
        return plane.T[::-1, :]
    raise ValueError(f"unknown view {view!r}")


def planes(vol: np.ndarray, idx: Sequence[int]) -> list[np.ndarray]:
    """The three orthogonal planes through ``idx = (i, j, k)``: ``[vol[:, :, k], vol[:, j, :], vol[i]]``."""
    i, j, k = idx
    return [vol[:, :, k], vol[:, j, :], vol[i, :, :]]


def brain_window(hu: np.ndarray) -> np.ndarray:
    """HU -> ``[0, 1]`` in the brain window (40, 80)."""
    level, width = BRAIN_WINDOW
    return np.clip((np.asarray(hu, dtype=np.float32) - (level - width / 2)) / width, 0, 1)


def save_montage_planes(
    rows: Mapping[str, tuple[Sequence[np.ndarray], Sequence[np.ndarray]]],
    out: str | Path,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    title: str = "",
    threshold: float = 0.2,
) -> Path:
    """Write a PNG montage (atomically) from precomputed planes.

    Args:
        rows: ``{name: (background planes, heat planes)}``, each a list of the axial ``(X, Y)``, coronal
            ``(X, Z)`` and sagittal ``(Y, Z)`` planes (see :func:`planes`); background in ``[0, 1]``
            (e.g. :func:`brain_window`), heat in ``[0, 1]``.
        spacing: voxel size (mm) for the aspect ratios.
        threshold: heat values below it are transparent.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    sx, sy, sz = (float(s) for s in spacing)
    aspects = {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}
    n = max(1, len(rows))
    fig, axes = plt.subplots(n, 3, figsize=(9, 3.1 * n), squeeze=False)
    for r, (name, (bgs, heats)) in enumerate(rows.items()):
        for c, (view, bg, heat) in enumerate(zip(VIEWS, bgs, heats, strict=True)):
            ax = axes[r, c]
            ax.imshow(
                orient(view, bg), cmap="gray", vmin=0, vmax=1, aspect=aspects[view], interpolation="nearest"
            )
            ax.imshow(
                np.ma.masked_less(orient(view, np.asarray(heat, np.float32)), threshold),
                cmap="jet",
                vmin=0,
                vmax=1,
                alpha=0.45,
                aspect=aspects[view],
                interpolation="bilinear",
            )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name} · {view}" if c == 0 else view, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    tmp = _atomic_path(out, ".png")
    try:
        fig.savefig(tmp, dpi=80, format="png")
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out


def save_montage(
    hu: np.ndarray,
    maps: Mapping[str, np.ndarray],
    out: str | Path,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    title: str = "",
    threshold: float = 0.2,
) -> Path:
    """PNG montage of whole-volume maps: ``hu (X, Y, Z)`` (RAS+, brain window) under ``maps``
    ``{name: (X, Y, Z) in [0, 1]}``, one row per map through that map's maximum."""
    bw = brain_window(hu)
    rows = {}
    for name, m in maps.items():
        idx = peak_index(np.asarray(m))
        rows[name] = (planes(bw, idx), planes(np.asarray(m, np.float32), idx))
    return save_montage_planes(rows, out, spacing, title, threshold)


def save_nifti(array: np.ndarray, affine: np.ndarray, out: str | Path, dtype: str = "float32") -> Path:
    """Write a map ``(X, Y, Z)`` with voxel -> RAS ``affine`` as NIfTI (:func:`fmct.io.nifti.write_nifti`).

    ``dtype="uint8"`` stores 8-bit values with a scale factor (nibabel picks slope/intercept): 4x smaller
    files for maps in ``[0, 1]``, read back as float by any viewer.
    """
    from fmct.io.nifti import write_nifti

    return write_nifti(np.asarray(array, dtype=np.float32), affine, out, dtype=dtype)
