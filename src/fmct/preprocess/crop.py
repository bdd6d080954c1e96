"""Head crop: keep the largest connected body above a HU threshold, drop the table and the air.

Works on a coarse copy (every ``stride``-th voxel, ~2 mm) for speed: threshold, 6-connected components
(:func:`fmct.preprocess.morphology.label_6`), largest component = the head. Other components (table, head
holder, cables) are set to air where they come near the head's bounding box, then the volume is cut to the
head's bounding box plus a margin.
"""

from __future__ import annotations

import numpy as np

from fmct.io.errors import SkipScan
from fmct.io.volume import AIR_HU, Volume
from fmct.preprocess.geometry import memory_order
from fmct.preprocess.morphology import bounding_box, dilate_cross, label_6, largest_label

#: Voxels per block when copying the crop out (bounds temporaries; blocks a transposed read).
_COPY_BLOCK = 65_536


def _coarse_stride(spacing: tuple[float, float, float], target_mm: float = 2.0) -> tuple[int, int, int]:
    return tuple(max(1, int(round(target_mm / s))) for s in spacing)  # type: ignore[return-value]


def _above(values: np.ndarray, threshold: float) -> np.ndarray:
    """``values > threshold``; for integer ``values`` compared with ``floor(threshold)`` in their own dtype
    (the same answer for integers, without a float64 copy of each value)."""
    if values.dtype.kind in "iu":
        info, floor = np.iinfo(values.dtype), np.floor(threshold)
        if info.min <= floor <= info.max:
            return values > values.dtype.type(floor)
    return values > threshold


def head_mask_coarse(
    array: np.ndarray, threshold_hu: float, stride: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Coarse masks of the head and of the other bodies above ``threshold_hu``.

    The components are labelled over the mask's memory order (a C-contiguous view: ``ndimage.label`` is 2-3x
    faster there than on a strided mask); which component is the head is the same as labelling in C order
    of ``array``'s axes (ties on size resolved as that labelling would, see :func:`fmct.preprocess.morphology.largest_label`).

    Returns:
        ``(head, others)``: bool arrays of shape ``ceil(shape / stride)``.

    Raises:
        SkipScan: nothing above the threshold (an empty or non-CT image).
    """
    coarse = _above(array[:: stride[0], :: stride[1], :: stride[2]], threshold_hu)
    order = memory_order(coarse)
    in_memory = np.ascontiguousarray(coarse.transpose(order))  # a view when the mask is laid out so
    labels, n = label_6(in_memory)
    if n == 0:
        raise SkipScan(f"no foreground above {threshold_hu:g} HU (empty image?)")
    if n == 1:  # one body (the usual case once cropped): it is the head, nothing else
        return coarse, np.zeros_like(coarse)
    sizes = np.bincount(labels[in_memory], minlength=n + 1)
    labels = labels.transpose(np.argsort(order))
    head = labels == largest_label(labels, sizes)
    return head, coarse & ~head


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


def crop_view(volume: Volume, box: list[list[int]]) -> Volume:
    """The sub-volume ``box`` (a view, no copy) with its affine origin moved to the box corner."""
    shift = np.eye(4)
    shift[:3, 3] = [lo for lo, _ in box]
    sl = tuple(slice(lo, hi) for lo, hi in box)
    return Volume(volume.array[sl], volume.affine @ shift, dict(volume.meta))


def _copy_c(src: np.ndarray, to_int16: bool, saturate: bool = True) -> np.ndarray:
    """C-ordered copy of ``src`` (``(X, Y, Z)``, any layout), float32, or (``to_int16``) rounded to nearest and
    saturated to int16 (``np.rint`` then clip, as :func:`fmct.preprocess.pipeline.preprocess` stores).
    Copied in blocks of ``16 x n x Z`` voxels, so a transposed source is read a cache line at a time and
    temporaries stay in the CPU cache. Without ``saturate`` (the values are known to round into int16) each
    ``(X, Z)`` plane is rounded straight into the output, one pass (~1.5x faster), unless Y is the source's
    fastest axis in memory (a plane would then be read across cache lines: the blocks, without the clip)."""
    y_fastest = abs(src.strides[1]) == min(abs(s) for s in src.strides)
    if to_int16 and not saturate and not y_fastest:
        out = np.empty(src.shape, dtype=np.int16)
        for y in range(src.shape[1]):
            np.rint(src[:, y], out=out[:, y], casting="unsafe")
        return out
    out = np.empty(src.shape, dtype=np.int16 if to_int16 else np.float32)
    bx = 16
    by = max(1, _COPY_BLOCK // max(bx * src.shape[2], 1))
    ftype = src.dtype if src.dtype.kind == "f" else np.dtype(np.float32)
    block = np.empty((bx, by, src.shape[2]), dtype=ftype)  # C-ordered: the transposing read lands here
    for x0 in range(0, src.shape[0], bx):
        for y0 in range(0, src.shape[1], by):
            part = src[x0 : x0 + bx, y0 : y0 + by]
            if to_int16:
                tmp = block[: part.shape[0], : part.shape[1]]
                np.rint(part, out=tmp)
                if saturate:
                    np.clip(tmp, -32768, 32767, out=tmp)
                part = tmp
            out[x0 : x0 + bx, y0 : y0 + by] = part
    return out


def _removal_window(others: np.ndarray, head: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Where other bodies are removed, on the coarse grid: ``(window, mask)`` with ``mask`` the coarse
    voxels of ``window`` that are next to another body (one-voxel dilation) and not within two voxels of the
    head; ``None`` when there are no other bodies. The same voxels as dilating over the whole grid: the
    window is the other bodies' box grown by the dilations' reach (one voxel for them, two more for the
    head), clipped to the grid."""
    win = bounding_box(others, grow=1)
    if win is None:
        return None
    ctx = tuple(
        slice(max(w.start - 2, 0), min(w.stop + 2, s)) for w, s in zip(win, others.shape, strict=True)
    )
    inner = tuple(slice(w.start - c.start, w.stop - c.start) for w, c in zip(win, ctx, strict=True))
    near_head = dilate_cross(head[ctx], iterations=2)[inner]
    return win, dilate_cross(others[win]) & ~near_head


