"""Reading scans: DICOM series and NIfTI files into :class:`Volume`.

The readers are imported lazily so that ``import fmct.io`` stays light (no pydicom/nibabel import):
``load_volume`` (:mod:`fmct.io.load`), ``discover`` / ``read_series`` (:mod:`fmct.io.dicom`),
``read_nifti`` (:mod:`fmct.io.nifti`).
"""

from importlib import import_module
from typing import Any

from fmct.io.volume import Volume

__all__ = ["Volume", "discover", "load_volume", "read_nifti", "read_series"]

_LAZY = {
    "load_volume": "fmct.io.load",
    "discover": "fmct.io.dicom",
    "read_series": "fmct.io.dicom",
    "read_nifti": "fmct.io.nifti",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fmct.io' has no attribute {name!r}")
