"""Linear probe on frozen embeddings: one balanced logistic regression per finding, C chosen on val.

Only the training and validation arrays are ever passed to :func:`fit_linear_probe`; the test and OOD
embeddings are scored afterwards with :meth:`LinearProbe.predict_proba`, so nothing is tuned on test.
Findings with a single class among the training labels are reported as n/a (NaN scores).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmct.evaluate.metrics import auroc

DEFAULT_CS: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)


@dataclass
class LinearProbe:
    """A fitted multi-label linear probe on standardised features.

    Attributes:
        findings: F names.  mean / scale: ``(D,)`` feature standardisation (fit on train).
        coef: ``(F, D)`` weights on standardised features (zero rows for n/a findings).
        intercept: ``(F,)``.  C: chosen inverse regularisation per finding (None when n/a).
        status: per finding ``"ok"`` or ``"n/a: ..."``.
    """

    findings: list[str]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    C: list[float | None] = field(default_factory=list)
    status: list[str] = field(default_factory=list)

    @property
    def ok(self) -> np.ndarray:
        """``(F,)`` bool: findings with a fitted classifier."""
        return np.asarray([s == "ok" for s in self.status])

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """``(n, D) -> (n, F)`` logits; NaN columns for n/a findings."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        logits = z @ self.coef.T + self.intercept
        logits[:, ~self.ok] = np.nan
        return logits

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, D) -> (n, F)`` probabilities in (0, 1); NaN for n/a findings."""
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-self.decision_function(x)))

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """Weights on *raw* features: ``(W (F, D), b (F,))`` with ``W x + b`` = the logits.

        n/a findings get zero weights and a bias of -10 (probability ~0): a saved classifier still
        outputs every finding, and the model card lists which ones were not trained.
        """
        w = self.coef / self.scale[None, :]
        b = self.intercept - w @ self.mean
        w[~self.ok] = 0.0
        b[~self.ok] = -10.0
        return w.astype(np.float32), b.astype(np.float32)


def _standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-8] = 1.0
    return mean, scale


def fit_linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    findings: Sequence[str],
    cs: Sequence[float] = DEFAULT_CS,
    seed: int = 0,
    max_iter: int = 500,
) -> LinearProbe:
    """Fit one ``LogisticRegression(class_weight='balanced')`` per finding; pick C by val AUROC.

    Args:
        x_train: ``(n, D)`` embeddings.  y_train: ``(n, F)`` labels in {0, 1} (NaN = unlabelled).
        x_val / y_val: validation split (may be None, or a finding may have one class there: then
            the middle C of the grid is used).
        cs: grid of inverse regularisation strengths.

    Returns:
        :class:`LinearProbe`.
    """
    from threadpoolctl import threadpool_limits

    # BLAS threads thrash on these small problems (10x slower with 2 threads on 2 busy cores)
    with threadpool_limits(1):
        return _fit_linear_probe(x_train, y_train, x_val, y_val, findings, cs, seed, max_iter)


def _fit_linear_probe(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    findings: Sequence[str],
    cs: Sequence[float],
    seed: int,
    max_iter: int,
) -> LinearProbe:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x_train = np.asarray(x_train, dtype=np.float64)
    y_train = np.asarray(y_train, dtype=np.float64)
    mean, scale = _standardiser(x_train)
    zt = (x_train - mean) / scale
    zv = None if x_val is None else (np.asarray(x_val, dtype=np.float64) - mean) / scale
    f_, d = len(findings), x_train.shape[1]
    coef, intercept = np.zeros((f_, d)), np.zeros(f_)
    chosen: list[float | None] = []
    status: list[str] = []
    cs = sorted(cs)
    for j, _name in enumerate(findings):
        m = np.isfinite(y_train[:, j])
        yj = y_train[m, j].astype(int)
        if len(yj) == 0 or yj.min() == yj.max():
            chosen.append(None)
            status.append("n/a: single class in train")
            continue
        can_select = zv is not None and y_val is not None
        if can_select:
            mv = np.isfinite(y_val[:, j])
            yv = y_val[mv, j].astype(int)
            can_select = len(yv) > 0 and yv.min() != yv.max()
        grid = cs if can_select else [cs[len(cs) // 2]]
        best: tuple[float, float, np.ndarray, float] | None = None
        clf = LogisticRegression(
            class_weight="balanced", max_iter=max_iter, warm_start=True, random_state=seed
        )
        for c in grid:
            clf.set_params(C=c)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                clf.fit(zt[m], yj)
            score = auroc(yv, clf.decision_function(zv[mv])) if can_select else 0.0
            if best is None or score > best[0] + 1e-12:
                best = (score, c, clf.coef_[0].copy(), float(clf.intercept_[0]))
        assert best is not None
        chosen.append(best[1])
        coef[j], intercept[j] = best[2], best[3]
        status.append("ok")
    return LinearProbe(list(findings), mean, scale, coef, intercept, chosen, status)


def save_probe_classifier(
    probe: LinearProbe,
    backbone: object,
    feature: str,
    out_dir: str | Path,
    name: str = "fmct-linear-probe",
    training: dict | None = None,
    card: dict | None = None,
) -> Path:
    """Save backbone + the probe's weights as a classifier model directory (usable by ``fmct predict``).

    Args:
        backbone: a model directory or a loaded Backbone/ClassifierModel — the one that produced the
            embeddings the probe was fitted on.
        feature: the embeddings feature the probe used (``cls``, ``mean_patch``, ``cls+mean``,
            ``brain_max``, ``brain_stats``: the classifier then finds the cranial cavity in each input itself).
        card: model-card fields (``training_data``, ``evaluation``, ...; :func:`fmct.models.model_card.render_model_card`).
    """
    import torch

    from fmct.models.hub import ClassifierModel, load_model

    if isinstance(backbone, str | Path):
        backbone = load_model(backbone)
    if isinstance(backbone, ClassifierModel):
        backbone = backbone.as_backbone()
    from fmct.models.readout import canonical_readout

    feature = canonical_readout(feature)
    clf = ClassifierModel.from_backbone(
        backbone,
        list(probe.findings),
        head_type="linear",
        pooling=feature,
        name=name,
        training={
            "task": "linear_probe",
            "C": probe.C,
            "status": dict(zip(probe.findings, probe.status, strict=True)),
            **(training or {}),
        },
    )
    w, b = probe.folded()
    lin = clf.head.linear
    if tuple(lin.weight.shape) != w.shape:
        raise ValueError(
            f"probe weights {w.shape} do not fit the head {tuple(lin.weight.shape)} (wrong backbone?)"
        )
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w))
        lin.bias.copy_(torch.from_numpy(b))
    return clf.save_pretrained(out_dir, card=card)
