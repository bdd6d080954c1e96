"""Reading scans: DICOM series and NIfTI files into :class:`Volume`."""

from fmct.io.volume import Volume

__all__ = ["Volume"]
