"""The saliency montage a reader looks at, and NIfTI heat maps.

A montage has one row per saliency map of a finding and three columns: axial, coronal and sagittal slices
of the preprocessed scan (RAS+, brain window), the SAME slices in every row (through the finding's peak), so
the maps can be compared point by point. Slices are shown in the radiological convention (patient right on
the image left; anterior / superior up; sagittal: anterior on the right), each panel labelled at its edges
(R/L, A/P, S/I). The heat uses a stepped colour scale with a colour bar (values are per map, 1 = its maximum
in the head; low values are not drawn); a known lesion mask is drawn as an outline.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fmct.fileperm import as_umask
from fmct.io.nifti import write_nifti

BRAIN_WINDOW: tuple[float, float] = (40.0, 80.0)
VIEWS: tuple[str, ...] = ("axial", "coronal", "sagittal")
#: Patient directions at the (left, right, top, bottom) edges of each view as :func:`orient` shows it.
EDGE_LABELS: dict[str, tuple[str, str, str, str]] = {
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("P", "A", "S", "I"),
}
#: Heat values below it are not drawn (transparent in the colour bar too).
HEAT_THRESHOLD = 0.2
#: Steps of the heat colour scale over ``[0, 1]``.
HEAT_LEVELS = 10
OUTLINE_COLOUR = "#ff00ff"


def _atomic_path(out: Path, suffix: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=suffix, dir=out.parent)
    os.close(fd)
    as_umask(tmp)  # mkstemp makes 0600 files: saliency maps are shared like any other output
    return Path(tmp)


def orient(view: str, plane: np.ndarray) -> np.ndarray:
    """Screen orientation of a plane: axial ``(X, Y)``, coronal ``(X, Z)``, sagittal ``(Y, Z)`` ->
    rows top-to-bottom = anterior/superior first, columns = patient right on the left (sagittal:
    posterior on the left); :data:`EDGE_LABELS` names the edges."""
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


def heat_colormap(threshold: float = HEAT_THRESHOLD, levels: int = HEAT_LEVELS) -> Any:
    """``levels`` steps of ``turbo`` over ``[0, 1]``; the steps below ``threshold`` are transparent."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    colours = colormaps["turbo"](np.linspace(0, 1, levels))
    centres = (np.arange(levels) + 0.5) / levels
    colours[centres < threshold, 3] = 0.0
    return ListedColormap(colours, name="fmct-heat")


@dataclass
class Montage:
    """What one montage shows (every plane list is axial ``(X, Y)``, coronal ``(X, Z)``, sagittal ``(Y, Z)``
    of the preprocessed grid, see :func:`planes`).

    Attributes:
        background: the scan's planes in ``[0, 1]`` (e.g. :func:`brain_window`).
        heats: ``{row name: planes in [0, 1]}``, one row per map, all through the same slices.
        slice_names: a title per view, e.g. ``"axial, S 12 mm"``.
        spacing: voxel size (mm) of the grid, for the aspect ratios.
        outline: planes of a lesion mask (occupancy in ``[0, 1]``, drawn at 0.5), or None.
        row_notes: a second line under a row's name (e.g. where its own peak is).
        title / footer: above and below the panels.
    """

    background: Sequence[np.ndarray]
    heats: Mapping[str, Sequence[np.ndarray]]
    slice_names: Sequence[str] = ("axial", "coronal", "sagittal")
    spacing: Sequence[float] = (1.0, 1.0, 1.0)
    outline: Sequence[np.ndarray] | None = None
    row_notes: Mapping[str, str] = field(default_factory=dict)
    title: str = ""
    footer: str = ""


def _edge_labels(ax: Any, view: str) -> None:
    left, right, top, bottom = EDGE_LABELS[view]
    from matplotlib.patheffects import withStroke

    style = {"color": "yellow", "fontsize": 8, "fontweight": "bold", "transform": ax.transAxes,
             "path_effects": [withStroke(linewidth=2, foreground="black")]}  # fmt: skip
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)


def montage_figure(m: Montage, threshold: float = HEAT_THRESHOLD) -> Any:
    """The montage as a matplotlib ``Figure`` (rows = maps, columns = views; a colour bar on the right).

    No pyplot state is touched; save it with :func:`save_figure`.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    sx, sy, sz = (float(s) for s in m.spacing)
    aspects = {"axial": sy / sx, "coronal": sz / sx, "sagittal": sz / sy}
    cmap, norm = heat_colormap(threshold), Normalize(0.0, 1.0)
    n = max(1, len(m.heats))
    height = 2.6 * n + 0.9
    fig = Figure(figsize=(8.4, height))  # fixed margins: a constrained layout doubles the drawing time
    fig.subplots_adjust(
        left=0.07, right=0.86, bottom=0.45 / height, top=1 - 0.5 / height, wspace=0.04, hspace=0.1
    )
    axes = fig.subplots(n, 3, squeeze=False)
    for r, (name, heats) in enumerate(m.heats.items()):
        for c, view in enumerate(VIEWS):
            ax = axes[r, c]
            ax.imshow(orient(view, m.background[c]), cmap="gray", vmin=0, vmax=1, aspect=aspects[view],
                      interpolation="nearest")  # fmt: skip
            ax.imshow(orient(view, np.asarray(heats[c], np.float32)), cmap=cmap, norm=norm, alpha=0.5,
                      aspect=aspects[view], interpolation="nearest")  # fmt: skip
            if m.outline is not None:
                plane = orient(view, np.asarray(m.outline[c], np.float32))
                if plane.max() > 0.5 > plane.min():
                    ax.contour(plane, levels=[0.5], colors=[OUTLINE_COLOUR], linewidths=1.2)
            _edge_labels(ax, view)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(m.slice_names[c], fontsize=9)
        note = m.row_notes.get(name)
        axes[r, 0].set_ylabel(name if not note else f"{name}\n{note}", fontsize=9)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=fig.add_axes((0.89, 0.2, 0.025, 0.6)))
    bar.set_ticks(np.linspace(0, 1, 6))
    bar.set_label(f"saliency (1 = the map's maximum in the head; below {threshold:g} not drawn)", fontsize=8)
    if m.title:
        fig.suptitle(m.title, fontsize=10)
    if m.footer:
        fig.supxlabel(m.footer, fontsize=8)
    return fig


def save_figure(fig: Any, out: str | Path, dpi: int = 72) -> Path:
    """Write a figure as PNG atomically, with the mode the umask gives."""
    out = Path(out)
    tmp = _atomic_path(out, ".png")
    try:
        fig.savefig(tmp, dpi=dpi, format="png")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def save_nifti(
    array: np.ndarray, affine: np.ndarray, out: str | Path, dtype: str = "float32", description: str = ""
) -> Path:
    """Write a map ``(X, Y, Z)`` or a stack of maps ``(X, Y, Z, M)`` with voxel -> RAS ``affine`` as NIfTI
    (:func:`fmct.io.nifti.write_nifti`; ``description`` goes into the header's ``descrip``).

    ``dtype="uint8"`` stores 8-bit values with a scale factor (nibabel picks slope/intercept): 4x smaller
    files for maps in ``[0, 1]``, read back as float by any viewer.
    """

    return write_nifti(np.asarray(array, dtype=np.float32), affine, out, dtype=dtype, description=description)
