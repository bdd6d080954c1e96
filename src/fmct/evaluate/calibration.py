"""Calibration: expected calibration error and reliability-diagram bins (equal-width bins)."""

from __future__ import annotations

import numpy as np


def reliability_bins(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Bin predictions into ``n_bins`` equal-width bins on [0, 1].

    Returns:
        ``{"edges": (n_bins+1,), "count": (n_bins,), "mean_pred": (n_bins,), "frac_pos": (n_bins,)}``;
        mean_pred / frac_pos are NaN in empty bins. NaN labels or predictions are ignored.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    m = np.isfinite(y) & np.isfinite(p)
    y, p = y[m], np.clip(p[m], 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(idx, weights=p, minlength=n_bins) / count
        frac_pos = np.bincount(idx, weights=y, minlength=n_bins) / count
    return {"edges": edges, "count": count, "mean_pred": mean_pred, "frac_pos": frac_pos}


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """ECE = sum_b (n_b / n) |frac_pos_b - mean_pred_b| over non-empty bins; NaN with no data."""
    b = reliability_bins(y, p, n_bins)
    n = b["count"].sum()
    if n == 0:
        return float("nan")
    nz = b["count"] > 0
    return float(np.sum(b["count"][nz] / n * np.abs(b["frac_pos"][nz] - b["mean_pred"][nz])))