def crop_head(
    volume: Volume,
    threshold_hu: float = -500.0,
    margin_mm: float = 5.0,
    to_int16: bool = False,
    value_range: tuple[float, float] | None = None,
) -> tuple[Volume, list]:
    """Crop ``volume`` to the head (largest body above ``threshold_hu``) with a margin.

    Args:
        volume: ``(X, Y, Z)`` float HU, any spacing (the mask is built at ~2 mm).
        threshold_hu: foreground threshold (air and foam are below it, skin, fat, bone above).
        margin_mm: margin kept around the head's bounding box, in mm.
        to_int16: return the crop rounded to nearest and saturated to int16 (what the store keeps) instead
            of float32: the same values as rounding the float32 crop, without its float32 copy.
        value_range: ``(lo, hi)`` HU that every value of ``volume`` lies within, up to float32 rounding (e.g.
            resampled from values clipped to it); within int16 the saturation is skipped (nothing to saturate:
            the same int16 values, faster).

    Returns:
        ``(cropped, box)``: the cropped volume (a C-ordered float32, or int16, copy; other bodies inside the
        box set to air; affine origin moved to the box corner) and ``box = [[lo, hi), ...]`` in source voxel
        indices.
    """
    box, head, others, stride = head_box(volume.array, volume.spacing, threshold_hu, margin_mm)
    cropped = crop_view(volume, box)
    fits = value_range is not None and -32768.0 <= min(value_range) and max(value_range) <= 32767.0
    out = _copy_c(cropped.array, to_int16, saturate=not fits)
    cbox = tuple(slice(lo // st, -(-hi // st)) for (lo, hi), st in zip(box, stride, strict=True))
    found = _removal_window(others[cbox], head[cbox])
    if found is not None:
        # blocks of other bodies (grown by one coarse voxel to catch their edges), never near the head;
        # each output voxel takes the value of the coarse voxel it falls in (only the window's are visited)
        win, remove = found
        sub = []
        for axis, ((lo, hi), st, sl, w) in enumerate(zip(box, stride, cbox, win, strict=True)):
            coarse = np.arange(lo, hi) // st - sl.start  # non-decreasing, every window index present
            a, b = np.searchsorted(coarse, [w.start, w.stop])
            remove = np.repeat(remove, np.bincount(coarse[a:b] - w.start), axis=axis)
            sub.append(slice(int(a), int(b)))
        np.copyto(out[tuple(sub)], out.dtype.type(AIR_HU), where=remove)
    return Volume(out, cropped.affine, cropped.meta), box
