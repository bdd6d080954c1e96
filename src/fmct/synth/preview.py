"""A PNG montage of one synthetic scan: axial, coronal and sagittal planes with the findings named."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fmct.labels import FINDINGS


def _centre(mask: np.ndarray | None, shape) -> tuple[int, int, int]:
    """Planes through the centroid of the labelled findings, or through the middle of the head."""
    if mask is not None and mask.any():
        idx = np.nonzero(mask)
        return tuple(int(np.median(i)) for i in idx)  # type: ignore[return-value]
    return (shape[0] // 2, shape[1] // 2, int(shape[2] * 0.55))


def write_preview(scan, path: Path, title: str = "") -> Path:
    """Render ``scan`` (a :class:`~fmct.synth.scan.SynthScan`) to ``path`` (PNG, written atomically).

    Panels: brain window (40/80) in three planes through the findings' centroid, mask outlines in colour,
    and a bone-window axial. The title lists the present findings with their sizes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vol = scan.volume.array
    mask = scan.mask
    ci, cj, ck = _centre(mask, vol.shape)
    sp = scan.volume.spacing
    views = [
        ("axial", vol[:, :, ck].T[::-1], None if mask is None else mask[:, :, ck].T[::-1], sp[1] / sp[0]),
        ("coronal", vol[:, cj, :].T, None if mask is None else mask[:, cj, :].T, sp[2] / sp[0]),
        ("sagittal", vol[ci, :, :].T, None if mask is None else mask[ci, :, :].T, sp[2] / sp[1]),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.8), dpi=80)
    for ax, (name, img, m, aspect) in zip(axes[:3], views, strict=True):
        # axial rows are flipped above so that anterior is up with origin="lower" everywhere
        ax.imshow(img, cmap="gray", vmin=0, vmax=80, aspect=aspect, origin="lower", interpolation="nearest")
        if m is not None and m.any():
            ax.contour(m > 0, levels=[0.5], colors="red", linewidths=0.8, origin="lower")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    axes[3].imshow(
        views[0][1],
        cmap="gray",
        vmin=-200,
        vmax=1600,
        aspect=views[0][3],
        origin="lower",
        interpolation="nearest",
    )
    axes[3].set_title("bone window", fontsize=9)
    axes[3].axis("off")
    present = [f"{f} ({scan.sizes[f]:g})" for f in FINDINGS if scan.labels.get(f)]
    fig.suptitle(
        (title + ": " if title else "") + (", ".join(present) if present else "no finding"), fontsize=10
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", metadata={"Software": None})
    plt.close(fig)
    os.replace(tmp, path)
    return path
