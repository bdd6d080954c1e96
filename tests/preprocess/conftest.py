"""Synthetic volumes defined in world space (RAS mm), sampled through any affine."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fmct.io.volume import Volume

sys.path.insert(0, str(Path(__file__).parent))  # geomcases: the affines the geometry tests share


def world_grid(shape, affine) -> np.ndarray:
    """``(*shape, 3)`` RAS mm position of every voxel centre."""
    idx = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), -1)
    return idx @ np.asarray(affine)[:3, :3].T + np.asarray(affine)[:3, 3]


def head_field(world: np.ndarray, centre=(0.0, 0.0, 0.0), radius=30.0, marker=None, table_z=None):
    """HU of a soft-tissue ball (40 HU) in air, an optional smooth bright marker (Gaussian, sigma 3 mm,
    +1500 HU) and an optional table slab (300 HU, 6 mm thick) with its top at ``table_z``."""
    d2 = ((world - np.asarray(centre)) ** 2).sum(-1)
    hu = np.where(d2 < radius**2, 40.0, -1000.0)
    if marker is not None:
        hu = hu + 1500.0 * np.exp(-((world - np.asarray(marker)) ** 2).sum(-1) / (2 * 3.0**2))
    if table_z is not None:
        slab = (world[..., 2] <= table_z) & (world[..., 2] > table_z - 6.0)
        hu = np.where(slab, 300.0, hu)
    return hu.astype(np.float32)


def marker_centroid_world(vol: Volume, above: float = 500.0) -> np.ndarray:
    """World position (RAS mm) of the intensity centroid of voxels brighter than ``above``."""
    a = vol.array.astype(np.float64)
    w = np.clip(a - above, 0.0, None)
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in a.shape], indexing="ij"), -1)
    c = (idx * w[..., None]).reshape(-1, 3).sum(0) / w.sum()
    return (vol.affine @ np.r_[c, 1.0])[:3]


@pytest.fixture
def make_volume():
    """``make_volume(shape, affine, **head_field_kwargs) -> Volume``."""

    def _make(shape, affine, **kw) -> Volume:
        return Volume(head_field(world_grid(shape, affine), **kw), np.asarray(affine, dtype=np.float64))

    return _make


@pytest.fixture
def helpers():
    """The helper functions of this conftest (``world_grid``, ``head_field``, ``centroid``)."""
    from types import SimpleNamespace

    return SimpleNamespace(world_grid=world_grid, head_field=head_field, centroid=marker_centroid_world)
