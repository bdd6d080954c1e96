"""Evaluation figures (matplotlib, Agg backend): ROC and PR curves per finding, reliability diagrams."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fmct.evaluate.calibration import reliability_bins
from fmct.evaluate.metrics import auroc, average_precision, pr_curve, roc_curve


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=80)
    _plt().close(fig)
    os.replace(tmp, path)
    return path


def _scorable(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    m = np.isfinite(y) & np.isfinite(s)
    yy = y[m].astype(int)
    if len(yy) == 0 or yy.min() == yy.max():
        return None
    return yy, s[m]


def plot_curves(
    labels: np.ndarray, scores: np.ndarray, findings: Sequence[str], title: str, path: str | Path
) -> Path:
    """One PNG with ROC (left) and PR (right) curves of every scorable finding. labels/scores ``(n, F)``."""
    plt = _plt()
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained")
    cmap = plt.get_cmap("tab20")
    for j, f in enumerate(findings):
        r = _scorable(labels[:, j], scores[:, j])
        if r is None:
            continue
        fpr, tpr, _ = roc_curve(*r)
        rec, prec, _ = pr_curve(*r)
        c = cmap(j % 20)
        ax_roc.plot(fpr, tpr, color=c, lw=1.2, label=f"{f} {auroc(*r):.2f}")
        ax_pr.step(rec, prec, where="post", color=c, lw=1.2, label=f"{f} {average_precision(*r):.2f}")
    ax_roc.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC — {title}")
    ax_pr.set(xlabel="recall", ylabel="precision", title=f"PR — {title}", ylim=(0, 1.02))
    for ax in (ax_roc, ax_pr):
        ax.legend(fontsize=7, loc="lower right" if ax is ax_roc else "upper right")
        ax.grid(alpha=0.3)
    return _save(fig, Path(path))


def plot_reliability(
    labels: np.ndarray, scores: np.ndarray, title: str, path: str | Path, n_bins: int = 10
) -> Path:
    """Reliability diagram pooled over findings (every labelled scan × finding pair), with bin counts."""
    plt = _plt()
    b = reliability_bins(np.ravel(labels), np.ravel(scores), n_bins)
    centers = 0.5 * (b["edges"][1:] + b["edges"][:-1])
    fig, (ax, ax_h) = plt.subplots(
        2, 1, figsize=(4.6, 5.2), gridspec_kw={"height_ratios": [3, 1]}, sharex=True, layout="constrained"
    )
    ok = b["count"] > 0
    ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="perfect")
    ax.plot(b["mean_pred"][ok], b["frac_pos"][ok], "o-", label="model")
    ax.set(ylabel="observed frequency", title=f"Reliability — {title}", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax_h.bar(centers, b["count"], width=1.0 / n_bins * 0.9)
    ax_h.set(xlabel="predicted probability", ylabel="count")
    return _save(fig, Path(path))
