"""The fast paths of fmct.synth agree with the reference implementations they replace."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from fmct.synth import synth_scan
from fmct.synth.acquire import LinearSampler, resample
from fmct.synth.anatomy import Grid, render_head, sample_head
from fmct.synth.dicom_writer import slice_major, write_dicom_series
from fmct.synth.scan import scan_rng
from fmct.synth.sites import get_site


def _scipy_resample(volume, m, out_shape, offsets, cval, start=(0, 0, 0)):
    out = np.zeros(out_shape, dtype=np.float64)
    for off in offsets:
        st = np.asarray(start, dtype=np.float64) + np.array([0.0, 0.0, off])
        out += ndi.affine_transform(
            volume.astype(np.float64),
            m[:3, :3],
            offset=m[:3, :3] @ st + m[:3, 3],
            output_shape=out_shape,
            order=1,
            mode="constant",
            cval=cval,
            prefilter=False,
        )
    return out / len(offsets)


def _random_affine(rng, out_shape, src_shape, scale=0.9):
    """A rotation + scaling mapping the output centre near the source centre."""
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    m = np.eye(4)
    m[:3, :3] = q * scale
    centre_out, centre_src = (np.array(out_shape) - 1) / 2, (np.array(src_shape) - 1) / 2
    m[:3, 3] = centre_src + rng.uniform(-1, 1, size=3) - m[:3, :3] @ centre_out
    return m


@pytest.mark.parametrize("cval", [-1000.0, 0.0])
def test_linear_resample_matches_scipy_constant_mode(cval):
    rng = np.random.default_rng(0)
    # non-cval values on every face: the edge semantics (no blending beyond the edge voxels) matter
    vol = rng.uniform(-500, 1500, size=(13, 11, 9)).astype(np.float32)
    for trial in range(3):
        m = _random_affine(rng, (17, 15, 12), vol.shape)
        offsets = np.array([0.0]) if trial == 0 else np.array([-0.3, 0.0, 0.3])
        start = (0, 0, 0) if trial < 2 else (2, 1, 3)
        got = resample(vol, m, (17, 15, 12), offsets, cval=cval, start=start)
        want = _scipy_resample(vol, m, (17, 15, 12), offsets, cval, start)
        assert got.dtype == np.float32 and got.shape == (17, 15, 12)
        outside = want == cval
        assert outside.mean() > 0.05 and (~outside).mean() > 0.2  # the test covers both regimes
        np.testing.assert_allclose(got, want, atol=0.05)  # HU; float32 coordinates
        assert np.abs(got - want).mean() < 0.05


def test_linear_resample_thin_source_and_empty_output():
    vol = np.ones((1, 4, 4), dtype=np.float32)  # one voxel thick: padded internally
    m = np.eye(4)
    got = resample(vol, m, (3, 4, 4), np.zeros(1), cval=0.0)
    want = _scipy_resample(vol, m, (3, 4, 4), np.zeros(1), 0.0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert resample(vol, m, (0, 4, 4), np.zeros(1), cval=0.0).shape == (0, 4, 4)


@pytest.mark.parametrize("offsets", [np.zeros(1), np.array([-0.4, 0.0, 0.4])])
def test_air_blocks_are_skipped_and_the_result_is_unchanged(offsets):
    """A small head in a large air volume: most output blocks are not sampled, yet every voxel matches scipy
    (blocks next to the object, whose trilinear footprint or slab reaches it, are sampled)."""
    rng = np.random.default_rng(3)
    vol = np.full((60, 64, 56), -1000.0, dtype=np.float32)
    vol[22:35, 25:33, 20:31] = rng.uniform(-100, 1500, size=(13, 8, 11))
    vol[40, 50, 45] = 900.0  # a single voxel: its neighbourhood must still be sampled
    m = _random_affine(rng, (70, 66, 40), vol.shape, scale=0.85)
    sampler = LinearSampler(vol, -1000.0)
    got = sampler.sample(m, (70, 66, 40), offsets)
    want = _scipy_resample(vol, m, (70, 66, 40), offsets, -1000.0)
    assert 0.0 < sampler.sampled_fraction < 0.35
    np.testing.assert_allclose(got, want, atol=0.05)
    every = LinearSampler(vol, -1000.0, skip_air=False)
    np.testing.assert_array_equal(every.sample(m, (70, 66, 40), offsets), got)
    assert every.sampled_fraction == 1.0
    assert (want > -999.0).sum() > 1000 and (got[want == -1000.0] == -1000.0).all()


def test_brain_box_rendering_is_confined_to_the_cavity():
    head = sample_head(scan_rng(0, "a", 0))
    anat = render_head(head, Grid.covering(2.5), shift=4.0)
    brain_classes = [5, 6, 7, 8, 10]  # GREY, WHITE, VENTRICLE, FALX, DEEP_GREY
    inside = np.isin(anat.tissue, brain_classes)
    assert inside.sum() > 1000 and not (inside & ~anat.cavity).any()
    for cls in brain_classes:
        assert (anat.tissue == cls).any(), cls


def test_slice_major_is_the_dicom_pixel_order():
    a = np.random.default_rng(1).integers(-1024, 3000, size=(70, 40, 5)).astype(np.int16)
    got = slice_major(a, "<i2", block=32)
    assert got.flags["C_CONTIGUOUS"] and got.shape == (5, 40, 70)
    np.testing.assert_array_equal(got, a.transpose(2, 1, 0))


@pytest.mark.parametrize("site", ["b", "c"])
def test_fast_writer_bytes_equal_pydicom_save_as(tmp_path, site):
    """Each file equals pydicom's own encoding of the same dataset (read back, saved again)."""
    import pydicom

    st = get_site(site)
    scan = synth_scan(0, site, 4, size=24)
    paths = write_dicom_series(scan, tmp_path / "s", st, 4, 0)
    assert len(paths) == scan.geometry.n_slices
    for k in (0, len(paths) // 2, len(paths) - 1):
        raw = paths[k].read_bytes()
        ds = pydicom.dcmread(paths[k])
        ds.save_as(tmp_path / "again.dcm", enforce_file_format=True)
        assert (tmp_path / "again.dcm").read_bytes() == raw
        np.testing.assert_array_equal(ds.pixel_array, scan.stored[:, :, k].T)
        assert str(ds.SOPInstanceUID) == str(ds.file_meta.MediaStorageSOPInstanceUID)
