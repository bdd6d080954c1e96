"""The evaluation protocol: probes / fine-tuning × label fractions × seeds, ID vs OOD, bootstrap CIs.

:func:`run_protocol` is THE entry point (used by ``fmct evaluate``, the demo and the benchmark):

1. patient-level splits (given, or made from ``labels.csv``: train/val/test of the training site,
   ``ood`` = other sites), checked with :func:`~fmct.evaluate.splits.assert_patient_disjoint`;
2. per model, per method, per label fraction (or few-shot N), per seed: fit on the training subset,
   select on val (only train/val arrays reach the fit functions), score the ID test and OOD scans;
3. metrics with bootstrap CIs (the same replicate weights for every model and seed, resampling
   patients when patients repeat) → per-seed values, mean ± sd over seeds, CI of the seed-averaged
   metric, paired differences between models, ROC/PR curves, calibration;
4. ``report.json``, ``report.md``, ``report.html`` in ``out_dir``.

Model specs (values of ``models``): an :class:`~fmct.evaluate.embed.Embeddings` object, an embeddings
``.parquet`` path, a model directory (embedded here, cached in ``out_dir/embeddings``), or a dict:
``{"embeddings": path}``, ``{"model": dir, "random_init": true}`` (same architecture, random weights,
frozen), ``{"hu_histogram": {"size": 64}}`` (the intracranial HU histogram, a hand-made reference probed
like an embedding: :mod:`fmct.evaluate.hu_histogram`), or ``{"finetune": {"model": dir | null, "scratch": bool, "arch": "vit3d" | "resnet3d" | preset,
"input_size": 64, "mode": "full" | "lora" | "linear", "epochs": ..., ...}}`` (fine-tuned per fraction and seed).
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fmct import __version__
from fmct.evaluate import bootstrap as bs
from fmct.evaluate.attentive import fit_attentive_probe
from fmct.evaluate.calibration import expected_calibration_error
from fmct.evaluate.embed import (
    CubeCache,
    Embeddings,
    embed_cache,
    embed_store,
    load_embeddings,
    model_input_fit,
    model_input_spec,
    save_embeddings,
)
from fmct.evaluate.hu_histogram import histogram_embeddings
from fmct.evaluate.knn import fit_knn_probe
from fmct.evaluate.plots import plot_curves, plot_reliability, plot_summary
from fmct.evaluate.probe import fit_linear_probe
from fmct.evaluate.report import write_report
from fmct.evaluate.splits import (
    assert_patient_disjoint,
    few_shot,
    load_splits,
    make_splits,
    save_splits,
    subsample_fraction,
)
from fmct.labels.table import (
    keep_matched,
    label_columns,
    label_matrix,
    read_labels,
    unmatched_note,
)
from fmct.models.readout import canonical_readout
from fmct.progress import log_progress
from fmct.store.reader import open_store
from fmct.train.finetune import (
    FinetuneConfig,
    build_model,
    finetune,
    frozen_backbone,
    predict_cache,
    predict_scans,
)

PROBE_METHODS = ("linear", "knn", "attentive")
TEST_SETS = {"id": "test", "ood": "ood"}


@dataclass
class ProtocolConfig:
    """Settings of :func:`run_protocol` (every field can come from ``eval.yaml``)."""

    fractions: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    shots: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods: list[str] = field(default_factory=lambda: ["linear"])
    feature: str = "cls+mean"
    findings: list[str] | None = None
    n_boot: int = 1000
    boot_seed: int = 0
    train_site: str | None = None
    val_frac: float = 0.15
    test_frac: float = 0.25
    split_seed: int = 0
    plots: bool = True
    batch_size: int = 4
    workers: int = 0
    cache_inputs: bool = True  # keep int16 HU cubes of the evaluated scans in memory (shared by all models)
    finetune: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"  # where networks run (embedding, attentive probes, fine-tuning): fmct.device

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProtocolConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown protocol setting(s) {unknown}; known: {sorted(names)}")
        cfg = cls(**dict(d))
        bad = sorted(set(cfg.methods) - set(PROBE_METHODS))
        if bad:
            raise ValueError(f"unknown probe method(s) {bad}; choose from {PROBE_METHODS}")
        cfg.feature = canonical_readout(cfg.feature)  # an unknown readout fails here, before any embedding
        return cfg


class MultiStore:
    """Several stores seen as one: ``scan_ids`` is the union, ``load`` dispatches by scan id."""

    def __init__(self, stores: Sequence[Any]) -> None:
        self.stores = [open_store(s) for s in stores]
        self._where: dict[str, Any] = {}
        for st in self.stores:
            for sid in st.scan_ids:
                self._where.setdefault(sid, st)
        self.scan_ids = list(self._where)

    def load(self, scan_id: str) -> Any:
        if scan_id not in self._where:
            raise KeyError(f"scan {scan_id} is in no store")
        return self._where[scan_id].load(scan_id)


@dataclass
class Context:
    """What hooks (e.g. retrieval) receive: splits, labels, findings, per-model embeddings, out dir."""

    splits: pd.DataFrame
    labels: pd.DataFrame
    findings: list[str]
    embeddings: dict[str, Embeddings]
    out_dir: Path
    config: ProtocolConfig


# ------------------------------------------------------------------------------------------------ fitting
def fit_predict_probe(
    method: str,
    emb: Embeddings,
    feature: str,
    tr: Sequence[str],
    y_tr: np.ndarray,
    va: Sequence[str],
    y_va: np.ndarray,
    tests: Mapping[str, Sequence[str]],
    findings: Sequence[str],
    seed: int,
    device: Any = None,
) -> dict[str, np.ndarray]:
    """Fit a probe (``linear``, ``knn`` or ``attentive``) on the ``tr`` scans of ``emb`` with labels ``y_tr``
    ``(n, F)``, choosing its C / k on ``va``, and score each test set: ``{name: (m, F) scores}``. Test ids
    never reach the fit; the attentive probe trains on ``device`` (linear and kNN probes are scikit-learn, on
    the CPU). The one probe fit of the protocol (:func:`run_protocol`) and of cross-fitting
    (:mod:`fmct.evaluate.crossfit`)."""
    if method == "linear":
        p = fit_linear_probe(
            emb.select(tr).feature(feature), y_tr, emb.select(va).feature(feature), y_va, findings, seed=seed
        )
        return {k: p.predict_proba(emb.select(ids).feature(feature)) for k, ids in tests.items()}
    if method == "knn":
        p = fit_knn_probe(
            emb.select(tr).feature(feature), y_tr, emb.select(va).feature(feature), y_va, findings
        )
        return {k: p.predict_proba(emb.select(ids).feature(feature)) for k, ids in tests.items()}
    if method == "attentive":
        if emb.patch is None:
            raise ValueError("the attentive probe needs patch tokens (embed with patch tokens kept)")
        p = fit_attentive_probe(
            emb.select(tr).patch, y_tr, emb.select(va).patch, y_va, findings, seed=seed, device=device
        )
        return {k: p.predict_proba(emb.select(ids).patch) for k, ids in tests.items()}
    raise ValueError(f"unknown method {method!r}")


def _train_subsets(cfg: ProtocolConfig, y_train: np.ndarray) -> list[tuple[str, dict[str, Any], Callable]]:
    """(setting name, fields, seed -> train row indices) for each fraction and few-shot N."""
    out: list[tuple[str, dict[str, Any], Callable]] = []
    for f in cfg.fractions:
        out.append(
            (
                f"{float(f):g}",
                {"fraction": float(f), "shots": None},
                lambda s, f=f: subsample_fraction(y_train, float(f), s),
            )
        )
    for k in cfg.shots:
        out.append(
            (
                f"{int(k)}-shot",
                {"fraction": None, "shots": int(k)},
                lambda s, k=k: few_shot(y_train, int(k), s),
            )
        )
    return out


# ------------------------------------------------------------------------------------------------ scoring
def _replicates(y: np.ndarray, s: np.ndarray, w: np.ndarray, findings: Sequence[str]) -> dict[str, dict]:
    """metric -> finding -> (point, (B,) replicates) | None."""
    return {
        m: {f: bs.finding_replicates(y[:, j], s[:, j], w, m) for j, f in enumerate(findings)}
        for m in ("auroc", "ap")
    }


def _aggregate(per_seed: list[dict[str, dict]], findings: Sequence[str]) -> dict[str, Any]:
    """mean ± sd over seeds and the CI of the seed-averaged metric, per finding and macro."""
    out: dict[str, Any] = {}
    for m in ("auroc", "ap"):
        res: dict[str, Any] = {}
        macro_pts, macro_reps = [], []
        usable = [f for f in findings if all(r[m][f] is not None for r in per_seed)]
        for f in findings:
            if f not in usable:
                res[f] = None
                continue
            pts = np.asarray([r[m][f][0] for r in per_seed])
            reps = np.mean([r[m][f][1] for r in per_seed], axis=0)
            res[f] = {
                "mean": float(pts.mean()),
                "sd": float(pts.std(ddof=1)) if len(pts) > 1 else 0.0,
                "ci": bs._ci(reps),
                "seeds": [float(v) for v in pts],
            }
            macro_pts.append(pts)
            macro_reps.append(reps)
        if usable:
            pts = np.mean(macro_pts, axis=0)
            with bs._quiet():
                reps = np.nanmean(np.stack(macro_reps), axis=0)
            res["macro"] = {
                "mean": float(pts.mean()),
                "sd": float(pts.std(ddof=1)) if len(pts) > 1 else 0.0,
                "ci": bs._ci(reps),
                "seeds": [float(v) for v in pts],
                "findings": usable,
            }
        else:
            res["macro"] = None
        out[m] = res
    return out


def _macro_reps(
    per_seed: list[dict[str, dict]], findings: Sequence[str], metric: str
) -> tuple[float, np.ndarray]:
    pts, reps = [], []
    for f in findings:
        pts.append(np.mean([r[metric][f][0] for r in per_seed]))
        reps.append(np.mean([r[metric][f][1] for r in per_seed], axis=0))
    with bs._quiet():
        return float(np.mean(pts)), np.nanmean(np.stack(reps), axis=0)


def _compare(
    a: list[dict], b: list[dict], findings: Sequence[str], metric: str = "auroc"
) -> dict[str, Any] | None:
    """Paired difference a − b of the seed-averaged metric (same bootstrap replicates)."""
    common = [f for f in findings if all(r[metric][f] is not None for r in a + b)]
    if not common:
        return None
    pa, ra = _macro_reps(a, common, metric)
    pb, rb = _macro_reps(b, common, metric)
    d = ra - rb
    fin = d[np.isfinite(d)]
    per = {}
    for f in common:
        da = np.mean([r[metric][f][1] for r in a], axis=0) - np.mean([r[metric][f][1] for r in b], axis=0)
        pf = np.mean([r[metric][f][0] for r in a]) - np.mean([r[metric][f][0] for r in b])
        per[f] = {"value": float(pf), "ci": bs._ci(da)}
    return {
        "value": pa - pb,
        "ci": bs._ci(d),
        "p_le_0": float(np.mean(fin <= 0)) if len(fin) else None,
        "findings": common,
        "per_finding": per,
    }


# ------------------------------------------------------------------------------------------------ models
def _resolve_embeddings(
    name: str,
    spec: Any,
    store: Any,
    out_dir: Path,
    cfg: ProtocolConfig,
    scan_ids: Sequence[str],
    log: Callable[[str], None],
    cubes: Callable[..., CubeCache] | None = None,
) -> Embeddings | None:
    """Embeddings for a probe-type spec; None for fine-tuning specs."""
    if isinstance(spec, Embeddings):
        return spec
    if isinstance(spec, Mapping):
        if "finetune" in spec:
            return None
        if "hu_histogram" in spec:
            return _histogram(name, spec["hu_histogram"], store, scan_ids, log, cubes)
        if "embeddings" in spec:
            return load_embeddings(spec["embeddings"])
        if "model" not in spec:
            raise ValueError(f"model {name!r}: spec needs 'embeddings', 'model' or 'finetune'")
        model_src, random_init = spec["model"], bool(spec.get("random_init", False))
    else:
        model_src, random_init = spec, False
    if not hasattr(model_src, "embed"):
        p = Path(model_src)
        if p.suffix == ".parquet":
            return load_embeddings(p)
    if store is None:
        raise ValueError(f"model {name!r} must be embedded but no store was given")
    model = model_src
    if random_init or isinstance(model_src, str | Path):
        model = frozen_backbone(model_src, random_init, seed=cfg.split_seed)
    out = out_dir / "embeddings" / f"{name}.parquet"
    log(f"embedding {len(scan_ids)} scans with {name}")
    if cubes is not None:
        emb = embed_cache(
            model,
            cubes(model_input_spec(model)[0], model_input_fit(model)),
            cfg.batch_size,
            keep_patch="attentive" in cfg.methods,
            meta={"model_name": name},
            device=cfg.device,
            progress=log_progress(log, f"embedding {name}"),
        )
        save_embeddings(emb, out)
        return emb
    embed_store(
        model,
        store,
        out,
        batch_size=cfg.batch_size,
        workers=cfg.workers,
        scan_ids=scan_ids,
        keep_patch="attentive" in cfg.methods,
        progress=log_progress(log, f"embedding {name}"),
        meta={"model_name": name},
        device=cfg.device,
    )
    return load_embeddings(out)


def _histogram(
    name: str,
    opts: Any,
    store: Any,
    scan_ids: Sequence[str],
    log: Callable[[str], None],
    cubes: Callable[..., CubeCache] | None,
) -> Embeddings:
    """The intracranial HU-histogram reference (:mod:`fmct.evaluate.hu_histogram`) of every scan, from the
    shared cube cache when there is one; ``opts``: ``true`` or ``{"size": cube edge in voxels, default 64}``."""

    if store is None:
        raise ValueError(
            f"model {name!r}: the HU histogram is computed from the scans, but no store was given"
        )
    size = int((opts if isinstance(opts, Mapping) else {}).get("size", 64))
    log(f"{name}: intracranial HU histogram of {len(scan_ids)} scans at {size}³")
    cache = cubes(size) if cubes is not None else CubeCache(store, scan_ids, size)
    return histogram_embeddings(cache, {"model_name": name})


@dataclass
class _Sets:
    """The scans and arrays one protocol run evaluates on (built by :func:`_prepare_sets`).

    ``ids``: split -> scan ids (train, val, test, ood); ``tests``: test set name (id, ood) -> scan ids;
    ``y``: split -> ``(n, F)`` labels; ``weights``: test set -> ``(n_boot, n)`` bootstrap replicate weights.
    """

    df: pd.DataFrame
    findings: list[str]
    splits: pd.DataFrame
    ids: dict[str, list[str]]
    tests: dict[str, list[str]] = field(default_factory=dict)
    y: dict[str, np.ndarray] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    patient: pd.Series | None = None


@dataclass
class _Fits:
    """Results of fitting every model (:func:`_fit_models`): per (model, method, setting, test set) the
    bootstrap replicates of each seed; the headline setting's first-seed scores; one row per fit."""

    per_seed: dict[tuple[str, str, str, str], list[dict]] = field(default_factory=dict)
    scores: dict[tuple[str, str, str], np.ndarray] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)


