"""Cross-fitted probes: every labelled scan scored by a probe that never saw its patient.

The evaluation protocol (:mod:`fmct.evaluate.protocol`) fits a probe on a training split, chooses its C
or k on a validation split and scores a held-out test split. On one labelled set that is too small to give
three quarters of it to training, :func:`cross_fit` runs that same fit K times: the patients are cut into
``n_splits`` folds (:class:`sklearn.model_selection.GroupKFold`), each fold is scored by
:func:`~fmct.evaluate.protocol.fit_predict_probe` fitted on the other folds, whose patients are split once
more into train and val (:func:`~fmct.evaluate.splits.make_splits`, ``val_frac``, stratified by ``ich``).
Every scan gets exactly one out-of-fold score, so AUROCs and paired bootstrap CIs
(:mod:`fmct.evaluate.bootstrap`, patients resampled) use the whole set.

:func:`cross_validated_r2` asks the converse question of features: how well a ridge regression recovers
known continuous variables from them (e.g. the synthetic generator's pose and head shape,
:func:`fmct.synth.generator_parameters`), a measure of the nuisance a readout encodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fmct.evaluate.embed import Embeddings
from fmct.evaluate.metrics import auroc_by_finding
from fmct.evaluate.protocol import fit_predict_probe
from fmct.evaluate.splits import make_splits
from fmct.labels.table import label_matrix

DEFAULT_N_SPLITS = 5
DEFAULT_VAL_FRAC = 0.15


@dataclass
class CrossFitted:
    """Out-of-fold probe scores of one set of embeddings on ``n`` labelled scans.

    Attributes:
        scan_ids: n ids.  labels: ``(n, F)`` 0/1 (NaN = unlabelled).  groups: ``(n,)`` patient ids.
        features: ``(n, D)`` the probed readout.  findings: F names.
        scores: method (``linear``, ``knn``) -> ``(n, F)`` out-of-fold scores (NaN where a fold's training
            part had one class of a finding).
    """

    scan_ids: list[str]
    labels: np.ndarray
    groups: np.ndarray
    features: np.ndarray
    findings: list[str]
    scores: dict[str, np.ndarray]

    def auroc(self, method: str) -> dict[str, float | None]:
        """``{finding: AUROC | None, "macro": mean | None}`` of one method's scores
        (:func:`fmct.evaluate.metrics.auroc_by_finding`)."""
        return auroc_by_finding(self.labels, self.scores[method], self.findings)


def cross_fit(
    emb: Embeddings,
    labels: pd.DataFrame,
    feature: str,
    findings: Sequence[str],
    methods: Sequence[str] = ("knn", "linear"),
    n_splits: int = DEFAULT_N_SPLITS,
    val_frac: float = DEFAULT_VAL_FRAC,
    seed: int = 0,
) -> CrossFitted:
    """Cross-fitted scores of each probe ``method`` on the scans of ``labels`` that ``emb`` has embedded.

    Args:
        emb: embeddings (any :class:`Embeddings`, e.g. the HU-histogram reference).
        labels: one row per scan to score, in the order wanted: ``scan_id``, ``patient_id`` (optional; each
            scan its own patient without it) and the ``findings`` columns.
        feature: the readout to probe (:meth:`Embeddings.feature`).
        n_splits: folds (at most the number of patients).  val_frac: share of each fold's training patients
            that selects C / k.  seed: seed of the validation splits and of the probes.

    Returns:
        :class:`CrossFitted`.
    """
    have = set(emb.scan_ids)
    rows = labels[labels["scan_id"].isin(have)].reset_index(drop=True)
    if rows.empty:
        raise ValueError(f"none of the {len(labels)} labelled scans has an embedding")
    ids = list(rows["scan_id"])
    groups = (rows["patient_id"] if "patient_id" in rows else rows["scan_id"]).astype(str).to_numpy()
    scores = {
        m: cross_fitted_scores(emb, rows, feature, findings, m, n_splits, val_frac, seed) for m in methods
    }
    sub = emb.select(ids)
    return CrossFitted(
        ids, label_matrix(rows, ids, list(findings)), groups, sub.feature(feature), list(findings), scores
    )


def cross_fitted_scores(
    emb: Embeddings,
    labels: pd.DataFrame,
    feature: str,
    findings: Sequence[str],
    method: str,
    n_splits: int = DEFAULT_N_SPLITS,
    val_frac: float = DEFAULT_VAL_FRAC,
    seed: int = 0,
) -> np.ndarray:
    """``(n, F)`` out-of-fold scores of ``method`` for the ``n`` rows of ``labels`` (module docstring);
    arguments as in :func:`cross_fit`, every scan of ``labels`` must be embedded."""
    from sklearn.model_selection import GroupKFold

    rows = labels.reset_index(drop=True)
    groups = (rows["patient_id"] if "patient_id" in rows else rows["scan_id"]).astype(str).to_numpy()
    folds = min(n_splits, len(set(groups)))
    if folds < 2:
        raise ValueError(f"cross-fitting needs at least 2 patients, got {folds}")
    out = np.full((len(rows), len(findings)), np.nan)
    for rest, test in GroupKFold(n_splits=folds).split(np.zeros(len(rows)), groups=groups):
        tr, va = _train_val(rows.iloc[rest], groups[rest], val_frac, seed)
        test_ids = list(rows["scan_id"].iloc[test])
        preds = fit_predict_probe(
            method, emb, feature, tr, label_matrix(rows, tr, list(findings)), va,
            label_matrix(rows, va, list(findings)), {"test": test_ids}, findings, seed,
        )  # fmt: skip
        out[test] = preds["test"]
    return out


def cross_fitted_array_scores(
    features: np.ndarray,
    labels: np.ndarray,
    groups: Sequence[str],
    findings: Sequence[str],
    method: str = "knn",
    n_splits: int = DEFAULT_N_SPLITS,
    val_frac: float = DEFAULT_VAL_FRAC,
    seed: int = 0,
) -> np.ndarray:
    """:func:`cross_fitted_scores` of plain arrays (e.g. the pretraining kNN monitor's features).

    Args:
        features: ``(n, D)``.  labels: ``(n, F)`` 0/1 (NaN = unlabelled), columns named by ``findings``.
        groups: ``(n,)`` patient id per row (folds and validation splits never split a patient).
        method, n_splits, val_frac, seed: as in :func:`cross_fit`.

    Returns:
        ``(n, F)`` out-of-fold scores, row order of ``features`` (NaN as in :class:`CrossFitted`).
    """
    x = np.asarray(features, dtype=np.float32)
    ids = [str(i) for i in range(len(x))]
    table = pd.DataFrame(np.asarray(labels, dtype=np.float64), columns=list(findings))
    table.insert(0, "scan_id", ids)
    table.insert(1, "patient_id", np.asarray(groups).astype(str))
    emb = Embeddings(ids, x, x)
    return cross_fitted_scores(emb, table, "cls", findings, method, n_splits, val_frac, seed)


def _train_val(
    rows: pd.DataFrame, groups: np.ndarray, val_frac: float, seed: int
) -> tuple[list[str], list[str]]:
    """Scan ids of a patient-level train / val split of ``rows`` (val: ``val_frac`` of the patients,
    stratified by ``ich`` when it is a column; no val with ``val_frac`` 0)."""
    if val_frac <= 0:
        return list(rows["scan_id"]), []
    table = pd.DataFrame({"scan_id": rows["scan_id"].to_numpy(), "patient_id": groups})
    if "ich" in rows:
        table["ich"] = rows["ich"].to_numpy()
    sp = make_splits(table, val_frac=val_frac, test_frac=0.0, seed=seed)
    return list(sp.loc[sp["split"] == "train", "scan_id"]), list(sp.loc[sp["split"] == "val", "scan_id"])


def cross_validated_r2(x: np.ndarray, targets: np.ndarray, n_splits: int = DEFAULT_N_SPLITS) -> np.ndarray:
    """``(T,)`` mean ``n_splits``-fold CV R² of a ridge regression (standardised features, alpha chosen inside
    from 1e-2 .. 1e4) of each column of ``targets`` ``(n, T)`` on the features ``x`` ``(n, D)``."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    targets = np.asarray(targets, dtype=np.float64)
    return np.asarray(
        [float(cross_val_score(model, x, t, cv=n_splits, scoring="r2").mean()) for t in targets.T]
    )
