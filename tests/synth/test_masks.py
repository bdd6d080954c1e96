"""Reading the cohort's finding masks: one finding's voxels, ich as the union of the bleeds."""

import csv

import numpy as np
import pytest

from fmct.labels import FINDINGS, ICH_SUBTYPES
from fmct.synth import MASK_VALUES, finding_mask, read_mask


def test_finding_mask_and_ich_as_the_union_of_bleeds():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[0, 0, 0] = MASK_VALUES["sdh"]
    labels[1, 1, 1] = MASK_VALUES["iph"]
    labels[2, 2, 2] = MASK_VALUES["infarct"]
    assert np.argwhere(finding_mask(labels, "sdh")).tolist() == [[0, 0, 0]]
    assert np.argwhere(finding_mask(labels, "ich")).tolist() == [[0, 0, 0], [1, 1, 1]]
    assert not finding_mask(labels, "edh").any()
    with pytest.raises(ValueError, match="unknown finding 'tumour'"):
        finding_mask(labels, "tumour")


def test_read_mask_gives_every_labelled_finding_on_the_scans_grid(dicom_cohort):
    out, labels_csv = dicom_cohort
    with open(labels_csv) as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        lesions = read_mask(out / "masks" / f"{row['scan_id']}.nii.gz")
        assert lesions.labels.dtype == np.uint8 and lesions.affine.shape == (4, 4)
        for f in FINDINGS:
            assert lesions.of(f).any() == (row[f] == "1"), f
        assert lesions.of("ich").any() == any(row[s] == "1" for s in ICH_SUBTYPES)
        assert all(s > 0 for s in lesions.spacing)
