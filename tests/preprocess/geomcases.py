"""Affines the geometry tests share: LPS, permuted, upsampled, gantry-tilted and rotated grids."""

from __future__ import annotations

import numpy as np


def affine_from(cols, origin) -> np.ndarray:
    """``(4, 4)`` affine whose voxel-axis columns are the rows given, and whose origin is ``origin`` (mm)."""
    a = np.eye(4)
    a[:3, :3] = np.asarray(cols, dtype=np.float64).T
    a[:3, 3] = origin
    return a


def rot_z(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


#: name -> (shape, affine)
CASES = {
    # LPS-like: array x runs to the left, y to the back; anisotropic 0.7 x 0.7 x 2.5 mm
    "lps_anisotropic": (
        (100, 100, 22),
        affine_from([[-0.7, 0, 0], [0, -0.7, 0], [0, 0, 2.5]], [35, 35, -25]),
    ),
    # permuted: array axes are (S, R, A), z flipped
    "permuted": ((26, 64, 60), affine_from([[0, 0, -2.0], [1.0, 0, 0], [0, 1.1, 0]], [-32, -33, 25])),
    # gantry tilt 20 degrees: slices shear along y
    "tilted": (
        (64, 64, 24),
        affine_from([[1.0, 0, 0], [0, 1.0, 0], [0, 2.5 * np.tan(np.deg2rad(20)), 2.5]], [-32, -45, -29]),
    ),
    # rotated 30 degrees about z
    "rotated": (
        (64, 64, 30),
        np.r_[np.c_[rot_z(30) * [1.0, 1.0, 2.0], [10.0, -40.0, -29.0]], [[0, 0, 0, 1]]],
    ),
}
