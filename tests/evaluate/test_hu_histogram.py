"""The intracranial HU-histogram reference: features by hand, and as a model of the protocol."""

import numpy as np
import pytest
from evalkit import MemoryStore, make_labels

from fmct.evaluate.hu_histogram import HIST_EDGES, N_FEATURES, HandFeatures, hu_histogram
from fmct.evaluate.protocol import run_protocol


def _head(blob_hu: float | None) -> tuple[np.ndarray, int]:
    """A 24³ cube: air, a skull shell (1000 HU) around a ball of 30 HU brain, with an optional 3³ blob
    of ``blob_hu`` in the middle; returns the cube and the blob's voxel count."""
    x, y, z = np.mgrid[:24, :24, :24] - 11.5
    r = np.sqrt(x**2 + y**2 + z**2)
    v = np.full((24, 24, 24), -1000, np.int16)
    v[r < 11] = 1000
    v[r < 9] = 30
    n_blob = 0
    if blob_hu is not None:
        v[11:14, 11:14, 11:14] = blob_hu
        n_blob = 27
    return v, n_blob


def test_histogram_by_hand() -> None:
    """30 HU falls in bin (30 + 24) // 4 = 13, 70 HU in bin 23; bins sum to 1; the > 50 HU count is the blob;
    the cavity is the brain ball less its one-voxel eroded rim."""
    v, n_blob = _head(70)
    f = hu_histogram(v)
    assert f.shape == (N_FEATURES,) and len(HIST_EDGES) == 33
    bins = f[:32]
    assert bins.sum() == pytest.approx(1.0)
    assert set(np.flatnonzero(bins)) == {13, 23}
    n_inside = round(f[32] * 1e4)
    ball = int((np.sqrt(((np.mgrid[:24, :24, :24] - 11.5) ** 2).sum(0)) < 9).sum())
    assert 0.6 * ball < n_inside < ball
    assert bins[23] == pytest.approx(n_blob / n_inside)
    assert f[33] == pytest.approx(n_blob / 1e3)
    plain, _ = _head(None)
    assert hu_histogram(plain)[23] == 0.0 and hu_histogram(plain)[33] == 0.0
    assert not hu_histogram(np.full((8, 8, 8), -1000, np.int16)).any()  # no cavity: zeros


def test_histogram_as_a_protocol_model_detects_intensity_findings(tmp_path) -> None:
    """{"hu_histogram": ...} is probed on the same splits as any model; a bright region (ich: +45 HU) is what a
    histogram sees, so its ID AUROC for ich is high; every readout of it is the same matrix."""
    labels = make_labels(80, seed=3)
    rep = run_protocol(
        {"hist": {"hu_histogram": {"size": 16}}},
        labels,
        tmp_path,
        store=MemoryStore(labels),
        config={"fractions": [1.0], "seeds": [0], "n_boot": 50, "plots": False, "methods": ["linear"]},
    )
    res = {(r["model"], r["test_set"]): r for r in rep["results"]}
    assert res[("hist", "id")]["auroc"]["ich"]["mean"] > 0.9
    emb = HandFeatures(["a", "b"], np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), None, {}, None)
    assert np.array_equal(emb.feature("brain_max"), emb.feature("cls")) and isinstance(
        emb.select(["b"]), HandFeatures
    )
