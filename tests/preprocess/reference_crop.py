"""``fmct.preprocess.crop.crop_head`` before the ingest speed work (issue 27), kept verbatim as the reference
the faster one is tested against (bit-identical). Not used by fmct itself."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fmct.io.volume import Volume
from fmct.preprocess.crop import AIR_HU, crop_view, head_box  # unchanged by the speed work: shared


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
