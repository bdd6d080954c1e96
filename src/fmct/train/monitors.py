"""Collapse monitors: teacher entropies, effective rank of embeddings, kNN AUROC on a labelled subset."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def teacher_entropy(probs: torch.Tensor) -> dict[str, float]:
    """``probs (B, K)`` rows summing to 1 -> mean per-sample entropy and entropy of the mean (nats).

    Collapse to one prototype gives both ~0; collapse to uniform gives per-sample ~log K.
    """
    p = probs.float().clamp_min(1e-12)
    per_sample = -(p * p.log()).sum(dim=-1).mean()
    mean = p.mean(dim=0)
    of_mean = -(mean * mean.log()).sum()
    return {
        "teacher_entropy": float(per_sample),
        "teacher_entropy_of_mean": float(of_mean),
        "log_k": math.log(p.shape[1]),
    }


def effective_rank(x: torch.Tensor) -> float:
    """``exp(H(s / sum s))`` of the singular values of centred ``(B, D)`` embeddings (1 .. min(B, D))."""
    x = x.float()
    x = x - x.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(x)
    if float(s.sum()) <= 0:
        return 1.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def knn_auroc(
    features: np.ndarray,
    labels: np.ndarray,
    groups: Sequence[str],
    names: Sequence[str],
    n_splits: int = 5,
) -> dict[str, float]:
    """Cross-fitted kNN AUROC of frozen features: the evaluation protocol's cosine kNN probe (k chosen on
    validation patients), every scan scored by a fit without its patient
    (:func:`fmct.evaluate.crossfit.cross_fitted_array_scores`).

    Args:
        features: ``(n, D)``.  labels: ``(n, F)`` 0/1 (NaN = unknown).  groups: patient id per row (folds
            never split a patient).  names: finding names of the label columns.  n_splits: folds.

    Returns:
        ``{finding: auroc}`` for findings with both classes present, plus ``"macro"`` (mean of those); empty
        with fewer than 2 patients.
    """
    from fmct.evaluate.crossfit import cross_fitted_array_scores
    from fmct.evaluate.metrics import auroc_by_finding

    if len(set(map(str, groups))) < 2:
        return {}
    scores = cross_fitted_array_scores(features, labels, groups, names, "knn", n_splits)
    return {k: v for k, v in auroc_by_finding(labels, scores, names).items() if v is not None}
