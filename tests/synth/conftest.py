"""Shared small cohorts for the synth tests (tiny matrices so the folder runs in seconds)."""

from __future__ import annotations

import pytest

from fmct.synth import generate_cohort

#: Prevalences high enough that a handful of scans carries most findings.
RICH = {
    "trauma": 0.6,
    "spontaneous_iph": 0.3,
    "mass": 0.4,
    "infarct": 0.4,
    "hydrocephalus": 0.3,
    "edema": 0.3,
}


@pytest.fixture(scope="session")
def rich() -> dict[str, float]:
    return dict(RICH)


@pytest.fixture(scope="session")
def dicom_cohort(tmp_path_factory):
    """Site c (gantry tilt, signed pixels, intercept 0): 3 scans, 32x32, masks and previews."""
    out = tmp_path_factory.mktemp("cohort_c")
    labels = generate_cohort(
        out, 3, "c", 5, fmt="dicom", masks=True, preview=True, size=32, progress=False, prevalence=RICH
    )
    return out, labels
