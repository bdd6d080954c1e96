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
    cmap = plt.get_cmap("tab10")
    for j, f in enumerate(findings):
        r = _scorable(labels[:, j], scores[:, j])
        if r is None:
            continue
        fpr, tpr, _ = roc_curve(*r)
        rec, prec, _ = pr_curve(*r)
        c, ls = cmap(j % 10), ("-", "--", ":")[(j // 10) % 3]  # 10 distinct colours, then line styles
        ax_roc.plot(fpr, tpr, color=c, ls=ls, lw=1.2, label=f"{f} {auroc(*r):.2f}")
        ax_pr.step(rec, prec, where="post", color=c, ls=ls, lw=1.2, label=f"{f} {average_precision(*r):.2f}")
        ax_pr.axhline(float(r[0].mean()), color=c, lw=0.8, ls=":", alpha=0.7)  # chance: the prevalence
    ax_roc.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC — {title}")
    ax_pr.set(xlabel="recall", ylabel="precision (dotted: prevalence)", title=f"PR — {title}", ylim=(0, 1.02))
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


def plot_summary(results: Sequence[dict], path: str | Path) -> Path | None:
    """Macro AUROC (mean over seeds, 95 % CI bars) against the label fraction, one line per model and method,
    one panel per test set (ID, OOD side by side). ``results``: the report's result rows. None when no
    setting is a label fraction."""
    rows = [r for r in results if r.get("fraction") is not None and (r.get("auroc") or {}).get("macro")]
    if not rows:
        return None
    plt = _plt()
    tests = list(dict.fromkeys(r["test_set"] for r in rows))
    fig, axes = plt.subplots(
        1, len(tests), figsize=(5.2 * len(tests), 4), layout="constrained", squeeze=False, sharey=True
    )
    series = list(dict.fromkeys((r["model"], r["method"]) for r in rows))
    cmap = plt.get_cmap("tab10")
    for ax, t in zip(axes[0], tests, strict=True):
        for i, (model, method) in enumerate(series):
            pts = sorted(
                (r["fraction"], r["auroc"]["macro"])
                for r in rows
                if (r["model"], r["method"], r["test_set"]) == (model, method, t)
            )
            if not pts:
                continue
            x = [p[0] for p in pts]
            y = [p[1]["mean"] for p in pts]
            err = [[p[1]["mean"] - p[1]["ci"][0] for p in pts], [p[1]["ci"][1] - p[1]["mean"] for p in pts]]
            ax.errorbar(x, y, yerr=err, color=cmap(i % 10), marker="o", capsize=3, lw=1.3,
                        label=model if method == "linear" else f"{model} ({method})")  # fmt: skip
        ax.axhline(0.5, color="k", ls=":", lw=0.8)
        ax.set(xscale="log", xlabel="training labels", ylabel="macro AUROC", title=f"{t} test")
        fracs = sorted({r["fraction"] for r in rows})
        ax.set_xticks(fracs, [f"{100 * f:g} %" for f in fracs])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, Path(path))
