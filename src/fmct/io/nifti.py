"""NIfTI files: read one into a :class:`~fmct.io.volume.Volume` (float32 HU, nibabel's affine: sform if set,
else qform) and write arrays with their affine (atomically, byte-reproducibly)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fmct.io.errors import InvalidScan
from fmct.io.ids import scan_id_from_nifti
from fmct.io.volume import Volume

#: File name endings of NIfTI files (case-insensitive).
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | os.PathLike) -> bool:
    """Whether ``path``'s name ends in ``.nii`` or ``.nii.gz`` (any case)."""
    return Path(path).name.lower().endswith(NIFTI_SUFFIXES)


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


def write_nifti(
    array: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    dtype: str | None = None,
    description: str = "",
) -> Path:
    """Write ``array (X, Y, Z)`` (or ``(X, Y, Z, T)``: volumes on one grid) with its voxel -> RAS mm
    ``affine`` as NIfTI-1, atomically (a temporary file in the same folder, then ``os.replace``) and
    byte-reproducibly (no time stamps).

    The sform carries the affine; the qform too when the affine is a rotation times a scale (a sheared,
    gantry-tilted grid has no qform). Units are mm. ``dtype`` (e.g. ``"uint8"`` for maps in ``[0, 1]``) is the
    stored type, nibabel picking slope/intercept; default: the array's own. ``description`` (at most 80 ASCII
    characters) goes into the header's ``descrip``, which viewers show.

    Returns:
        ``path``.
    """
    import nibabel as nib

    path = Path(path)
    affine = np.asarray(affine, dtype=np.float64)
    img = nib.Nifti1Image(np.asarray(array) if dtype is None else np.asarray(array, dtype=np.float32), affine)
    rot = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    orthogonal = np.allclose(rot.T @ rot, np.eye(3), atol=1e-6)
    img.set_sform(affine, code=1)
    img.set_qform(affine if orthogonal else None, code=1 if orthogonal else 0)
    img.header.set_xyzt_units("mm", "sec")
    if dtype is not None:
        img.header.set_data_dtype(np.dtype(dtype))
    if description:
        img.header["descrip"] = description.encode("ascii", "replace")[:80]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")  # a fixed name: gzip records it, and the bytes must not vary
    try:
        nib.save(img, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
