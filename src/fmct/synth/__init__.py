"""Synthetic head-CT cohorts: procedural anatomy, correlated findings, site-specific acquisition.

Public API: :func:`generate_cohort` (write DICOM/NIfTI + labels.csv + masks + previews) and
:func:`synth_scan` (one scan in memory as a :class:`SynthScan`). Sites are in :data:`SITES`, default
finding prevalences in :data:`DEFAULT_PREVALENCE`, size units in :data:`SIZE_UNITS`; the finding masks it
writes are read by :func:`read_mask`.
"""

from fmct.synth.cohort import LABEL_COLUMNS, generate_cohort, scan_ids
from fmct.synth.findings import DEFAULT_PREVALENCE, MASK_VALUES, SIZE_UNITS
from fmct.synth.masks import LesionMask, finding_mask, read_mask
from fmct.synth.scan import SynthScan, synth_scan
from fmct.synth.sites import SITES, Site, get_site

__all__ = [
    "DEFAULT_PREVALENCE",
    "LABEL_COLUMNS",
    "LesionMask",
    "MASK_VALUES",
    "SITES",
    "SIZE_UNITS",
    "Site",
    "SynthScan",
    "finding_mask",
    "generate_cohort",
    "get_site",
    "read_mask",
    "scan_ids",
    "synth_scan",
]
