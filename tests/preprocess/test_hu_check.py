"""Volumes whose values are not HU (no air) are refused with a reason, not stored shifted."""

import numpy as np
import pytest

from fmct.io.errors import InvalidScan
from fmct.io.volume import Volume
from fmct.preprocess import PreprocessConfig, preprocess
from fmct.preprocess.hu_check import MAX_AIR_HU, check_looks_like_hu


def _ball(offset: float) -> np.ndarray:
    """A 40 HU ball in -1000 HU air, every value shifted by ``offset`` (1024 = a lost RescaleIntercept)."""
    idx = np.stack(np.meshgrid(*[np.arange(32.0)] * 3, indexing="ij"), -1)
    ball = np.where(((idx - 15.5) ** 2).sum(-1) < 12.0**2, 40.0, -1000.0)
    return (ball + offset).astype(np.float32)


def test_air_passes_and_missing_air_is_refused():
    check_looks_like_hu(_ball(0.0))
    check_looks_like_hu(np.array([MAX_AIR_HU - 1.0, 3000.0]))
    with pytest.raises(InvalidScan, match=r"not look like HU.*lowest value 24.*RescaleIntercept"):
        check_looks_like_hu(_ball(1024.0))
    with pytest.raises(InvalidScan, match="lowest value 0"):
        check_looks_like_hu(np.linspace(0.0, 1.0, 100))  # a [0, 1]-normalised NIfTI


def test_preprocess_refuses_unrescaled_volume():
    aff = np.eye(4)
    assert preprocess(Volume(_ball(0.0), aff), PreprocessConfig(spacing=2.0)).array.min() <= -1000
    with pytest.raises(InvalidScan, match="not look like HU"):
        preprocess(Volume(_ball(1024.0), aff), PreprocessConfig(spacing=2.0))
