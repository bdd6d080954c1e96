"""The finding masks of the synthetic cohort and the mask of one finding in them.

``fmct synth --masks`` (``generate_cohort(masks=True)``) writes ``masks/<scan_id>.nii.gz``: a uint8 label map
on the scan's own grid and affine (voxel -> RAS mm), one value per finding (:data:`MASK_VALUES`, 0 = none).
``ich`` has no value of its own: its mask is the union of the five bleeds (:data:`fmct.labels.ICH_SUBTYPES`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmct.labels import ICH_SUBTYPES
from fmct.synth.findings import MASK_VALUES


@dataclass(frozen=True)
class LesionMask:
    """A finding label map ``labels (X, Y, Z)`` (uint8, :data:`MASK_VALUES`) and its voxel -> RAS mm
    ``affine``."""

    labels: np.ndarray
    affine: np.ndarray

    def of(self, finding: str) -> np.ndarray:
        """``(X, Y, Z)`` bool mask of ``finding`` (empty when the finding is absent or has no mask)."""
        return finding_mask(self.labels, finding)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (mm) along the three array axes."""
        x, y, z = (float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))
        return x, y, z


def finding_mask(label_map: np.ndarray, finding: str) -> np.ndarray:
    """Voxels of ``finding`` in a label map: ``label_map == MASK_VALUES[finding]`` (``ich``: any bleed)."""
    if finding == "ich":
        return np.isin(label_map, [MASK_VALUES[s] for s in ICH_SUBTYPES])
    if finding not in MASK_VALUES:
        raise ValueError(f"unknown finding {finding!r}; masks hold {sorted(MASK_VALUES)} and ich")
    return np.asarray(label_map) == MASK_VALUES[finding]


def read_mask(path: str | Path) -> LesionMask:
    """Read a ``masks/<scan_id>.nii.gz`` label map written by the synthetic cohort."""
    import nibabel as nib

    img = nib.load(str(path))
    return LesionMask(np.asarray(img.dataobj, dtype=np.uint8), np.asarray(img.affine, dtype=np.float64))