def run_protocol(
    models: Mapping[str, Any],
    labels: str | Path | pd.DataFrame,
    out_dir: str | Path,
    store: Any = None,
    splits: str | Path | pd.DataFrame | None = None,
    config: ProtocolConfig | Mapping[str, Any] | None = None,
    hooks: Mapping[str, Callable[[Context], dict[str, Any]]] | None = None,
    log: Callable[[str], None] | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """Run the evaluation protocol and write ``report.{json,md,html}`` (+ plots) into ``out_dir``.

    Args:
        models: name -> spec (see the module docstring), e.g. ``{"ssl": "runs/x/model",
            "random": {"model": "runs/x/model", "random_init": True},
            "scratch": {"finetune": {"arch": "resnet3d", "epochs": 5}}}``.
        labels: labels CSV (or DataFrame) with ``scan_id``, ``patient_id``, ``site`` and finding columns.
        store: a store directory, a list of them, or an object with ``.load`` (needed to embed model
            directories and to fine-tune).
        splits: splits CSV/DataFrame; default: :func:`make_splits` on the labels.
        config: :class:`ProtocolConfig` or a dict of its fields.
        hooks: name -> function(Context) -> JSON-able dict, stored under ``report[name]`` (e.g. retrieval).

    Returns:
        The report dict (also written as report.json).
    """
    t0 = time.time()
    cfg = config if isinstance(config, ProtocolConfig) else ProtocolConfig.from_dict(config or {})
    log = log or (lambda _m: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(store, list | tuple):
        store = MultiStore(store)
    elif store is not None:
        store = open_store(store)
    sets = _prepare_sets(labels, splits, cfg, store, log)
    needed = [s for k in ("train", "val", "test", "ood") for s in sets.ids[k]]
    cube_fn = _cube_cache(store, needed, log) if (cfg.cache_inputs and store is not None) else None
    embs: dict[str, Embeddings] = {}
    for name, spec in models.items():
        e = _resolve_embeddings(name, spec, store, out_dir, cfg, needed, log, cube_fn)
        if e is not None:
            embs[name] = e
    _keep_embedded(sets, embs, needed, log)
    _finish_sets(sets, cfg)
    subsets = _train_subsets(cfg, sets.y["train"])
    headline = subsets[0][0] if not cfg.fractions else f"{float(max(cfg.fractions)):g}"
    fits = _fit_models(models, _Fitting(embs, sets, headline, cfg, store, out_dir, cube_fn, log), subsets)
    calibration, plots = _calibration_and_plots(fits.scores, sets, headline, cfg, out_dir, write)
    report: dict[str, Any] = {
        "meta": {**_report_meta(models, sets, headline, cfg), "provenance": provenance(labels, store)},
        "results": _results(fits.per_seed, subsets, sets),
        "comparisons": _comparisons(fits.per_seed, list(models), sets.findings),
        "calibration": calibration,
        "plots": plots,
        "runs": fits.runs,
    }
    if cfg.plots and write:
        summary = plot_summary(report["results"], out_dir / "plots" / "summary.png")
        if summary is not None:
            report["meta"]["summary_plot"] = str(summary.relative_to(out_dir))
    if hooks is None:
        from fmct.evaluate.retrieval_eval import retrieval_report

        hooks = {"retrieval": retrieval_report}
    if hooks and embs:
        ctx = Context(sets.splits, sets.df, sets.findings, embs, out_dir, cfg)
        for hname, fn in hooks.items():
            report[hname] = fn(ctx)
    report["meta"]["seconds"] = round(time.time() - t0, 2)
    if write:
        save_splits(sets.splits, out_dir / "splits.csv")
        write_report(report, out_dir)
    return report


def _prepare_sets(
    labels: str | Path | pd.DataFrame,
    splits: str | Path | pd.DataFrame | None,
    cfg: ProtocolConfig,
    store: Any,
    log: Callable[[str], None],
) -> _Sets:
    """Labels, findings and patient-disjoint splits restricted to labelled scans (and to the store's)."""
    df = labels.copy() if isinstance(labels, pd.DataFrame) else read_labels(labels)
    findings = label_columns(df, cfg.findings)
    if not findings:
        raise ValueError("no finding columns to evaluate")
    if splits is None:
        sp = make_splits(df, cfg.train_site, cfg.val_frac, cfg.test_frac, seed=cfg.split_seed)
    else:
        sp = splits.copy() if isinstance(splits, pd.DataFrame) else load_splits(splits)
    assert_patient_disjoint(sp)
    sp = sp[sp["scan_id"].isin(set(df["scan_id"]))]
    if store is not None:
        have = set(store.scan_ids)
        used = sp["split"].isin(["train", "val", "test", "ood"])
        keep_matched(list(sp.loc[used, "scan_id"]), have, "scan in the store", lambda m: log(f"warning: {m}"))
        sp = sp[sp["scan_id"].isin(have) | ~used]
    ids = {k: list(sp.loc[sp["split"] == k, "scan_id"]) for k in ("train", "val", "test", "ood")}
    return _Sets(df, findings, sp, ids)


def _cube_cache(store: Any, needed: list[str], log: Callable[[str], None]) -> Callable[..., CubeCache]:
    """``(size, fit="resize") -> CubeCache``: HU cubes of every evaluated scan at ``size``³, loaded once,
    shared by all models (``fit``: :func:`fmct.preprocess.model_input.cube_hu`)."""
    caches: dict[tuple[int, str], CubeCache] = {}

    def cubes(size: int, fit: str = "resize") -> CubeCache:
        if (size, fit) not in caches:
            log(f"loading {len(needed)} scans at {size}³" + ("" if fit == "resize" else f" ({fit})"))
            caches[size, fit] = CubeCache(store, needed, size, log_progress(log, f"loading {size}³"), fit)
        return caches[size, fit]

    return cubes


def _keep_embedded(
    sets: _Sets, embs: dict[str, Embeddings], needed: list[str], log: Callable[[str], None]
) -> None:
    """Evaluate every model on the same scans: drop from ``sets.ids`` the scans some model has no embedding of
    (an error when a model has none of them)."""
    for name, e in embs.items():
        have_e = set(e.scan_ids)
        lost = [s for s in needed if s not in have_e]
        if lost and len(lost) == len(needed):
            raise ValueError(
                f"{name}: none of the {len(needed)} labelled scans has an embedding (e.g. {needed[0]} is not "
                f"among its {len(have_e)} scan ids): were the labels and the embeddings made from the same store?"
            )
        if lost:
            log(
                f"warning: {name}: {unmatched_note(needed, have_e, 'embedding')}, for every model's evaluation"
            )
            sets.ids = {k: [s for s in v if s in have_e] for k, v in sets.ids.items()}


def _finish_sets(sets: _Sets, cfg: ProtocolConfig) -> None:
    """Test sets, label matrices and the bootstrap replicate weights (patients resampled when they repeat)."""
    if not sets.ids["train"]:
        raise ValueError("the training split is empty")
    sets.tests = {name: sets.ids[s] for name, s in TEST_SETS.items() if sets.ids[s]}
    if not sets.tests:
        raise ValueError("no test scans (neither an ID test split nor OOD scans)")
    sets.y = {k: label_matrix(sets.df, v, sets.findings) for k, v in sets.ids.items()}
    pid = sets.df.set_index("scan_id")["patient_id"] if "patient_id" in sets.df else None
    sets.patient = pid
    sets.weights = {
        name: bs.bootstrap_weights(
            len(t),
            cfg.n_boot,
            cfg.boot_seed,
            None if pid is None else pid.reindex(t).fillna("").astype(str).to_numpy(),
        )
        for name, t in sets.tests.items()
    }


@dataclass
class _Fitting:
    """What every fit of one protocol run shares (:func:`_fit_models`), and where the results go (``fits``)."""

    embs: dict[str, Embeddings]
    sets: _Sets
    headline: str
    cfg: ProtocolConfig
    store: Any
    out_dir: Path
    cube_fn: Callable[..., CubeCache] | None
    log: Callable[[str], None]
    fits: _Fits = field(default_factory=_Fits)


def _fit_models(
    models: Mapping[str, Any],
    ctx: _Fitting,
    subsets: list[tuple[str, dict[str, Any], Callable]],
) -> _Fits:
    """Every model × method × training subset × seed: fit on train (select on val), score the test sets."""
    for name, spec in models.items():
        is_ft = isinstance(spec, Mapping) and "finetune" in spec
        methods = [f"finetune-{(spec['finetune'] or {}).get('mode', 'full')}"] if is_ft else ctx.cfg.methods
        ft_spec = dict(ctx.cfg.finetune, **(spec["finetune"] or {})) if is_ft else None
        seeds = ft_spec.pop("seeds", ctx.cfg.seeds) if ft_spec is not None else ctx.cfg.seeds
        only = ft_spec.pop("fractions", None) if ft_spec is not None else None
        for method, (setting, sfields, pick) in itertools.product(methods, subsets):
            if only is not None and sfields["fraction"] not in [float(f) for f in only]:
                continue
            for seed in distinct_seeds(method, sfields, seeds):
                _fit_one(ctx, name, ft_spec, method, setting, pick(seed), seed, first=seed == seeds[0])
    return ctx.fits


def distinct_seeds(method: str, sfields: Mapping[str, Any], seeds: Sequence[int]) -> list[int]:
    """The seeds that can give different results: a linear or kNN probe on all training labels (fraction 1)
    fits the same data the same way whatever the seed (lbfgs and kNN are deterministic), so it runs once."""
    if method in ("linear", "knn") and sfields.get("fraction") == 1.0:
        return list(seeds[:1])
    return list(seeds)


def _fit_one(
    ctx: _Fitting,
    name: str,
    ft_spec: dict[str, Any] | None,
    method: str,
    setting: str,
    rows: np.ndarray,
    seed: int,
    first: bool,
) -> None:
    """Fit one model (fine-tuned when ``ft_spec`` is given, else probed with ``method``) on the training
    ``rows`` with ``seed``; adds its test-set replicates, scores (``first`` seed of the headline) and run row."""
    sets, tsec = ctx.sets, time.time()
    tr = [sets.ids["train"][i] for i in rows]
    y_tr = sets.y["train"][rows]
    if ft_spec is not None:
        steps = log_progress(ctx.log, f"{name} fine-tuning {setting} seed {seed}")
        preds = _finetune_predict(
            name, ft_spec, ctx.store, tr, y_tr, sets.ids["val"], sets.y["val"], sets.tests, sets.findings, seed,
            ctx.out_dir, ctx.cube_fn, ctx.cfg.device, steps,
        )  # fmt: skip
    else:
        preds = fit_predict_probe(
            method, ctx.embs[name], ctx.cfg.feature, tr, y_tr, sets.ids["val"], sets.y["val"], sets.tests,
            sets.findings, seed, ctx.cfg.device,
        )  # fmt: skip
    for tname, s in preds.items():
        yt = label_matrix(sets.df, sets.tests[tname], sets.findings)
        reps = _replicates(yt, s, sets.weights[tname], sets.findings)
        ctx.fits.per_seed.setdefault((name, method, setting, tname), []).append(reps)
        if setting == ctx.headline and first:
            ctx.fits.scores[(name, method, tname)] = s
    seconds = time.time() - tsec
    ctx.fits.runs.append({"model": name, "method": method, "setting": setting, "seed": int(seed),
                          "n_train": len(tr), "seconds": round(seconds, 3)})  # fmt: skip
    ctx.log(f"{name} {method} {setting} seed {seed}: {len(tr)} training scans, {seconds:.0f} s")


def _results(
    per_seed: dict[tuple[str, str, str, str], list[dict]],
    subsets: list[tuple[str, dict[str, Any], Callable]],
    sets: _Sets,
) -> list[dict[str, Any]]:
    """One result row per model × method × setting × test set: metrics aggregated over seeds, with CIs."""
    out = []
    for (name, method, setting, tname), reps in per_seed.items():
        sfields = next(f for s, f, _ in subsets if s == setting)
        out.append({"model": name, "method": method, "setting": setting, **sfields, "test_set": tname,
                    "n_test": len(sets.tests[tname]), "n_seeds": len(reps), **_aggregate(reps, sets.findings)})  # fmt: skip
    return out


def _comparisons(
    per_seed: dict[tuple[str, str, str, str], list[dict]], names: list[str], findings: list[str]
) -> list[dict[str, Any]]:
    """Paired differences: every pair of models with the same method, setting and test set (AUROC and AP),
    and fine-tuned models against the probes of the same setting (AUROC). Each side's metric is averaged
    over its own seeds (a fine-tuned baseline may run fewer seeds than a probe) on the same bootstrap
    replicates of the same test scans."""
    out = []
    keys = sorted({(m, s, t) for (_, m, s, t) in per_seed})
    for (method, setting, tname), (a, b) in itertools.product(keys, itertools.combinations(names, 2)):
        ra, rb = per_seed.get((a, method, setting, tname)), per_seed.get((b, method, setting, tname))
        if ra is None or rb is None or len(ra) != len(rb):
            continue
        for metric in ("auroc", "ap"):
            c = _compare(ra, rb, findings, metric)
            if c is not None:
                out.append({"a": a, "b": b, "method": method, "setting": setting, "test_set": tname,
                            "metric": metric, **c})  # fmt: skip
    for (ka, ra), (kb, rb) in itertools.combinations(per_seed.items(), 2):
        if ka[0] == kb[0] or ka[1] == kb[1] or ka[2:] != kb[2:]:
            continue
        if not (ka[1].startswith("finetune") or kb[1].startswith("finetune")):
            continue
        c = _compare(ra, rb, findings, "auroc")
        if c is not None:
            out.append({"a": ka[0], "b": kb[0], "method": f"{ka[1]} vs {kb[1]}", "setting": ka[2],
                        "test_set": ka[3], "metric": "auroc", **c})  # fmt: skip
    return out


def _calibration_and_plots(
    scores: dict[tuple[str, str, str], np.ndarray],
    sets: _Sets,
    headline: str,
    cfg: ProtocolConfig,
    out_dir: Path,
    write: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """ECE per finding and pooled of the headline setting's first seed, and its ROC/PR and reliability plots."""
    calibration: dict[str, Any] = {}
    plots: dict[str, Any] = {}
    for (name, method, tname), s in scores.items():
        yt = label_matrix(sets.df, sets.tests[tname], sets.findings)
        key = f"{name}/{method}/{tname}"
        calibration[key] = {
            "setting": headline,
            "ece": {f: _ece(yt[:, j], s[:, j]) for j, f in enumerate(sets.findings)},
            "ece_pooled": _ece(yt.ravel(), s.ravel()),
        }
        if cfg.plots and write:
            stem = f"{name}_{method}_{tname}".replace("/", "_")
            title = f"{name} {method} {tname} (labels {headline}, seed {cfg.seeds[0]})"
            curves = plot_curves(yt, s, sets.findings, title, out_dir / "plots" / f"{stem}_curves.png")
            rel = plot_reliability(yt, s, title, out_dir / "plots" / f"{stem}_reliability.png")
            plots[key] = {
                "curves": str(curves.relative_to(out_dir)),
                "reliability": str(rel.relative_to(out_dir)),
            }
    return calibration, plots


def provenance(labels: Any, store: Any) -> dict[str, Any]:
    """What made the report: fmct version, git commit of the code when it runs from a checkout, UTC date,
    SHA-256 (first 16 hex) of the labels file and of each store's manifest."""

    def sha(path: Path) -> str | None:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None

    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        git = None
    stores = store.stores if isinstance(store, MultiStore) else ([store] if store is not None else [])
    roots = [Path(st.root) for st in stores if hasattr(st, "root")]
    return {
        "fmct_version": __version__,
        "git_commit": git,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "labels_sha256": sha(Path(labels)) if isinstance(labels, str | Path) else None,
        "stores": {str(r): sha(r / "manifest.parquet") for r in roots},
    }


def _report_meta(
    models: Mapping[str, Any], sets: _Sets, headline: str, cfg: ProtocolConfig
) -> dict[str, Any]:
    pid = sets.patient
    return {
        "findings": sets.findings,
        "test_sets": {k: len(v) for k, v in sets.tests.items()},
        "positives": {
            t: {
                f: int(np.nansum(label_matrix(sets.df, ids, sets.findings)[:, j]))
                for j, f in enumerate(sets.findings)
            }
            for t, ids in sets.tests.items()
        },
        "n_train": len(sets.ids["train"]),
        "n_val": len(sets.ids["val"]),
        "headline_setting": headline,
        "train_site": cfg.train_site or _train_site(sets.splits),
        "config": _jsonable(vars(cfg)),
        "models": {k: _describe(v) for k, v in models.items()},
        "patients_resampled": bool(
            pid is not None and any(len(set(pid.reindex(t))) < len(t) for t in sets.tests.values())
        ),
    }


def _finetune_predict(
    name: str,
    spec: dict[str, Any],
    store: Any,
    tr: list[str],
    y_tr: np.ndarray,
    va: list[str],
    y_va: np.ndarray,
    tests: Mapping[str, Sequence[str]],
    findings: Sequence[str],
    seed: int,
    out_dir: Path,
    cubes: Callable[..., CubeCache] | None = None,
    device: Any = None,
    progress: bool | Callable[[int, int], None] = False,
) -> dict[str, np.ndarray]:
    """Fine-tune model spec ``name`` on the training scans ``tr`` (early stopping on ``va``) and predict each
    test set: ``{test set: (n, F) probabilities}``; ``progress``: a ``(done, total)`` callback of the steps."""
    if store is None:
        raise ValueError(f"model {name!r}: fine-tuning needs a store")
    spec = dict(spec)
    build_kw = {k: spec.pop(k) for k in ("model", "scratch", "arch", "input_size", "pooling") if k in spec}
    save = bool(spec.pop("save", False))
    model = build_model(
        build_kw.pop("model", None), findings, preprocessing=_store_prep(store), seed=int(seed), **build_kw
    )
    ftc = FinetuneConfig(**{**spec, "seed": int(seed)})
    size, windows = model_input_spec(model)
    cache = None if cubes is None else cubes(size, model_input_fit(model))
    model, _info = finetune(
        model,
        store,
        tr,
        y_tr,
        va,
        y_va,
        findings,
        ftc,
        out_dir=(out_dir / "models" / f"{name}_seed{seed}_n{len(tr)}") if save else None,
        cache=None if cache is None else {"train": cache.subset(tr), "val": cache.subset(va)},
        device=device,
        progress=progress,
    )
    if cache is not None:
        return {
            k: predict_cache(model, cache.subset(list(ids)), windows, ftc.batch_size)
            for k, ids in tests.items()
        }
    return {k: predict_scans(model, store, list(ids)) for k, ids in tests.items()}


def _store_prep(store: Any) -> dict[str, Any] | None:
    st = store.stores[0] if isinstance(store, MultiStore) else store
    prep = getattr(st, "preprocess_config", None)
    return dict(prep) if isinstance(prep, Mapping) else None


def _ece(y: np.ndarray, s: np.ndarray) -> float | None:
    v = expected_calibration_error(y, s)
    return None if not np.isfinite(v) else v


def _train_site(sp: pd.DataFrame) -> str | None:
    s = sp.loc[sp["split"] == "train", "site"] if "site" in sp else pd.Series([], dtype=str)
    return str(s.mode().iloc[0]) if len(s) else None


def _describe(spec: Any) -> Any:
    if isinstance(spec, Embeddings):
        return {"embeddings": spec.meta or "in memory"}
    if isinstance(spec, Mapping):
        return _jsonable(dict(spec))
    return str(spec) if isinstance(spec, str | Path) else type(spec).__name__


def _jsonable(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, str | int | float | bool) or x is None:
        return x
    return str(x)
