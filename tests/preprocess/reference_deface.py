"""``fmct.preprocess.deface``'s masks before the defacing speed work (issue 27), kept verbatim as the reference
the faster ones are tested against (bit-identical masks). Not used by fmct itself."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


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
