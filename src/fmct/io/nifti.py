"""NIfTI file -> :class:`~fmct.io.volume.Volume` (float32 HU, nibabel's affine: sform if set, else qform)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fmct.io.errors import InvalidScan
from fmct.io.ids import scan_id_from_nifti
from fmct.io.volume import Volume


def read_nifti(path: str | os.PathLike) -> Volume:
    """Read a 3D NIfTI (``.nii`` / ``.nii.gz``) scan.

    The array is ``(X, Y, Z)`` float32 in the file's voxel order (scl_slope/scl_inter applied); ``affine``
    is nibabel's best affine (sform when its code is set, else qform), mapping voxels to RAS mm.
    A 4D file holding a single volume (and any trailing singleton dimensions) is squeezed to 3D.

    Raises:
        InvalidScan: unreadable file, not 3D, several volumes, NaN/Inf values or a singular affine.
    """
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(str(path))
        header = img.header
        shape = tuple(int(s) for s in img.shape)
    except Exception as exc:  # nibabel raises many types for bad files
        raise InvalidScan(f"unreadable NIfTI: {type(exc).__name__}: {str(exc)[:120]}") from exc
    if len(shape) < 3 or any(s < 1 for s in shape):
        raise InvalidScan(f"NIfTI is not a 3D volume (shape {shape})")
    if len(shape) > 3:
        if any(s != 1 for s in shape[3:]):
            raise InvalidScan(f"NIfTI holds {int(np.prod(shape[3:]))} volumes (shape {shape}); expected one")
    try:
        data = np.asarray(img.dataobj, dtype=np.float32)  # scl_slope/scl_inter applied
    except Exception as exc:  # truncated gzip stream, short file ...
        raise InvalidScan(f"unreadable NIfTI data: {type(exc).__name__}: {str(exc)[:120]}") from exc
    data = data.reshape(shape[:3])
    if not np.isfinite(data).all():
        raise InvalidScan("NIfTI contains NaN/Inf voxel values")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InvalidScan("NIfTI affine is singular or not finite")
    warnings = []
    sform_code = int(header["sform_code"]) if "sform_code" in header else 0
    qform_code = int(header["qform_code"]) if "qform_code" in header else 0
    if sform_code == 0 and qform_code == 0:
        warnings.append("no sform/qform in the NIfTI header: orientation unknown, voxel sizes only")
    zooms = header.get_zooms()[:3]
    meta = {
        "source_kind": "nifti",
        "scan_id": scan_id_from_nifti(path),
        "modality": "CT",
        "n_slices": int(shape[2]),
        "pixel_spacing": [float(zooms[1]), float(zooms[0])],
        "slice_spacing": float(zooms[2]),
        "warnings": warnings,
    }
    return Volume(array=data, affine=affine, meta=meta)
