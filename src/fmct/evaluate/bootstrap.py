"""Bootstrap confidence intervals for per-finding and macro metrics, and paired model differences.

Replicates are integer weights ``(B, n)`` (times each scan is drawn). With ``groups`` (patient ids)
whole patients are resampled: a patient drawn ``k`` times gives each of its scans weight ``k``.
Using the *same* weights for two models gives a paired bootstrap of their difference.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from fmct.evaluate.metrics import METRICS

DEFAULT_N_BOOT = 1000
ALPHA = 0.05


def bootstrap_weights(
    n: int, n_boot: int = DEFAULT_N_BOOT, seed: int = 0, groups: Sequence[Any] | np.ndarray | None = None
) -> np.ndarray:
    """Bootstrap replicate weights.

    Args:
        n: number of scans.
        n_boot: number of replicates B.
        seed: RNG seed (same seed -> same replicates, which pairs comparisons across models).
        groups: optional ``(n,)`` cluster labels (patient ids). When some label repeats, clusters are
            resampled instead of scans.

    Returns:
        ``(B, n)`` float64 weights; each row sums to ``n`` (scan resampling) or to the number of scans
        of the drawn patients (patient resampling).
    """
    rng = np.random.default_rng(seed)
    if groups is not None:
        codes, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
        if len(codes) < n:
            k = len(codes)
            counts = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot)
            return counts[:, inverse].astype(np.float64)
    if n == 0:
        return np.zeros((n_boot, 0))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)


def _ci(values: np.ndarray, alpha: float = ALPHA) -> list[float | None]:
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return [None, None]
    lo, hi = np.quantile(v, [alpha / 2, 1 - alpha / 2])
    return [float(lo), float(hi)]


def _valid(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Mask of scans with a label and a finite score."""
    return np.isfinite(y) & np.isfinite(s)


def finding_replicates(
    y: np.ndarray, s: np.ndarray, weights: np.ndarray, metric: str
) -> tuple[float, np.ndarray] | None:
    """Point estimate and ``(B,)`` replicate values of one metric for one finding.

    Scans with a missing label (NaN) or score are dropped. Returns None when the finding cannot be
    scored (a single class among the labelled scans, or no finite scores).
    """
    m = _valid(y, s)
    yy = y[m].astype(np.int64)
    if m.sum() == 0 or yy.min() == yy.max():
        return None
    fn = METRICS[metric]
    point = float(fn(yy, s[m]))
    reps = np.asarray(fn(yy, s[m], weights[:, m]))
    return point, reps


def evaluate_with_ci(
    labels: np.ndarray,
    scores: np.ndarray,
    findings: Sequence[str],
    groups: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    metrics: Sequence[str] = ("auroc", "ap"),
    weights: np.ndarray | None = None,
) -> dict[str, Any]:
    """Per-finding and macro metrics with percentile bootstrap 95% CIs.

    Args:
        labels: ``(n, F)`` in {0, 1} (NaN = not labelled).
        scores: ``(n, F)`` probabilities or scores (NaN = finding not predicted, e.g. probe n/a).
        findings: F names.
        groups: ``(n,)`` patient ids for cluster resampling (used when patients repeat).
        weights: precomputed ``(B, n)`` replicate weights (overrides n_boot/seed/groups).

    Returns:
        ``{"n": n, "n_pos": {f: int}, metric: {f: {"value", "ci"} | None, "macro": {"value", "ci",
        "findings": [...]}}}``. Macro = mean over the scorable findings, CI from the per-replicate means.
    """
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    n = labels.shape[0]
    if weights is None:
        weights = bootstrap_weights(n, n_boot, seed, groups)
    out: dict[str, Any] = {
        "n": int(n),
        "n_pos": {f: int(np.nansum(labels[:, j])) for j, f in enumerate(findings)},
    }
    for metric in metrics:
        per: dict[str, Any] = {}
        points, reps = [], []
        for j, f in enumerate(findings):
            r = finding_replicates(labels[:, j], scores[:, j], weights, metric)
            if r is None:
                per[f] = None
                continue
            per[f] = {"value": r[0], "ci": _ci(r[1])}
            points.append(r[0])
            reps.append(r[1])
        if points:
            with np.errstate(invalid="ignore"), _quiet():
                macro_reps = np.nanmean(np.stack(reps), axis=0)
            per["macro"] = {
                "value": float(np.mean(points)),
                "ci": _ci(macro_reps),
                "findings": [f for f in findings if per[f] is not None],
            }
        else:
            per["macro"] = None
        out[metric] = per
    return out


def paired_difference(
    labels: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    findings: Sequence[str],
    *args: Any,
    **kw: Any,
) -> dict[str, Any]:
    """Difference ``a - b`` of a metric, per finding and macro, with a paired bootstrap 95% CI.

    Both models are scored on the same resampled scans in every replicate. Macro uses the findings
    scorable for both. ``p_le_0`` is the fraction of replicates where the difference is <= 0 (a
    one-sided bootstrap p-value for "a better than b"). Further arguments (``groups``, ``n_boot``,
    ``seed``, ``metric``) as in :func:`mean_difference`, of which this is the one-model-per-side case.
    """
    return mean_difference(labels, [scores_a], [scores_b], findings, *args, **kw)


def mean_difference(
    labels: np.ndarray,
    scores_a: Sequence[np.ndarray],
    scores_b: Sequence[np.ndarray],
    findings: Sequence[str],
    groups: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    metric: str = "auroc",
) -> dict[str, Any]:
    """Difference of the *mean over models* of a metric: ``mean_i m(a_i) - mean_j m(b_j)``, per finding and
    macro, with a paired bootstrap 95% CI (every model scored on the same resampled scans).

    ``scores_a`` / ``scores_b``: one or more ``(n, F)`` score matrices on the same scans, e.g. several
    pretraining seeds vs several random initialisations, so that the CI reflects the scans and the
    comparison is not hostage to one lucky or unlucky seed. With one matrix per side it is
    :func:`paired_difference`. A finding counts when it is scorable for every model.
    """
    if not scores_a or not scores_b:
        raise ValueError("mean_difference needs at least one score matrix per side")
    labels = np.asarray(labels, dtype=np.float64)
    weights = bootstrap_weights(labels.shape[0], n_boot, seed, groups)
    per: dict[str, Any] = {}
    points, reps = [], []
    for j, f in enumerate(findings):
        side = []
        for group in (scores_a, scores_b):
            r = [finding_replicates(labels[:, j], np.asarray(s)[:, j], weights, metric) for s in group]
            side.append(None if any(x is None for x in r) else r)
        if side[0] is None or side[1] is None:
            per[f] = None
            continue
        (pa, ra), (pb, rb) = ((np.mean([x[0] for x in r]), np.mean([x[1] for x in r], axis=0)) for r in side)
        d, dr = float(pa - pb), ra - rb
        per[f] = {"value": d, "ci": _ci(dr), "p_le_0": float(np.mean(dr[np.isfinite(dr)] <= 0))}
        points.append(d)
        reps.append(dr)
    if points:
        with _quiet():
            macro = np.nanmean(np.stack(reps), axis=0)
        per["macro"] = {
            "value": float(np.mean(points)),
            "ci": _ci(macro),
            "p_le_0": float(np.mean(macro[np.isfinite(macro)] <= 0)),
        }
    else:
        per["macro"] = None
    return per


class _quiet:
    """Silence numpy's 'Mean of empty slice' warnings inside a block."""

    def __enter__(self) -> None:
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)
