"""``fmct.preprocess.deface``'s masks and defacing step before the defacing speed work (issue 27), kept
verbatim as the reference the faster ones are tested against (bit-identical). Not used by fmct itself."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fmct.io.errors import InvalidScan
from fmct.io.volume import AIR_HU, Volume


def _fill_axial(mask: np.ndarray) -> np.ndarray:
    """Fill holes in every axial ``(X, Y)`` slice of a ``(X, Y, Z)`` mask."""
    out = np.empty_like(mask)
    for z in range(mask.shape[2]):
        out[:, :, z] = ndimage.binary_fill_holes(mask[:, :, z])
    return out


def brain_mask(
    hu: np.ndarray, bone_hu: float = 300.0, brain_hu: tuple[float, float] = (0.0, 80.0)
) -> np.ndarray:
    """Brain (intracranial soft tissue, holes filled) of an RAS ``(X, Y, Z)`` HU array; may be empty."""
    bone = ndimage.binary_closing(hu > bone_hu)
    cavity = _fill_axial(bone) & ~bone
    soft = cavity & (hu >= brain_hu[0]) & (hu <= brain_hu[1])
    labels, n = ndimage.label(soft)
    if n == 0:
        return np.zeros_like(soft)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return ndimage.binary_fill_holes(labels == int(np.argmax(sizes)))


def face_mask(brain: np.ndarray, spacing: float, margin_mm: float) -> np.ndarray:
    """Voxels to remove, given the brain mask of an RAS grid with isotropic ``spacing`` mm."""
    dist = ndimage.distance_transform_edt(~brain, sampling=spacing)
    protected = dist <= margin_mm
    nx, ny, nz = brain.shape
    yy = np.arange(ny)
    has = brain.any(axis=1)  # (X, Z) rows holding brain
    front = np.where(has, ny - 1 - np.argmax(brain[:, ::-1, :], axis=1), 0).astype(np.float64)
    coords = np.argwhere(brain)
    yc, zc = coords[:, 1].mean(), coords[:, 2].mean()
    below = np.arange(nz)[None, :] < zc
    front = np.where(has, front, np.where(below, yc, np.inf))  # (X, Z)
    anterior = yy[None, :, None] > front[:, None, :]
    return anterior & ~protected


def deface(
    volume: Volume,
    margin_mm: float = 15.0,
    bone_hu: float = 300.0,
    brain_hu: tuple[float, float] = (0.0, 80.0),
    min_brain_ml: float = 100.0,
) -> tuple[Volume, dict]:
    """The whole defacing step before the speed work (same arguments and result as today's)."""
    spacing = volume.spacing
    if max(spacing) - min(spacing) > 1e-3 * max(spacing):
        raise ValueError(f"deface needs an isotropic volume, got spacing {spacing}")
    s = spacing[0]
    f = max(1, int(round(2.0 / s)))  # morphology at ~2 mm
    coarse = volume.array[::f, ::f, ::f]
    brain = brain_mask(coarse, bone_hu, brain_hu)
    voxel_ml = (s * f) ** 3 / 1000.0
    brain_ml = float(brain.sum()) * voxel_ml
    if brain_ml < min_brain_ml:
        raise InvalidScan(
            f"deface: no brain found inside the skull ({brain_ml:.0f} ml < {min_brain_ml:g} ml)"
        )
    face = face_mask(brain, s * f, margin_mm)
    idx = np.ix_(*[np.arange(n) // f for n in volume.shape])
    full = face[idx]
    out = np.array(volume.array, dtype=np.float32, copy=True)
    removed = full & (out > AIR_HU + 1)
    out[full] = AIR_HU
    info = {"brain_ml": round(brain_ml, 1), "removed_ml": round(float(removed.sum()) * s**3 / 1000.0, 1)}
    return Volume(out, volume.affine, dict(volume.meta)), info
