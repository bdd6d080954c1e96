"""Writing a scan's saliency maps: the shared slices go through the finding's peak, only positive findings get
files (two per finding), the files follow the umask, a known lesion mask is outlined and scored."""

import os
import stat

import nibabel as nib
import numpy as np
import pytest
import torch

from fmct.infer.overlay import brain_window, planes
from fmct.infer.predict import model_preprocessing
from fmct.infer.resample import resample_planes
from fmct.infer.saliency_io import finding_montage, finding_peak, world_to_index, write_saliency
from fmct.io.volume import Volume
from fmct.preprocess.model_input import model_input_for
from fmct.synth import MASK_VALUES, LesionMask


def _blob(shape, centre, sigma=1.5):
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    return torch.tensor(
        np.exp(-(((idx - np.asarray(centre)) ** 2).sum(-1)) / (2 * sigma**2)), dtype=torch.float32
    )


def test_every_row_cuts_the_same_slices_through_the_findings_peak():
    processed = Volume(np.full((30, 34, 28), 30.0, np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    grid_affine = np.diag([4.0, 4.0, 4.0, 1.0])
    grid_affine[:3, 3] = [-2.0, -2.0, -2.0]
    cube = (16, 16, 16)
    maps = {
        "attention": _blob(cube, (3, 12, 2)),  # class-agnostic: does not decide where the finding is
        "grad_rollout": _blob(cube, (10, 5, 8)),
        "grad_x_input": 0.8 * _blob(cube, (10, 5, 8)) + 0.2 * _blob(cube, (4, 4, 4)),
    }
    assert finding_peak(maps) == (10, 5, 8)
    montage, shared = finding_montage(maps, grid_affine, processed)
    peak_world = grid_affine[:3] @ np.array([10, 5, 8, 1.0])  # (38, 18, 30) mm
    np.testing.assert_allclose(shared, peak_world, atol=1.0)
    idx = world_to_index(shared, processed)
    for got, want in zip(montage.background, planes(brain_window(processed.array), idx), strict=True):
        np.testing.assert_array_equal(got, want)
    for method, cube_map in maps.items():  # every row: the planes through idx, none through its own peak
        want = resample_planes(cube_map, grid_affine, processed.affine, processed.shape, idx)
        for got, plane in zip(montage.heats[method], want, strict=True):
            np.testing.assert_allclose(got, plane)
    axial = montage.heats["grad_rollout"][0]
    assert np.unravel_index(np.argmax(axial), axial.shape) == idx[:2]
    assert montage.slice_names == ["axial, S 30 mm", "coronal, A 18 mm", "sagittal, R 38 mm"]
    assert montage.row_notes["grad_rollout"] == "its maximum: here"
    assert montage.row_notes["attention"].endswith("mm away")


@pytest.fixture(scope="module")
def scan(classifier, make_head_volume):
    x, grid_affine, processed = model_input_for(make_head_volume(), model_preprocessing(classifier))
    return x, grid_affine, processed


def _modes(folder):
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_only_positive_findings_get_files_and_they_follow_the_umask(classifier, scan, tmp_path, umask):
    x, grid_affine, processed = scan
    probs = {f: 0.1 for f in classifier.labels} | {"ich": 0.9, "sdh": 0.5}
    old = os.umask(umask)
    try:
        res = write_saliency(
            classifier, x, grid_affine, processed, classifier.labels, tmp_path / "s", probs=probs
        )
    finally:
        os.umask(old)
    assert set(res["findings"]) == {"ich", "sdh"} and res["positive_at"] == 0.5
    assert _modes(tmp_path / "s") == {
        n: 0o666 & ~umask for n in ("ich.png", "ich.nii.gz", "sdh.png", "sdh.nii.gz")
    }
    assert stat.S_IMODE((tmp_path / "s").stat().st_mode) == 0o777 & ~umask
    info = res["findings"]["ich"]
    img = nib.load(info["nifti"])
    assert img.shape == (*x.shape[1:], 3) and info["volumes"] == ["attention", "grad_rollout", "grad_x_input"]
    np.testing.assert_allclose(img.affine, grid_affine, atol=1e-4)
    assert b"attention,grad_rollout,grad_x_input" in img.header["descrip"].tobytes()
    data = np.asarray(img.dataobj, np.float32)
    for k, method in enumerate(info["volumes"]):  # volume k is method k, peaking where the result says
        vox = np.rint(np.linalg.inv(grid_affine) @ np.array([*info["peak_mm"][method], 1.0]))[:3].astype(int)
        assert data[(*vox, k)] == pytest.approx(data[..., k].max(), abs=0.01)
    none = write_saliency(classifier, x, grid_affine, processed, classifier.labels, tmp_path / "n",
                          probs={f: 0.1 for f in classifier.labels})  # fmt: skip
    assert none["findings"] == {} and "no finding at p >= 0.5" in none["note"]
    assert not (tmp_path / "n").exists()


def test_a_known_lesion_is_outlined_and_every_map_scored(classifier, scan, tmp_path):
    x, grid_affine, processed = scan
    labels = np.zeros(processed.shape, np.uint8)
    centre = np.array(processed.shape) // 2
    labels[tuple(slice(c - 3, c + 3) for c in centre)] = MASK_VALUES["iph"]
    lesions = LesionMask(labels, processed.affine)
    res = write_saliency(classifier, x, grid_affine, processed, classifier.labels, tmp_path,
                         findings=["ich", "iph", "sdh"], lesions=lesions)  # fmt: skip
    assert res["findings"]["sdh"]["lesion"] is None  # no sdh voxel in the mask: nothing to score
    for finding in ("ich", "iph"):
        score = res["findings"][finding]["lesion"]
        assert set(score["methods"]) == {"attention", "grad_rollout", "grad_x_input"}
        for s in score["methods"].values():
            assert s["hit"] == (s["peak_to_mask_mm"] is not None and s["peak_to_mask_mm"] <= 10.0)
            assert 0.0 <= s["mass_share"] <= 1.0
        assert 0.0 < score["chance"]["hit_rate"] < 1.0
