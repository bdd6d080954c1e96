"""Defacing: set the face (soft tissue and facial bones in front of and below the brain) to air.

Works on an RAS volume (``+Y`` anterior, ``+Z`` superior), at ~2 mm for the morphology:

1. bone = voxels above ``bone_hu``; the intracranial cavity = holes of the bone mask filled slice by
   slice (axial), minus the bone;
2. brain = the largest connected body of soft tissue (``brain_hu`` range) inside the cavity, holes filled;
3. protected = everything within ``margin_mm`` of the brain (the skull vault and scalp over it);
4. face = not protected, and in front of the brain: for each left-right/inferior-superior row
   ``(x, z)``, voxels anterior to the brain's most anterior voxel in that row; rows without brain below
   the brain's centre count from the brain's centre (so the jaw, mouth and pharynx go, the back of the
   neck stays); rows without brain above the centre are never touched.
"""

from __future__ import annotations

import numpy as np

from fmct.io.errors import InvalidScan
from fmct.io.volume import AIR_HU, Volume
from fmct.preprocess.morphology import (
    bounding_box,
    close_cross,
    fill_holes,
    fill_holes_axial,
    label_6,
    largest_label,
    within_distance,
)


def brain_mask(
    hu: np.ndarray, bone_hu: float = 300.0, brain_hu: tuple[float, float] = (0.0, 80.0)
) -> np.ndarray:
    """Brain (intracranial soft tissue, holes filled) of an RAS ``(X, Y, Z)`` HU array; may be empty."""
    bone = close_cross(hu > bone_hu)
    cavity = fill_holes_axial(bone) & ~bone
    soft = cavity & (hu >= brain_hu[0]) & (hu <= brain_hu[1])
    brain = np.zeros_like(soft)
    box = bounding_box(soft)  # labelled over soft tissue's box: the same labels, numbered in the same order
    if box is None:
        return brain
    labels, _ = label_6(soft[box])
    brain[box] = fill_holes(labels == largest_label(labels, np.bincount(labels.ravel())))
    return brain


def face_mask(brain: np.ndarray, spacing: float, margin_mm: float) -> np.ndarray:
    """Voxels to remove, given the brain mask of an RAS grid with isotropic ``spacing`` mm."""
    nx, ny, nz = brain.shape
    n = int(np.count_nonzero(brain))
    if n == 0:
        return np.zeros_like(brain)
    protected = within_distance(brain, spacing, margin_mm)  # distance_transform_edt(~brain) <= margin
    yy = np.arange(ny)
    has = brain.any(axis=1)  # (X, Z) rows holding brain
    front = np.where(has, ny - 1 - np.argmax(brain[:, ::-1, :], axis=1), 0).astype(np.float64)
    # the brain's centre (Y, Z): exact integer sums over the projections, divided as numpy's mean does
    yc = float(np.dot(np.count_nonzero(brain, axis=(0, 2)), yy)) / n
    zc = float(np.dot(np.count_nonzero(brain, axis=(0, 1)), np.arange(nz))) / n
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
    """Set the face of an RAS, isotropic volume to air; the brain and the cranial vault stay intact.

    Args:
        volume: RAS ``(X, Y, Z)`` HU with isotropic spacing (the output of the geometry step).
        margin_mm: tissue within this distance of the brain is kept (skull and scalp over the brain).
        bone_hu: bone threshold for the skull.
        brain_hu: soft-tissue HU range of the brain.
        min_brain_ml: below this brain volume the scan is refused (cannot deface safely).

    Returns:
        ``(defaced, info)``: a new volume and ``{"brain_ml", "removed_ml"}``.

    Raises:
        InvalidScan: no brain found (defacing was asked for, so the face must not be stored).
    """
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
    nx, ny, nz = volume.shape  # each voxel takes the coarse voxel it falls in: repeat f times per axis
    full = face if f == 1 else face.repeat(f, 0).repeat(f, 1).repeat(f, 2)[:nx, :ny, :nz]
    out = np.array(volume.array, dtype=np.float32, copy=True)
    removed = np.count_nonzero(full & (out > AIR_HU + 1))
    np.copyto(out, np.float32(AIR_HU), where=full)
    info = {"brain_ml": round(brain_ml, 1), "removed_ml": round(float(removed) * s**3 / 1000.0, 1)}
    return Volume(out, volume.affine, dict(volume.meta)), info
