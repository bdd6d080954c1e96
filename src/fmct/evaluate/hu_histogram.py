"""A hand-made reference feature: the HU histogram of the cranial cavity, probed like any embedding.

Most findings of a non-contrast head CT change the HU content of the brain (acute blood 50-90 HU, infarct
and edema 15-25 HU, enlarged CSF spaces 0-15 HU). A logistic regression on the intracranial HU histogram
is therefore the floor that learned features have to beat: if a pretrained network's probe does not beat
it, the network has not learned more than what a radiologist's window already shows. The evaluation
protocol runs it as the model spec ``{"hu_histogram": {"size": 64}}`` (``fmct evaluate``, the demo).

Features per scan, ``(34,)`` float32: the fraction of intracranial voxels in each of 32 bins of 4 HU from
-24 to 104 HU, the intracranial volume (voxels / 1e4) and the count of intracranial voxels above 50 HU
(/ 1e3). The cavity is :func:`fmct.preprocess.brain_mask.intracranial_mask` of the scan's model-input cube
(the head resampled into ``size``³), the same mask the ``brain_max`` readout pools over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fmct.evaluate.embed import CubeCache, Embeddings
from fmct.preprocess.brain_mask import intracranial_mask

#: 33 bin edges in HU: 32 bins of 4 HU from CSF (-24) to acute blood (104).
HIST_EDGES = np.arange(-24.0, 105.0, 4.0)
#: Length of one scan's feature vector: 32 bin fractions + cavity volume + count above 50 HU.
N_FEATURES = len(HIST_EDGES) + 1


def hu_histogram(hu: np.ndarray) -> np.ndarray:
    """``(X, Y, Z)`` HU cube -> ``(34,)`` float32 features (module docstring); zeros without a cavity."""

    v = np.asarray(hu)
    inside = intracranial_mask(v)
    n = int(inside.sum())
    if n == 0:
        return np.zeros(N_FEATURES, dtype=np.float32)
    vals = v[inside].astype(np.float32)
    frac = np.histogram(vals, bins=HIST_EDGES)[0] / n
    return np.r_[frac, n / 1e4, (vals > 50).sum() / 1e3].astype(np.float32)


@dataclass
class HandFeatures(Embeddings):
    """:class:`Embeddings` of a hand-made feature: no network, one ``(n, F)`` matrix that every readout
    (``cls``, ``brain_max`` ...) returns, so the protocol probes it like a model on the same splits."""

    def feature(self, kind: str = "cls+mean") -> np.ndarray:
        return self.cls

    def select(self, scan_ids: Sequence[str]) -> HandFeatures:
        e = super().select(scan_ids)
        return HandFeatures(e.scan_ids, e.cls, e.mean_patch, None, e.meta, None)


def histogram_embeddings(cache: CubeCache, meta: dict[str, Any] | None = None) -> HandFeatures:
    """:func:`hu_histogram` of every cube of ``cache`` -> :class:`HandFeatures` ``(n, 34)``."""
    cubes = cache.cubes.numpy()
    feats = (
        np.stack([hu_histogram(c) for c in cubes]) if len(cubes) else np.zeros((0, N_FEATURES), np.float32)
    )
    info = {"model_name": "hu-histogram", "feature": "intracranial HU histogram", "size": cache.size}
    return HandFeatures(list(cache.scan_ids), feats, feats, None, {**info, **(meta or {})}, None)
