"""synth_scan: determinism, label/mask consistency, HU of tissues and findings, geometry."""

from __future__ import annotations

import numpy as np
import pytest

from fmct.labels import FINDINGS, ICH_SUBTYPES
from fmct.synth import MASK_VALUES, synth_scan
from fmct.synth.anatomy import AIR, BONE, CSF, GREY, VENTRICLE, WHITE, Grid, render_head, sample_head
from fmct.synth.findings import paint, sample_plan
from fmct.synth.scan import scan_rng


def test_same_arguments_same_scan():
    a = synth_scan(3, "a", 11, size=32)
    b = synth_scan(3, "a", 11, size=32)
    assert np.array_equal(a.volume.array, b.volume.array)
    assert np.array_equal(a.volume.affine, b.volume.affine)
    assert a.labels == b.labels and a.sizes == b.sizes
    assert np.array_equal(a.mask, b.mask)
    c = synth_scan(4, "a", 11, size=32)
    assert not np.array_equal(a.volume.array[:, :, :10], c.volume.array[:, :, :10])


@pytest.mark.parametrize("site", ["a", "b", "c"])
def test_labels_masks_sizes_agree(site, rich):
    positives = set()
    for i in range(4):
        s = synth_scan(i, site, 2, size=32, prevalence=rich)
        assert set(s.labels) == set(FINDINGS) and set(s.sizes) == set(FINDINGS)
        assert s.labels["ich"] == int(any(s.labels[f] for f in ICH_SUBTYPES))
        assert s.mask.shape == s.volume.shape and s.mask.dtype == np.uint8
        for f in FINDINGS:
            if f == "ich":
                continue
            present = bool((s.mask == MASK_VALUES[f]).any())
            assert present == bool(s.labels[f]), (site, i, f)
            assert (s.sizes[f] > 0) == bool(s.labels[f]), (site, i, f, s.sizes[f])
            if s.labels[f]:
                positives.add(f)
        assert set(np.unique(s.mask)) <= {0, *MASK_VALUES.values()}
    assert len(positives) >= 2  # the rich prevalences really produce findings


def test_tissue_hu_ranges_noise_free():
    rng = scan_rng(0, "a", 0)
    head = sample_head(rng)
    anat = render_head(head, Grid.covering(2.0))
    med = {c: float(np.median(anat.hu[anat.tissue == c])) for c in (AIR, CSF, GREY, WHITE, VENTRICLE)}
    assert med[AIR] == -1000
    assert 0 <= med[CSF] <= 10 and 0 <= med[VENTRICLE] <= 10
    assert 36 <= med[GREY] <= 40 and 26 <= med[WHITE] <= 30
    bone = anat.hu[anat.tissue == BONE]
    assert 700 <= np.median(bone) <= 1800 and bone.min() >= 400 and bone.max() <= 1800
    # diploe is less dense than the tables
    assert np.percentile(bone, 10) < 800 and np.percentile(bone, 90) > 1300


def test_finding_hu_ranges(rich):
    seen = set()
    for i in range(16):
        rng = scan_rng(i, "a", 99)
        head = sample_head(rng)
        plan = sample_plan(rng, head, rich)
        anat = render_head(head, Grid.covering(2.5), plan.shift, plan.shift_y)
        mask, labels, _ = paint(anat, plan, rng)
        for f, lo, hi in [
            ("iph", 50, 90),
            ("ivh", 45, 80),
            ("edh", 55, 90),
            ("sah", 42, 75),
            ("mass", 14, 50),
            ("edema", 14, 24),
            ("infarct", 12, 28),
        ]:
            if labels[f]:
                v = anat.hu[mask == MASK_VALUES[f]]
                assert lo - 0.5 <= np.median(v) <= hi + 0.5, (f, np.median(v))
                seen.add(f)
        if labels["sdh"]:
            v = np.median(anat.hu[mask == MASK_VALUES["sdh"]])
            assert 25 <= v <= 45 or 50 <= v <= 90
            seen.add("sdh")
        if labels["fracture"]:  # the break replaces bone by soft tissue
            crack = np.median(anat.hu[mask == MASK_VALUES["fracture"]])
            assert crack < np.median(anat.hu[anat.tissue == BONE]) - 200
            seen.add("fracture")
        if labels["midline_shift"]:
            assert abs(plan.shift) > 3
    assert len(seen) >= 6


def test_acquired_image_is_ct_like():
    s = synth_scan(1, "a", 0, size=48)
    v = s.volume.array
    assert v.dtype == np.float32 and v.min() >= -1024 and v.max() <= 3071
    corner = v[:4, :4, :]
    assert abs(float(corner.mean()) + 1000) < 15  # air around the head
    assert (v > 700).mean() > 0.01  # some skull
    np.testing.assert_array_equal(v, s.stored.astype(np.float32) - 1024.0)  # site a: intercept -1024


def test_affine_and_spacing_follow_site():
    a = synth_scan(0, "a", 0, size=64)
    fov = a.volume.spacing[0] * 64
    assert 225 <= fov <= 240
    b = synth_scan(0, "b", 0, size=256 // 4)
    assert b.geometry.thickness_mm >= 5.0 and b.volume.spacing[2] == pytest.approx(5.0, abs=0.01)
    c = synth_scan(0, "c", 0, size=32)
    assert 12 <= c.geometry.tilt_deg <= 20
    # DICOM geometry is sheared (slices move along the table), NIfTI geometry is orthogonal
    col, step = c.volume.affine[:3, 1], c.volume.affine[:3, 2]
    assert abs(np.dot(col, step)) > 1e-3
    cn = synth_scan(0, "c", 0, size=32, fmt="nifti")
    r = cn.volume.affine[:3, :3] / np.linalg.norm(cn.volume.affine[:3, :3], axis=0)
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-9)


def test_unknown_site_and_bad_prevalence():
    with pytest.raises(ValueError, match="unknown site"):
        synth_scan(0, "z", 0, size=32)
    with pytest.raises(ValueError, match="unknown prevalence"):
        synth_scan(0, "a", 0, size=32, prevalence={"bogus": 0.5})


@pytest.mark.parametrize(("site", "seed"), [("a", 77), ("b", 3), ("c", 0)])
def test_generator_parameters_are_those_of_the_rendered_scans(site: str, seed: int) -> None:
    """Drawn without rendering, the pose and anatomy equal the meta of the scans synth_scan renders, at any
    matrix size (row i = scan i of ``fmct synth --site SITE --seed SEED``)."""
    from fmct.synth import GENERATOR_PARAMETERS, generator_parameters

    params = generator_parameters(range(3), site, seed)
    assert params.shape == (3, len(GENERATOR_PARAMETERS)) and params.dtype == np.float64
    for i, size in enumerate((32, 48, 32)):
        meta = synth_scan(i, site, seed, size=size, with_mask=False).meta
        a = meta["anatomy"]
        expected = [*meta["pose_deg"], *a["axes_mm"], a["bone_mm"], a["atrophy"], a["ventricle_scale"]]
        assert params[i].tolist() == expected
    assert generator_parameters([], site, seed).shape == (0, len(GENERATOR_PARAMETERS))
