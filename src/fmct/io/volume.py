"""The in-memory scan: a 3D array of Hounsfield units with its voxel-to-world affine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Air in Hounsfield units: what padding, resampling outside the scan and removed voxels are filled with.
AIR_HU = -1000.0


@dataclass
class Volume:
    """A CT volume in world space.

    Attributes:
        array: ``(X, Y, Z)`` voxel values (HU). ``float32`` after reading (a DICOM series: ``int16`` when its
            rescale gives integer HU that fit, the same values), ``int16`` once stored.
        affine: ``(4, 4)`` float64 matrix mapping voxel indices ``(i, j, k, 1)`` to RAS+ world
            coordinates in mm (the NIfTI convention).
        meta: de-identified facts about the source (never patient names, IDs or birth dates):
            e.g. ``source_kind``, ``series_uid_hash``, ``slice_thickness``, ``manufacturer``, ``warnings``.
    """

    array: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.array.ndim != 3:
            raise ValueError(f"Volume.array must be 3D (X, Y, Z), got shape {self.array.shape}")
        if self.affine.shape != (4, 4):
            raise ValueError(f"Volume.affine must be 4x4, got {self.affine.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the array axes (column norms of the affine)."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def direction(self) -> np.ndarray:
        """``(3, 3)`` unit direction cosines (columns = array axes in RAS world)."""
        return self.affine[:3, :3] / np.asarray(self.spacing)[None, :]

    @property
    def origin(self) -> np.ndarray:
        """World position (RAS mm) of voxel ``(0, 0, 0)``."""
        return self.affine[:3, 3].copy()

    @property
    def orientation(self) -> str:
        """Axis codes of the array axes in world space, e.g. ``"RAS"`` (nibabel's ``aff2axcodes``)."""
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))

    def __repr__(self) -> str:
        a = self.array
        rng = f"{float(a.min()):.0f} to {float(a.max()):.0f} HU" if a.size else "empty"
        sp = "x".join(f"{v:.3g}" for v in self.spacing)
        return f"Volume(shape={self.shape}, spacing={sp} mm, orientation={self.orientation}, {rng}, dtype={a.dtype})"

    def to_nifti(self, path: str | Path) -> Path:
        """Write as NIfTI (``.nii`` / ``.nii.gz``) with this affine, atomically; ``meta`` is not stored."""
        from fmct.io.nifti import write_nifti

        return write_nifti(self.array, self.affine, path)

    @classmethod
    def from_nifti(cls, path: str | Path) -> Volume:
        """Read a 3D NIfTI (:func:`fmct.io.nifti.read_nifti`: float32 HU, nibabel's affine)."""
        from fmct.io.nifti import read_nifti

        return read_nifti(path)
