"""Collapse monitors: teacher entropies, effective rank of embeddings, kNN AUROC on a labelled subset."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


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


def knn_oof_scores(
    features: np.ndarray,
    labels: np.ndarray,
    groups: Sequence[str],
    k: int = 10,
    n_splits: int = 5,
) -> np.ndarray | None:
    """Out-of-fold scores of a cosine kNN vote (temperature 0.07), folds by group.

    Args:
        features: ``(n, D)``.  labels: ``(n, F)`` 0/1 (NaN = unknown).  groups: patient id per row (folds
            never split a patient).

    Returns:
        ``(n, F)`` scores in ``[0, 1]`` (0.5 where no neighbour has a label), or None with < 2 groups.
    """
    from sklearn.model_selection import GroupKFold

    f = F.normalize(torch.as_tensor(features, dtype=torch.float32), dim=1)
    y = np.asarray(labels, dtype=np.float64)
    n = f.shape[0]
    groups_arr = np.asarray(groups)
    splits = min(n_splits, len(set(groups_arr.tolist())))
    if splits < 2:
        return None
    scores = np.full(y.shape, np.nan)
    for tr, te in GroupKFold(n_splits=splits).split(np.zeros(n), groups=groups_arr):
        sim = f[te] @ f[tr].t()
        kk = min(k, len(tr))
        top_s, top_i = sim.topk(kk, dim=1)
        w = torch.exp(top_s / 0.07).numpy()
        ytr = y[tr][top_i.numpy()]  # (n_te, kk, F)
        valid = ~np.isnan(ytr)
        num = np.nansum(ytr * w[..., None], axis=1)
        den = (valid * w[..., None]).sum(axis=1)
        scores[te] = np.where(den > 0, num / np.maximum(den, 1e-12), 0.5)
    return scores


def knn_auroc(
    features: np.ndarray,
    labels: np.ndarray,
    groups: Sequence[str],
    names: Sequence[str],
    k: int = 10,
    n_splits: int = 5,
) -> dict[str, float]:
    """Cross-validated cosine kNN AUROC of frozen features (scores from :func:`knn_oof_scores`).

    Args:
        features: ``(n, D)``.  labels: ``(n, F)`` 0/1 (NaN = unknown).  groups: patient id per row (folds
            never split a patient).  names: finding names of the label columns.

    Returns:
        ``{finding: auroc}`` for findings with both classes present, plus ``"macro"`` (mean of those).
    """
    from sklearn.metrics import roc_auc_score

    out: dict[str, float] = {}
    scores = knn_oof_scores(features, labels, groups, k, n_splits)
    if scores is None:
        return out
    y = np.asarray(labels, dtype=np.float64)
    aucs = []
    for j, name in enumerate(names):
        ok = ~np.isnan(y[:, j])
        yy = y[ok, j]
        if yy.size and 0 < yy.sum() < yy.size:
            out[name] = float(roc_auc_score(yy, scores[ok, j]))
            aucs.append(out[name])
    if aucs:
        out["macro"] = float(np.mean(aucs))
    return out
