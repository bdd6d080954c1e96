"""Ranking metrics (AUROC, average precision) with sample weights, vectorised over bootstrap replicates.

A bootstrap replicate is expressed as integer *weights* (how many times each scan was drawn), so that
the same sort of the scores serves every replicate: ``weights`` of shape ``(B, n)`` give ``B`` metric
values in one pass. With unit weights the values equal scikit-learn's ``roc_auc_score`` and
``average_precision_score`` (ties handled the same way: tied scores form one threshold).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _grouped_weights(
    y: np.ndarray, scores: np.ndarray, weights: np.ndarray, descending: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per tie group (sorted by score) the summed weights of positives and negatives: ``(B, G)`` each.

    Tied scores form one group (one threshold); groups are contiguous after sorting, so the sums are
    one ``np.add.reduceat`` per class.
    """
    order = np.argsort(-scores if descending else scores, kind="mergesort")
    s = scores[order]
    b = weights.shape[0]
    if len(s) == 0:
        return np.zeros((b, 0)), np.zeros((b, 0))
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    w = weights[:, order]
    pos = y[order] == 1
    wp = np.add.reduceat(np.where(pos, w, 0.0), starts, axis=1)
    wn = np.add.reduceat(np.where(pos, 0.0, w), starts, axis=1)
    return wp, wn


def _as_2d_weights(n: int, weights: np.ndarray | None) -> tuple[np.ndarray, bool]:
    if weights is None:
        return np.ones((1, n)), True
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        return w[None], True
    return w, False


def auroc(y: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float | np.ndarray:
    """Area under the ROC curve (probability a positive outranks a negative, ties count 1/2).

    Args:
        y: ``(n,)`` labels in {0, 1}.
        scores: ``(n,)`` higher = more likely positive.
        weights: ``None``, ``(n,)`` or ``(B, n)`` non-negative sample weights (bootstrap counts).

    Returns:
        A float (``weights`` None or 1-D) or ``(B,)`` array; NaN where a class has zero weight.
    """
    y = np.asarray(y).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    w, squeeze = _as_2d_weights(len(y), weights)
    wp, wn = _grouped_weights(y, scores, w, descending=False)
    neg_below = np.cumsum(wn, axis=1) - wn  # weight of negatives strictly below each group
    num = (wp * (neg_below + 0.5 * wn)).sum(axis=1)
    den = wp.sum(axis=1) * wn.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return float(out[0]) if squeeze else out


def auroc_by_finding(y: np.ndarray, scores: np.ndarray, findings: Sequence[str]) -> dict[str, float | None]:
    """AUROC of each finding over the scans with a label and a finite score, and their mean.

    Args:
        y: ``(n, F)`` labels in {0, 1} (NaN = unlabelled).  scores: ``(n, F)`` (NaN = not scored).
        findings: F names.

    Returns:
        ``{finding: AUROC, or None with one class among those scans, "macro": mean of the others or None}``.
    """
    y = np.asarray(y, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    out: dict[str, float | None] = {}
    for j, f in enumerate(findings):
        m = np.isfinite(y[:, j]) & np.isfinite(scores[:, j])
        yy = y[m, j]
        out[f] = float(auroc(yy, scores[m, j])) if len(yy) and yy.min() != yy.max() else None
    values = [v for v in out.values() if v is not None]
    out["macro"] = float(np.mean(values)) if values else None
    return out


def average_precision(
    y: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None
) -> float | np.ndarray:
    """Average precision ``sum_k (R_k - R_{k-1}) P_k`` over descending thresholds (sklearn's definition).

    Args / Returns: as :func:`auroc`; NaN where the positives have zero weight.
    """
    y = np.asarray(y).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    w, squeeze = _as_2d_weights(len(y), weights)
    wp, wn = _grouped_weights(y, scores, w, descending=True)
    tp = np.cumsum(wp, axis=1)
    fp = np.cumsum(wn, axis=1)
    total_pos = tp[:, -1:] if tp.shape[1] else np.zeros((w.shape[0], 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / np.where(tp + fp > 0, tp + fp, 1.0), 0.0)
        ap = (wp * precision).sum(axis=1) / total_pos[:, 0]
    ap = np.where(total_pos[:, 0] > 0, ap, np.nan)
    return float(ap[0]) if squeeze else ap


def roc_curve(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve points ``(fpr, tpr, thresholds)``, starting at (0, 0); one point per distinct score."""
    y = np.asarray(y).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    wp, wn = _grouped_weights(y, scores, np.ones((1, len(y))), descending=True)
    tp, fp = np.cumsum(wp[0]), np.cumsum(wn[0])
    p, n = max(tp[-1], 1e-12), max(fp[-1], 1e-12)
    thr = np.unique(scores)[::-1]
    return np.r_[0.0, fp / n], np.r_[0.0, tp / p], np.r_[np.inf, thr]


def pr_curve(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall points ``(recall, precision, thresholds)`` by descending threshold.

    Starts at recall 0 with precision 1 (the usual convention for plotting).
    """
    y = np.asarray(y).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    wp, wn = _grouped_weights(y, scores, np.ones((1, len(y))), descending=True)
    tp, fp = np.cumsum(wp[0]), np.cumsum(wn[0])
    precision = tp / np.maximum(tp + fp, 1e-12)
    recall = tp / max(tp[-1], 1e-12)
    thr = np.unique(scores)[::-1]
    return np.r_[0.0, recall], np.r_[1.0, precision], np.r_[np.inf, thr]


#: metric name -> function(y, scores, weights)
METRICS = {"auroc": auroc, "ap": average_precision}
