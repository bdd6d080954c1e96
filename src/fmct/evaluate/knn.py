"""Cosine k-nearest-neighbour probe on frozen embeddings (k chosen on the validation split).

The score of a finding for a query scan is the similarity-weighted fraction of positive neighbours
(weights ``exp(cos / T)``, DINO's weighted kNN), computed over the neighbours labelled for that finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fmct.evaluate.metrics import auroc

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class KNNProbe:
    """A kNN probe: train embeddings ``(n, D)`` (unit norm), labels ``(n, F)``, ``k`` per finding."""

    findings: list[str]
    bank: np.ndarray
    labels: np.ndarray
    k: list[int | None]
    temperature: float = 0.07

    @property
    def ok(self) -> np.ndarray:
        return np.asarray([k is not None for k in self.k])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(m, D) -> (m, F)`` scores in [0, 1]; NaN for n/a findings."""
        sims = _normalise(x) @ self.bank.T  # (m, n)
        order = np.argsort(-sims, axis=1)
        out = np.full((sims.shape[0], len(self.findings)), np.nan)
        for j, k in enumerate(self.k):
            if k is not None:
                out[:, j] = _vote(sims, order, self.labels[:, j], k, self.temperature)
        return out


def _vote(sims: np.ndarray, order: np.ndarray, y: np.ndarray, k: int, t: float) -> np.ndarray:
    """Weighted positive fraction among the k most similar labelled bank items."""
    labelled = np.isfinite(y)
    ordered = order
    mask = labelled[ordered]
    # rank among labelled neighbours only
    rank = np.cumsum(mask, axis=1)
    take = mask & (rank <= k)
    s = np.take_along_axis(sims, ordered, axis=1)
    w = np.where(take, np.exp((s - 1.0) / t), 0.0)
    yy = np.nan_to_num(y[ordered])
    return (w * yy).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-300)


def fit_knn_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    findings: Sequence[str],
    ks: Sequence[int] = DEFAULT_KS,
    temperature: float = 0.07,
) -> KNNProbe:
    """Build the bank from train and pick k per finding by validation AUROC (middle k without val)."""
    y_train = np.asarray(y_train, dtype=np.float64)
    bank = _normalise(x_train)
    chosen: list[int | None] = []
    sims_val = order_val = None
    if x_val is not None and len(x_val):
        sims_val = _normalise(x_val) @ bank.T
        order_val = np.argsort(-sims_val, axis=1)
    for j in range(len(findings)):
        yj = y_train[:, j][np.isfinite(y_train[:, j])]
        if len(yj) == 0 or yj.min() == yj.max():
            chosen.append(None)
            continue
        grid = [k for k in ks if k <= len(yj)] or [len(yj)]
        best_k, best = grid[len(grid) // 2], -1.0
        if sims_val is not None and y_val is not None:
            mv = np.isfinite(y_val[:, j])
            yv = y_val[mv, j]
            if len(yv) and yv.min() != yv.max():
                best_k = grid[0]
                for k in grid:
                    sc = _vote(sims_val[mv], order_val[mv], y_train[:, j], k, temperature)
                    a = auroc(yv.astype(int), sc)
                    if a > best + 1e-12:
                        best, best_k = a, k
        chosen.append(best_k)
    return KNNProbe(list(findings), bank, y_train, chosen, temperature)
