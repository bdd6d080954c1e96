import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from fmct.io.volume import Volume
from fmct.preprocess import DEFAULT_WINDOWS, PreprocessConfig, preprocess


def test_config_round_trips_through_json():
    cfg = PreprocessConfig(spacing=0.8, deface=True, windows=[[40, 80]])
    d = json.loads(json.dumps(cfg.to_dict()))
    assert d["version"] >= 1 and d["windows"] == [[40.0, 80.0]]
    assert PreprocessConfig.from_dict(d) == cfg
    assert PreprocessConfig.from_dict(None) == PreprocessConfig()
    assert PreprocessConfig().windows == DEFAULT_WINDOWS
    with pytest.raises(ValueError, match="unknown preprocess keys"):
        PreprocessConfig.from_dict({"spacing": 1.0, "spcing": 2.0})
    with pytest.raises(ValueError):
        PreprocessConfig(spacing=0.0)


def _smooth_nifti(path):
    """A smooth field (sum of wide Gaussians, HU-like range) in an LPS-like, anisotropic NIfTI."""
    shape = (40, 36, 12)
    aff = np.diag([-0.6, -0.7, 2.5, 1.0])
    aff[:3, 3] = [12.0, 14.0, -14.0]
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    world = idx @ aff[:3, :3].T + aff[:3, 3]
    hu = -700.0 + 600.0 * np.exp(-((world - [2.0, 1.0, 0.0]) ** 2).sum(-1) / (2 * 7.0**2))
    hu += 300.0 * np.exp(-((world - [-5.0, 4.0, 6.0]) ** 2).sum(-1) / (2 * 5.0**2))
    nib.save(nib.Nifti1Image(hu.astype(np.float32), aff), str(path))
    return path


def test_matches_monai_orientation_and_spacing(tmp_path):
    from monai.transforms import Compose, LoadImage, Orientation, Spacing

    path = _smooth_nifti(tmp_path / "smooth.nii.gz")
    img = nib.load(str(path))
    ours = preprocess(
        Volume(np.asarray(img.dataobj, dtype=np.float32), img.affine),
        PreprocessConfig(spacing=1.0, crop_head=False),
    )
    from_path = preprocess(path, PreprocessConfig(spacing=1.0, crop_head=False))  # via fmct.io.load_volume
    assert np.array_equal(from_path.array, ours.array) and np.allclose(from_path.affine, ours.affine)
    monai = Compose(
        [
            LoadImage(image_only=True, ensure_channel_first=True),
            Orientation(axcodes="RAS"),
            Spacing(pixdim=(1.0, 1.0, 1.0)),
        ]
    )(str(path))
    m_arr = monai[0].numpy().astype(np.float64)
    m_aff = np.asarray(monai.affine, dtype=np.float64)
    assert np.allclose(m_aff[:3, :3], ours.affine[:3, :3])  # both RAS, 1 mm
    # compare at MONAI's voxel centres that lie inside our grid, away from the edges (edge handling differs)
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in m_arr.shape], indexing="ij"), -1).reshape(-1, 3)
    world = idx @ m_aff[:3, :3].T + m_aff[:3, 3]
    ours_idx = (world - ours.affine[:3, 3]) @ np.linalg.inv(ours.affine[:3, :3]).T
    hi = np.asarray(ours.shape) - 1
    inside = ((ours_idx >= 3) & (ours_idx <= hi - 3)).all(1)
    assert inside.sum() > 2000
    ours_vals = ndimage.map_coordinates(ours.array.astype(np.float64), ours_idx[inside].T, order=1)
    diff = np.abs(ours_vals - m_arr.reshape(-1)[inside])
    assert diff.max() < 15.0 and diff.mean() < 2.0, (diff.max(), diff.mean())  # field spans ~900 HU


def test_head_crop_drops_a_separate_table(make_volume):
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = [-40.0, -40.0, -45.0]
    vol = make_volume((80, 80, 80), aff, centre=(0, 0, 0), radius=25.0, table_z=-32.0)  # 7 mm air gap
    out = preprocess(vol, PreprocessConfig(spacing=1.0, crop_margin_mm=3.0))
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in out.shape], indexing="ij"), -1)
    world = idx @ out.affine[:3, :3].T + out.affine[:3, 3]
    fg = out.array > -500
    assert world[..., 2][fg].min() > -26.5  # nothing of the table (top at -32 mm) is left
    assert not (out.array >= 250).any()
    # the box hugs the head: diameter 50 mm + 2 x margin, within a couple of voxels
    assert all(50 <= s <= 60 for s in out.shape), out.shape
    assert np.allclose(world[fg].mean(0), 0.0, atol=0.6)  # head centred where it was


def test_head_crop_clears_a_table_inside_the_box(make_volume):
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = [-40.0, -40.0, -45.0]
    vol = make_volume((80, 80, 80), aff, centre=(0, 0, 0), radius=25.0, table_z=-28.0)  # 3 mm gap
    out = preprocess(vol, PreprocessConfig(spacing=1.0, crop_margin_mm=8.0))
    assert not (out.array >= 250).any()  # the slab is within the margin, but set to air
    assert (out.array > -500).sum() == pytest.approx(4 / 3 * np.pi * 25**3, rel=0.05)


def test_empty_scan_is_skipped():
    from fmct.io.errors import SkipScan

    with pytest.raises(SkipScan, match="no foreground"):
        preprocess(Volume(np.full((20, 20, 20), -1000.0, np.float32), np.eye(4)))


def test_a_handed_over_source_is_freed_once_resampled(make_volume, monkeypatch):
    """The ingest worker hands its volume over (no reference of its own): the source array is gone
    before the head crop, so a scan's source and output are never held whole at once."""
    import weakref

    import fmct.preprocess.crop as crop

    aff = np.diag([0.5, 0.5, 2.0, 1.0])
    aff[:3, 3] = [-30.0, -30.0, -40.0]
    vol = make_volume((120, 120, 40), aff, centre=(0, 0, 0), radius=25.0)
    alive = weakref.ref(vol.array)
    seen: list[bool] = []
    real = crop.crop_head

    def spy(*args, **kwargs):
        seen.append(alive() is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(crop, "crop_head", spy)
    handover = [vol]
    del vol
    out = preprocess(handover.pop(), PreprocessConfig())
    assert seen == [False] and out.array.dtype == np.int16
    kept = make_volume(
        (120, 120, 40), aff, centre=(0, 0, 0), radius=25.0
    )  # a caller that keeps its volume keeps it intact
    before = kept.array.copy()
    preprocess(kept, PreprocessConfig())
    np.testing.assert_array_equal(kept.array, before)


def test_the_world_box_of_the_head_is_found_for_the_oblique_path_only(make_volume):
    """The pre-crop's world box (RAS mm) limits only the oblique resampling grid: it is worked out only
    when the head's region takes that path."""
    from geomcases import CASES

    from fmct.preprocess.pipeline import _head_region

    cfg = PreprocessConfig()
    for name, oblique in (("permuted", False), ("tilted", True)):
        shape, affine = CASES[name]
        vol = make_volume(shape, affine, centre=(0, 0, 0), radius=24.0, table_z=-26.0)
        region, world_box = _head_region(vol, cfg)
        assert region.shape[0] <= shape[0] and np.shares_memory(region.array, vol.array)
        if not oblique:
            assert world_box is None
            continue
        lo, hi = world_box  # the ball (radius 24 mm) with slack, inside the scan's own world box
        assert np.all(lo < -20.0) and np.all(hi > 20.0) and np.all(hi - lo < 100.0)
