"""``fmct.preprocess.crop.crop_head`` before the ingest speed work (issue 27), and ``head_mask_coarse`` /
``head_box`` before its second pass (the mask labelled in C order by ``ndimage.label``), kept verbatim as
the references the faster ones are tested against (bit-identical). Not used by fmct itself."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fmct.io.errors import SkipScan
from fmct.io.volume import Volume
from fmct.preprocess.crop import AIR_HU, crop_view  # unchanged by the speed work: shared


def _coarse_stride(spacing: tuple[float, float, float], target_mm: float = 2.0) -> tuple[int, int, int]:
    return tuple(max(1, int(round(target_mm / s))) for s in spacing)  # type: ignore[return-value]


def head_mask_coarse(
    array: np.ndarray, threshold_hu: float, stride: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Coarse masks of the head and of the other bodies above ``threshold_hu``.

    Returns:
        ``(head, others)``: bool arrays of shape ``ceil(shape / stride)``.

    Raises:
        SkipScan: nothing above the threshold (an empty or non-CT image).
    """
    coarse = array[:: stride[0], :: stride[1], :: stride[2]] > threshold_hu
    labels, n = ndimage.label(coarse)
    if n == 0:
        raise SkipScan(f"no foreground above {threshold_hu:g} HU (empty image?)")
    if n == 1:  # one body (the usual case once cropped): it is the head, nothing else
        return coarse, np.zeros_like(coarse)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    head_label = int(np.argmax(sizes))
    head = labels == head_label
    others = (labels > 0) & ~head
    return head, others


def head_box(
    array: np.ndarray,
    spacing: tuple[float, float, float],
    threshold_hu: float = -500.0,
    margin_mm: float = 5.0,
) -> tuple[list[list[int]], np.ndarray, np.ndarray, tuple[int, int, int]]:
    """Bounding box of the head in voxel indices, from a ~2 mm coarse mask (no copy of ``array``).

    Args:
        array: ``(X, Y, Z)`` HU, any memory layout.
        spacing: voxel size in mm along the array axes.

    Returns:
        ``(box, head, others, stride)``: ``box = [[lo, hi), ...]`` (head box plus ``margin_mm``, clipped to
        the array), the coarse masks of :func:`head_mask_coarse` and the coarse stride.
    """
    stride = _coarse_stride(spacing)
    head, others = head_mask_coarse(array, threshold_hu, stride)
    box = []
    for a in range(3):
        proj = head.any(axis=tuple(b for b in range(3) if b != a))
        nz = np.flatnonzero(proj)
        margin = int(np.ceil(margin_mm / spacing[a]))
        lo = int(nz[0]) * stride[a] - margin
        hi = (int(nz[-1]) + 1) * stride[a] + margin
        box.append([max(lo, 0), min(hi, array.shape[a])])
    return box, head, others, stride


def crop_head(volume: Volume, threshold_hu: float = -500.0, margin_mm: float = 5.0) -> tuple[Volume, list]:
    box, head, others, stride = head_box(volume.array, volume.spacing, threshold_hu, margin_mm)
    cropped = crop_view(volume, box)
    out = np.array(cropped.array, dtype=np.float32, copy=True, order="C")  # C order whatever the input's
    cbox = tuple(slice(lo // st, -(-hi // st)) for (lo, hi), st in zip(box, stride, strict=True))
    others, head = others[cbox], head[cbox]
    if others.any():
        # blocks of other bodies (grown by one coarse voxel to catch their edges), never near the head
        remove = ndimage.binary_dilation(others) & ~ndimage.binary_dilation(head, iterations=2)
        idx = [np.arange(lo, hi) // st - sl.start for (lo, hi), st, sl in zip(box, stride, cbox, strict=True)]
        out[remove[np.ix_(*idx)]] = AIR_HU
    return Volume(out, cropped.affine, cropped.meta), box
