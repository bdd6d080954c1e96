"""Bootstrap CIs: coverage on simulated scores, patient resampling, paired differences."""

import numpy as np
import pytest
from scipy.stats import norm

from fmct.evaluate.bootstrap import bootstrap_weights, evaluate_with_ci, mean_difference, paired_difference
from fmct.evaluate.metrics import auroc


def test_ci_coverage_binormal() -> None:
    """95% percentile CIs of AUROC cover the true value in ~95% of 200 simulated studies."""
    d = 1.0
    true_auc = norm.cdf(d / np.sqrt(2))
    rng = np.random.default_rng(0)
    n_pos, n_neg, n_boot = 60, 140, 400
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)].astype(int)
    hits = 0
    for sim in range(200):
        s = np.r_[rng.normal(d, 1, n_pos), rng.normal(0, 1, n_neg)]
        reps = auroc(y, s, bootstrap_weights(len(y), n_boot, seed=sim))
        lo, hi = np.quantile(reps[np.isfinite(reps)], [0.025, 0.975])
        hits += lo <= true_auc <= hi
    coverage = hits / 200
    assert 0.88 <= coverage <= 0.99, coverage


def test_patient_weights_are_shared_within_patient() -> None:
    groups = np.array(["a", "a", "b", "c", "c", "c"])
    w = bootstrap_weights(6, 50, seed=1, groups=groups)
    assert w.shape == (50, 6)
    np.testing.assert_array_equal(w[:, 0], w[:, 1])
    np.testing.assert_array_equal(w[:, 3], w[:, 5])
    # number of patients drawn per replicate is 3
    assert np.all(w[:, 0] + w[:, 2] + w[:, 3] == 3)
    # unique groups -> plain scan resampling, rows sum to n
    assert np.all(bootstrap_weights(6, 10, 0, groups=list("abcdef")).sum(axis=1) == 6)


def test_evaluate_with_ci_handles_na_and_macro() -> None:
    rng = np.random.default_rng(0)
    n = 100
    y = np.c_[rng.integers(0, 2, n), np.zeros(n), rng.integers(0, 2, n)].astype(float)
    y[:10, 2] = np.nan  # unlabelled entries are dropped
    s = y + rng.normal(scale=0.8, size=y.shape)
    s[:, 2] = np.where(np.isnan(s[:, 2]), 0.0, s[:, 2])
    res = evaluate_with_ci(y, s, ["a", "b", "c"], n_boot=200, seed=0)
    assert res["auroc"]["b"] is None  # single class in test -> n/a
    assert res["auroc"]["macro"]["findings"] == ["a", "c"]
    a = res["auroc"]["a"]
    assert a["ci"][0] <= a["value"] <= a["ci"][1]
    assert res["auroc"]["macro"]["value"] == pytest.approx(
        np.mean([res["auroc"]["a"]["value"], res["auroc"]["c"]["value"]])
    )
    assert res["n_pos"]["c"] == int(np.nansum(y[:, 2]))


def test_paired_difference() -> None:
    rng = np.random.default_rng(1)
    n = 150
    y = rng.integers(0, 2, (n, 2)).astype(float)
    good = y + rng.normal(scale=0.5, size=y.shape)
    bad = y + rng.normal(scale=3.0, size=y.shape)
    same = paired_difference(y, good, good, ["a", "b"], n_boot=200)
    assert same["macro"]["value"] == 0 and same["macro"]["ci"] == [0.0, 0.0]
    diff = paired_difference(y, good, bad, ["a", "b"], n_boot=300)
    assert diff["macro"]["value"] > 0
    assert diff["macro"]["ci"][0] > 0 and diff["macro"]["p_le_0"] < 0.05


def test_mean_difference_averages_models_on_the_same_replicates() -> None:
    rng = np.random.default_rng(2)
    n = 200
    y = rng.integers(0, 2, (n, 2)).astype(float)
    good = [y + rng.normal(scale=s, size=y.shape) for s in (0.6, 0.8)]
    bad = [y + rng.normal(scale=s, size=y.shape) for s in (2.0, 2.5, 3.0)]
    one = mean_difference(y, good[:1], bad[:1], ["a", "b"], n_boot=200)
    assert one == paired_difference(y, good[0], bad[0], ["a", "b"], n_boot=200)
    pooled = mean_difference(y, good, bad, ["a", "b"], n_boot=200)
    pairs = [paired_difference(y, g, b, ["a", "b"], n_boot=200) for g in good for b in bad]
    # the mean over models of a metric minus the other mean = the mean of the pairwise differences
    assert np.isclose(pooled["macro"]["value"], np.mean([p["macro"]["value"] for p in pairs]))
    assert pooled["macro"]["ci"][0] > 0 and pooled["macro"]["p_le_0"] < 0.05
    with pytest.raises(ValueError, match="at least one"):
        mean_difference(y, [], bad, ["a", "b"])
