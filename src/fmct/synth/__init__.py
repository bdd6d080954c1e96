"""Synthetic head-CT cohorts: procedural anatomy, correlated findings, site-specific acquisition.

Public API: :func:`generate_cohort` (write DICOM/NIfTI + labels.csv + masks + previews),
:func:`synth_scan` (one scan in memory as a :class:`SynthScan`) and :func:`generator_parameters` (the pose
and anatomy of scans, without rendering them). Sites are in :data:`SITES`, default finding prevalences in
:data:`DEFAULT_PREVALENCE`, size units in :data:`SIZE_UNITS`;
the finding masks it writes are read by :func:`read_mask`.
"""

from fmct.synth.cohort import LABEL_COLUMNS, generate_cohort, scan_ids
from fmct.synth.findings import DEFAULT_PREVALENCE, MASK_VALUES, SIZE_UNITS
from fmct.synth.masks import LesionMask, finding_mask, read_mask
from fmct.synth.scan import GENERATOR_PARAMETERS, SynthScan, generator_parameters, synth_scan
from fmct.synth.sites import SITES, Site, get_site

__all__ = [
    "DEFAULT_PREVALENCE",
    "GENERATOR_PARAMETERS",
    "LABEL_COLUMNS",
    "LesionMask",
    "MASK_VALUES",
    "SITES",
    "SIZE_UNITS",
    "Site",
    "SynthScan",
    "finding_mask",
    "generate_cohort",
    "generator_parameters",
    "get_site",
    "read_mask",
    "scan_ids",
    "synth_scan",
]
