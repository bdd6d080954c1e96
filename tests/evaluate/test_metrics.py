"""Metrics agree with scikit-learn, including ties and bootstrap weights."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from fmct.evaluate.calibration import expected_calibration_error, reliability_bins
from fmct.evaluate.metrics import auroc, auroc_by_finding, average_precision, pr_curve, roc_curve


@pytest.mark.parametrize("seed", range(8))
def test_auroc_and_ap_match_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 300))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]
    s = np.round(rng.normal(size=n) + y, 1)  # rounding makes ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_weights_equal_repeating_samples() -> None:
    rng = np.random.default_rng(1)
    n = 80
    y = rng.integers(0, 2, n)
    s = np.round(rng.normal(size=n) + y, 1)
    w = rng.multinomial(n, np.full(n, 1 / n), size=20).astype(float)
    a, ap = auroc(y, s, w), average_precision(y, s, w)
    for b in range(20):
        idx = np.repeat(np.arange(n), w[b].astype(int))
        assert a[b] == pytest.approx(roc_auc_score(y[idx], s[idx]), abs=1e-12)
        assert ap[b] == pytest.approx(average_precision_score(y[idx], s[idx]), abs=1e-12)


def test_single_class_gives_nan() -> None:
    assert np.isnan(auroc(np.zeros(5), np.arange(5.0)))
    assert np.isnan(average_precision(np.zeros(5), np.arange(5.0)))


def test_roc_curve_points_match_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 50)
    s = np.round(rng.normal(size=50) + y, 1)
    fpr, tpr, _ = roc_curve(y, s)
    sk_fpr, sk_tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    rec, prec, _ = pr_curve(y, s)
    assert rec[0] == 0 and rec[-1] == 1 and prec[0] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(y, s))


def test_ece_perfect_and_overconfident() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(size=20000)
    y = (rng.uniform(size=p.size) < p).astype(float)
    assert expected_calibration_error(y, p) < 0.02
    # always predicting 0.95 where the truth is 50/50 -> ECE 0.45
    assert expected_calibration_error(np.r_[np.ones(50), np.zeros(50)], np.full(100, 0.95)) == pytest.approx(
        0.45
    )
    b = reliability_bins(y, p, 5)
    assert b["count"].sum() == p.size and len(b["edges"]) == 6
    assert np.isnan(expected_calibration_error(np.array([np.nan]), np.array([0.5])))


def test_auroc_by_finding_uses_labelled_scored_scans() -> None:
    y = np.array([[0, 1, 0], [1, 1, np.nan], [0, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=float)
    s = np.array([[0.1, 0.2, 0.3], [0.8, 0.1, 0.9], [np.nan, 0.5, 0.2], [0.6, 0.3, 0.1], [0.2, 0.4, 0.7]])
    out = auroc_by_finding(y, s, ["a", "b", "c"])
    assert out["a"] == pytest.approx(roc_auc_score([0, 1, 1, 1], [0.1, 0.8, 0.6, 0.2]))
    assert out["b"] is None  # one class
    assert out["c"] == pytest.approx(roc_auc_score([0, 1, 0, 1], [0.3, 0.2, 0.1, 0.7]))
    assert out["macro"] == pytest.approx((out["a"] + out["c"]) / 2)
    assert auroc_by_finding(y[:, 1:2], s[:, 1:2], ["b"])["macro"] is None
