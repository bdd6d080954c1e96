"""Refuse volumes whose values are not Hounsfield units before they are stored as if they were.

A head CT always holds air around the head (about -1000 HU, or padding at -1024 to -3024 outside the
scan circle). A volume with no voxel below :data:`MAX_AIR_HU` is almost always one whose stored values
were never rescaled: a DICOM series without RescaleIntercept (CT images store 0 … 4095 with an intercept
of -1024), or a NIfTI saved as raw or normalised values. Without this check such a scan is ingested
"ok" with every tissue shifted by about +1024 HU, and every window (brain, blood, bone) reads garbage.
"""

from __future__ import annotations

import numpy as np

from fmct.io.errors import InvalidScan

#: The darkest voxel of a head CT in HU must be below this (air is about -1000).
MAX_AIR_HU = -500.0


def check_looks_like_hu(array: np.ndarray) -> None:
    """Raise :class:`InvalidScan` when ``array`` (any shape, values meant as HU) holds no air.

    Args:
        array: voxel values, e.g. ``(X, Y, Z)`` float32 HU.

    Raises:
        InvalidScan: the lowest value is above :data:`MAX_AIR_HU`; the reason names it and the likely cause.
    """
    lowest = float(np.min(array))
    if lowest > MAX_AIR_HU:
        raise InvalidScan(
            f"values do not look like HU: no air (lowest value {lowest:.0f}, a head CT has air at about "
            f"-1000 HU); a DICOM series without RescaleIntercept/RescaleSlope, or a NIfTI of raw or "
            f"normalised values?"
        )
