"""Cross-fitting: every scan scored once by the protocol's probe fitted without its patient; ridge CV R²."""

import numpy as np
import pandas as pd
import pytest
from evalkit import FINDINGS3, make_labels, separable_embeddings

from fmct.evaluate import crossfit
from fmct.evaluate.crossfit import (
    cross_fit,
    cross_fitted_array_scores,
    cross_fitted_scores,
    cross_validated_r2,
)
from fmct.evaluate.knn import fit_knn_probe


@pytest.fixture(scope="module")
def labels() -> pd.DataFrame:
    return make_labels(120, sites=("a",))


def test_every_scan_scored_once_by_a_fit_that_never_saw_its_patient(labels, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    emb = separable_embeddings(labels, FINDINGS3)
    patient = dict(zip(labels["scan_id"], labels["patient_id"], strict=True))
    real = crossfit.fit_predict_probe
    scored: list[str] = []

    def spy(method, emb, feature, tr, y_tr, va, y_va, tests, findings, seed):  # type: ignore[no-untyped-def]
        fit_patients = {patient[s] for s in [*tr, *va]}
        assert va and not ({patient[s] for s in tr} & {patient[s] for s in va})  # val split by patient
        assert not fit_patients & {patient[s] for s in tests["test"]}
        scored.extend(tests["test"])
        return real(method, emb, feature, tr, y_tr, va, y_va, tests, findings, seed)

    monkeypatch.setattr(crossfit, "fit_predict_probe", spy)
    s = cross_fitted_scores(emb, labels, "cls", FINDINGS3, "linear")
    assert sorted(scored) == sorted(labels["scan_id"])  # 5 folds, each scan in exactly one
    assert s.shape == (120, 3) and np.isfinite(s).all()


def test_separable_features_rank_well_and_shuffled_labels_do_not(labels) -> None:  # type: ignore[no-untyped-def]
    emb = separable_embeddings(labels, FINDINGS3, signal=3.0)
    fit = cross_fit(emb, labels, "cls", FINDINGS3)
    assert fit.scan_ids == list(labels["scan_id"]) and list(fit.groups) == list(labels["patient_id"])
    for method in ("knn", "linear"):
        assert fit.auroc(method)["macro"] > 0.85, method
    shuffled = labels.copy()
    rng = np.random.default_rng(0)
    for f in FINDINGS3:
        shuffled[f] = rng.permutation(shuffled[f].to_numpy())
    noise = cross_fit(emb, shuffled, "cls", FINDINGS3)
    assert abs(noise.auroc("linear")["macro"] - 0.5) < 0.15


def test_without_validation_part_it_is_the_knn_probe_per_fold(labels) -> None:  # type: ignore[no-untyped-def]
    """val_frac 0: the middle k of the protocol's grid (10), fitted on the other folds' scans."""
    from sklearn.model_selection import GroupKFold

    emb = separable_embeddings(labels, FINDINGS3, signal=1.0)
    x, y = emb.cls, labels[FINDINGS3].to_numpy(float)
    expected = np.full(y.shape, np.nan)
    for tr, te in GroupKFold(5).split(x, groups=labels["patient_id"]):
        expected[te] = fit_knn_probe(x[tr], y[tr], None, None, FINDINGS3).predict_proba(x[te])
    got = cross_fitted_scores(emb, labels, "cls", FINDINGS3, "knn", val_frac=0.0)
    np.testing.assert_allclose(got, expected)


def test_plain_arrays_are_cross_fitted_like_embeddings(labels) -> None:  # type: ignore[no-untyped-def]
    """The array entry point (the pretraining kNN monitor's) runs the same folds and probe fits."""
    emb = separable_embeddings(labels, FINDINGS3, signal=1.0)
    y = labels[FINDINGS3].to_numpy(float)
    for method in ("knn", "linear"):
        got = cross_fitted_array_scores(emb.cls, y, labels["patient_id"], FINDINGS3, method)
        np.testing.assert_allclose(got, cross_fitted_scores(emb, labels, "cls", FINDINGS3, method))


def test_only_embedded_scans_and_clear_errors(labels) -> None:  # type: ignore[no-untyped-def]
    emb = separable_embeddings(labels.iloc[:60], FINDINGS3)
    fit = cross_fit(emb, labels, "cls", FINDINGS3, methods=("linear",))
    assert fit.scan_ids == list(labels["scan_id"].iloc[:60]) and fit.features.shape == (60, 8)
    with pytest.raises(ValueError, match="none of the 5 labelled scans"):
        cross_fit(emb, labels.iloc[100:105], "cls", FINDINGS3)
    one_patient = labels.iloc[:2]
    with pytest.raises(ValueError, match="at least 2 patients"):
        cross_fitted_scores(emb, one_patient, "cls", FINDINGS3, "knn")


def test_cross_validated_r2_recovers_linear_targets_only() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    targets = np.c_[x @ rng.normal(size=6) + 0.05 * rng.normal(size=200), rng.normal(size=200)]
    r2 = cross_validated_r2(x, targets)
    assert r2.shape == (2,) and r2[0] > 0.95 and r2[1] < 0.1
