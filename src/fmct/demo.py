"""`fmct demo`: the whole idea of FM-CT on the built-in synthetic cohort, in minutes on a laptop.

Stages (each reused when re-run; delete its folder to redo it)::

    cohort/   fmct synth: site a labelled (train/val/ID test), sites b and c (external, OOD test); with
              pretraining in the demo also a site a pool (unlabelled)
    store_eval/  fmct ingest of the labelled scans
    backbone  the given one (``DemoConfig.backbone``; the CLI passes the shipped weights/demo-vit), or
              store_pool/ + runs/ssl/: fmct ingest of the pool and fmct pretrain (configs/demo-cpu.yaml)
    report/   fmct evaluate: SSL linear probe vs the same ViT at random init (frozen; both read the max
              over the intracranial patch tokens, ``brain_max``) vs a 3D ResNet trained from scratch vs a
              logistic regression on the intracranial HU histogram, at several label fractions; ID vs
              OOD; bootstrap CIs and paired differences (SSL minus each other model)
    models/   backbone/ (the pretrained ViT) and classifier/ (backbone + linear probe): both are model
              directories that `fmct predict` accepts
    saliency/ the classifier's saliency maps of a few ID test scans with findings, scored against the
              synthetic lesion masks (cohort/a_labelled/masks/); the scores go into the report
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fmct.evaluate.embed import load_embeddings
from fmct.evaluate.probe import fit_linear_probe, save_probe_classifier
from fmct.evaluate.protocol import run_protocol
from fmct.evaluate.report import write_report
from fmct.evaluate.splits import load_splits
from fmct.infer.saliency_eval import score_saliency
from fmct.ingest import run_ingest as ingest
from fmct.labels import FINDINGS
from fmct.labels.table import label_matrix, read_labels
from fmct.models.hub import load_model
from fmct.models.readout import canonical_readout
from fmct.preprocess import PreprocessConfig
from fmct.train.config import resolve_config
from fmct.train.distributed import cleanup
from fmct.train.loop import train

#: Where the repository's configs live (the demo uses configs/demo-cpu.yaml).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
#: The pretrained backbone shipped with the repository (made by ``make weights``; its model card says how).
SHIPPED_BACKBONE = Path(__file__).resolve().parents[2] / "weights" / "demo-vit"


@dataclass
class DemoConfig:
    """Sizes of the demo. Defaults fit ≲ 10 min on 2 CPU cores."""

    seed: int = 0
    n_pool: int = 160  # site a, unlabelled: pretraining data
    # sizes that resolve a 0.05 AUROC difference: >= 300 ID test scans, >= 150 per external site, and 10 % of
    # the training split is >= 50 scans (issue "Pretraining that pays", section 3)
    n_labelled: int = 900  # site a, labelled: train / val / ID test (split by patient)
    n_ood: int = 150  # per external site (b, c)
    val_frac: float = 0.10  # of site a's patients: validation (probe / early-stopping selection only)
    test_frac: float = 0.34  # of site a's patients: the ID test set
    size: int = 128  # synthetic in-plane matrix (pixel spacing = FOV / size)
    spacing: float = 2.0  # ingest spacing in mm (the demo model sees the head as a 48³ cube, ~4 mm voxels)
    workers: int = 2
    deface: bool = (
        True  # stores are defaced (face-reconstruction risk); the models record it, predict repeats it
    )
    #: a model directory to evaluate instead of pretraining in the demo (no pool is made); the CLI passes the
    #: shipped SHIPPED_BACKBONE unless told to pretrain (``fmct demo --pretrain``, ``--config``, ``--set``)
    backbone: str | None = None
    pretrain_config: str = str(CONFIG_DIR / "demo-cpu.yaml")
    pretrain_overrides: list[str] = field(default_factory=list)
    fractions: list[float] = field(default_factory=lambda: [0.1, 1.0])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    scratch_arch: str = "resnet3d"  # the from-scratch baseline: resnet3d, or vit3d (the SSL ViT's own config)
    scratch_input_size: int = 48  # its input cube edge in voxels (the demo ViT's global view is 48³)
    scratch_epochs: int = 6
    scratch_fractions: list[float] = field(default_factory=lambda: [0.1, 1.0])
    scratch_seeds: list[int] = field(default_factory=lambda: [0])
    #: cube edge of the intracranial HU-histogram reference (fmct.evaluate.hu_histogram)
    histogram_size: int = 48
    n_boot: int = 1000
    #: frozen-feature readout of the SSL and random-init probes and of the exported classifier: the max
    #: over the intracranial patch tokens (docs/results.md "Reading the brain, not the head"); or brain_stats
    #: (their mean, std and max), cls+mean, cls, ... (fmct.models.readout.READOUTS)
    feature: str = "brain_max"
    #: ID test scans with a finding (the first by scan id) whose saliency maps are scored against their lesion
    #: masks (about 3 s each on 2 cores)
    saliency_scans: int = 6


class Stages:
    """Runs named stages once: a stage is done when ``DIR/.done/<name>.json`` exists."""

    def __init__(self, root: Path, log: Callable[[str], None]):
        self.root = root
        self.log = log
        (root / ".done").mkdir(parents=True, exist_ok=True)

    def run(self, name: str, fn: Callable[[], Any], fingerprint: dict[str, Any]) -> dict[str, Any]:
        marker = self.root / ".done" / f"{name}.json"
        if marker.exists():
            info = json.loads(marker.read_text())
            if info.get("fingerprint") == fingerprint:
                self.log(f"[bold]{name}[/]: reused ({marker.relative_to(self.root)})")
                return info.get("result") or {}
        self.log(f"[bold]{name}[/] …")
        t0 = time.perf_counter()
        result = fn() or {}
        seconds = round(time.perf_counter() - t0, 1)
        tmp = marker.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "seconds": seconds, "result": result}))
        tmp.replace(marker)
        self.log(f"[bold]{name}[/]: done in {seconds:.0f} s")
        return result


def _cohort(out: Path, cfg: DemoConfig) -> dict[str, Any]:
    from fmct.synth import generate_cohort

    parts = {
        **({} if cfg.backbone else {"a_pool": ("a", cfg.n_pool, cfg.seed * 1000 + 1)}),
        "a_labelled": ("a", cfg.n_labelled, cfg.seed * 1000 + 2),
        "b": ("b", cfg.n_ood, cfg.seed * 1000 + 3),
        "c": ("c", cfg.n_ood, cfg.seed * 1000 + 4),
    }
    for name, (site, n, seed) in parts.items():
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        masks = (
            name == "a_labelled"
        )  # lesion masks of the ID scans: the saliency maps are scored against them
        generate_cohort(
            target, n=n, site=site, seed=seed, fmt="dicom", masks=masks, workers=cfg.workers, size=cfg.size
        )
    labelled = [pd.read_csv(out / name / "labels.csv") for name in ("a_labelled", "b", "c")]
    pd.concat(labelled, ignore_index=True).to_csv(out / "labels.csv", index=False)
    return {"labels": str(out / "labels.csv")}


def _ingest(inputs: list[Path], store: Path, cfg: DemoConfig) -> dict[str, Any]:
    if store.exists():
        shutil.rmtree(store)
    prep = PreprocessConfig(spacing=cfg.spacing, deface=cfg.deface)
    summary = ingest(inputs, store, prep, workers=cfg.workers, progress=True)
    if summary.ok == 0:
        raise RuntimeError(f"ingest into {store} produced no scans: {summary.line()}")
    return {"line": summary.line()}


def _pool_and_pretrain(
    out: Path, cfg: DemoConfig, tcfg: dict[str, Any] | None, stages: Stages, store_fp: dict[str, Any]
) -> tuple[Path, dict[str, Any]]:
    """Ingest the unlabelled pool and pretrain on it; returns the backbone directory and the fingerprint
    of what made it."""
    assert tcfg is not None
    stages.run("ingest-pool", lambda: _ingest([out / "cohort" / "a_pool"], out / "store_pool", cfg), store_fp)
    pre_fp = {
        **store_fp,
        "config": Path(cfg.pretrain_config).read_text(),
        "overrides": cfg.pretrain_overrides,
    }
    run = out / "runs" / "ssl"
    stages.run("pretrain", lambda: _pretrain(out / "store_pool", run, tcfg), pre_fp)
    return run / "model", pre_fp


class DemoConfigError(ValueError):
    """The pretraining config or an override of it is invalid; raised before any stage runs."""


def _pretrain_config(cfg: DemoConfig) -> dict[str, Any]:
    """The resolved pretraining config of the demo (``cfg.pretrain_config`` + seed + overrides)."""

    try:
        return resolve_config(cfg.pretrain_config, [f"seed={cfg.seed}", *cfg.pretrain_overrides])
    except ValueError as e:
        raise DemoConfigError(str(e)) from None


def _pretrain(store: Path, run: Path, tcfg: dict[str, Any]) -> dict[str, Any]:
    if run.exists():
        shutil.rmtree(run)
    try:
        res = train(tcfg, store, run, progress=True)
    finally:
        cleanup()
    last = res.get("last") or {}
    return {"step": res["step"], "loss": last.get("loss"), "model": str(run / "model")}


#: Name of the from-scratch baseline in the report, by ``DemoConfig.scratch_arch``.
SCRATCH_NAME = {"resnet3d": "resnet3d-scratch", "vit3d": "vit-scratch"}


def _scratch_spec(backbone: Path, cfg: DemoConfig) -> dict[str, Any]:
    """Fine-tuning spec of the from-scratch baseline: a 3D ResNet, or the SSL ViT's architecture re-initialised."""
    spec: dict[str, Any] = {
        "mode": "full",
        "epochs": cfg.scratch_epochs,
        "fractions": cfg.scratch_fractions,
        "seeds": cfg.scratch_seeds,
    }
    if cfg.scratch_arch == "vit3d":
        return {**spec, "model": str(backbone), "scratch": True}
    return {**spec, "arch": "resnet3d", "scratch": True, "input_size": cfg.scratch_input_size}


def _evaluate(out: Path, labels: Path, store: Path, backbone: Path, cfg: DemoConfig, log) -> dict[str, Any]:
    models: dict[str, Any] = {
        "ssl": str(backbone),
        "random-init": {"model": str(backbone), "random_init": True},
        SCRATCH_NAME[cfg.scratch_arch]: {"finetune": _scratch_spec(backbone, cfg)},
        "hu-histogram": {"hu_histogram": {"size": cfg.histogram_size}},
    }
    protocol = {
        "fractions": cfg.fractions,
        "seeds": cfg.seeds,
        "methods": ["linear"],
        "train_site": "a",
        "n_boot": cfg.n_boot,
        "split_seed": cfg.seed,
        "feature": cfg.feature,
        "val_frac": cfg.val_frac,
        "test_frac": cfg.test_frac,
    }
    if out.exists():
        shutil.rmtree(out)
    run_protocol(models, labels, out, store=store, config=protocol, log=log)
    return {"report": str(out / "report.html")}


def _export_models(
    root: Path, backbone: Path, labels: Path, report_dir: Path, feature: str
) -> dict[str, Any]:
    """DIR/models/backbone (pretrained ViT) and DIR/models/classifier (backbone + linear probe fitted on
    the training split's labels, selected on validation)."""

    models = root / "models"
    models.mkdir(exist_ok=True)
    if (models / "backbone").exists():
        shutil.rmtree(models / "backbone")
    shutil.copytree(backbone, models / "backbone")
    df = read_labels(labels)
    sp = load_splits(report_dir / "splits.csv")
    emb = load_embeddings(report_dir / "embeddings" / "ssl.parquet", with_patch=False)
    have = set(emb.scan_ids)
    ids = {k: [s for s in sp.loc[sp["split"] == k, "scan_id"] if s in have] for k in ("train", "val")}

    findings = [f for f in FINDINGS if f in df.columns]
    x = {k: emb.select(v).feature(feature) for k, v in ids.items()}
    y = {k: label_matrix(df, v, findings) for k, v in ids.items()}
    probe = fit_linear_probe(x["train"], y["train"], x["val"], y["val"], findings)
    report = json.loads((report_dir / "report.json").read_text())
    card = {
        "training_data": f"{len(ids['train'])} labelled scans of the fmct synthetic cohort, site a (train split; "
        f"C chosen on {len(ids['val'])} validation scans); a linear probe on the frozen backbone's {feature} "
        "readout.",
        "evaluation": [
            {
                "test set": r["test"],
                "labels": f"{float(r['labels']):.0%}",
                "macro AUROC": round(r["auroc"], 3),
                "95 % CI": f"[{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]",
            }
            for r in headline_rows(report)
            if r["model"] == "ssl"
        ],  # fmt: skip
        "limitations": ["Trained and evaluated on synthetic head CTs: not evidence of clinical performance."],
        "dataset": {"name": "fmct synthetic head-CT cohort (fmct synth)", "type": "custom"},
        "results": [
            {
                "metric": "roc_auc",
                "value": r["auroc"],
                "name": f"macro AUROC, linear probe, {float(r['labels']):.0%} labels",
                "split": {"id": "test (ID: site a)", "ood": "test (OOD: sites b and c)"}.get(
                    r["test"], r["test"]
                ),
            }
            for r in headline_rows(report)
            if r["model"] == "ssl" and float(r["labels"]) == 1.0
        ],  # the saved classifier is this probe: all training labels
    }
    save_probe_classifier(
        probe,
        models / "backbone",
        feature,
        models / "classifier",
        name="fmct-demo-classifier",
        training={"data": "fmct synthetic cohort, site a (train split)", "n_train": len(ids["train"])},
        card=card,
    )
    return {"backbone": str(models / "backbone"), "classifier": str(models / "classifier")}


def _saliency(root: Path, cfg: DemoConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Score the demo classifier's saliency maps against the lesion masks of the first ``cfg.saliency_scans``
    ID test scans (by scan id) that have a finding; maps and montages in ``root/saliency``."""

    splits = pd.read_csv(root / "report" / "splits.csv")
    labels = pd.read_csv(root / "cohort" / "labels.csv").set_index("scan_id")
    masks = root / "cohort" / "a_labelled" / "masks"
    scans: list[tuple[str, list[str]]] = []
    for sid in sorted(set(splits.loc[splits["split"] == "test", "scan_id"])):
        present = [f for f in FINDINGS if f in labels.columns and labels.at[sid, f] == 1]
        if present and len(scans) < cfg.saliency_scans and (masks / f"{sid}.nii.gz").is_file():
            scans.append((f"{root / 'store_eval'}::{sid}", present))
    out = root / "saliency"
    if out.exists():
        shutil.rmtree(out)
    model = load_model(root / "models" / "classifier")
    result = score_saliency(model, scans, out, masks, log=log)
    result["selection"] = "the first by scan id with a finding"
    result["model"] = "models/classifier"
    if result["per_case"]:
        result["example"] = os.path.relpath(result["per_case"][0]["png"], root / "report")
    return result


def _attach_saliency(report_dir: Path, saliency: dict[str, Any]) -> None:
    """Put the saliency scores into report.json / .md / .html (the evaluate stage writes them without)."""

    report = json.loads((report_dir / "report.json").read_text())
    report["saliency"] = saliency
    write_report(report, report_dir)


def headline_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Macro AUROC (mean over seeds, 95 % CI) per model × label fraction × test set."""
    rows = []
    for r in report.get("results", []):
        macro = (r.get("auroc") or {}).get("macro")
        if not macro:
            continue
        rows.append(
            {
                "model": r["model"],
                "method": r["method"],
                "labels": r["setting"],
                "test": r["test_set"],
                "auroc": macro["mean"],
                "ci": macro["ci"],
                "n_seeds": r["n_seeds"],
            }
        )
    return rows


def headline_differences(report: dict[str, Any], reference: str = "ssl") -> list[dict[str, Any]]:
    """Paired macro-AUROC differences ``reference − other`` (same test scans, same bootstrap replicates)
    per other model × label fraction × test set: ``{"vs", "labels", "test", "diff", "ci"}``."""
    rows = []
    for c in report.get("comparisons", []):
        if c.get("metric") != "auroc" or reference not in (c["a"], c["b"]):
            continue
        sign = 1.0 if c["a"] == reference else -1.0
        lo, hi = (sign * v for v in c["ci"])
        rows.append(
            {
                "vs": c["b"] if sign > 0 else c["a"],
                "labels": c["setting"],
                "test": c["test_set"],
                "diff": sign * c["value"],
                "ci": [min(lo, hi), max(lo, hi)],
            }
        )
    return rows


def run_demo(
    out: str | Path, cfg: DemoConfig | None = None, log: Callable[[str], None] | None = None
) -> dict:
    """Run (or resume) the demo in ``out``; returns ``{"report": path, "rows": headline rows, ...}``.

    With ``cfg.backbone`` (a model directory, e.g. the shipped :data:`SHIPPED_BACKBONE`) the pool is neither
    made nor pretrained on: that backbone is evaluated. Otherwise the demo pretrains ``cfg.pretrain_config``.

    Raises:
        DemoConfigError: a bad pretraining config or override, before any stage runs (``out`` untouched).
    """
    cfg = cfg or DemoConfig()
    tcfg = None if cfg.backbone else _pretrain_config(cfg)  # fail now, not after the cohort is made
    if cfg.scratch_arch not in SCRATCH_NAME:
        raise DemoConfigError(f"scratch_arch must be one of {sorted(SCRATCH_NAME)}, got {cfg.scratch_arch!r}")
    if cfg.backbone and not (Path(cfg.backbone) / "model.safetensors").is_file():
        raise DemoConfigError(f"{cfg.backbone}: not a model directory (no model.safetensors)")
    try:
        canonical_readout(cfg.feature)
    except ValueError as e:
        raise DemoConfigError(f"feature: {e}") from None
    out = Path(out)
    log = log or print
    stages = Stages(out, log)
    base = asdict(cfg)
    # the cohort holds a pool only when the demo pretrains: which backbone is evaluated does not change it
    data_fp = {
        **{k: base[k] for k in ("seed", "n_pool", "n_labelled", "n_ood", "size")},
        "pool": not cfg.backbone,
    }
    store_fp = {**data_fp, "spacing": cfg.spacing, "deface": cfg.deface}
    t0 = time.perf_counter()
    cohort = out / "cohort"
    stages.run("synth", lambda: _cohort(cohort, cfg), {**data_fp, "masks": "a_labelled"})
    labels = cohort / "labels.csv"
    stages.run(
        "ingest-eval",
        lambda: _ingest([cohort / n for n in ("a_labelled", "b", "c")], out / "store_eval", cfg),
        store_fp,
    )
    if cfg.backbone:
        backbone = Path(cfg.backbone)
        # its config.json holds the weights' SHA-256: new weights redo the evaluation
        pre_fp = {**store_fp, "backbone_config": (backbone / "config.json").read_text()}
        shipped = backbone.resolve() == SHIPPED_BACKBONE.resolve()
        what = (
            "the shipped weights; `fmct demo --pretrain` pretrains one in the demo's budget"
            if shipped
            else "given"
        )
        log(f"backbone: {backbone} ({what})")
    else:
        backbone, pre_fp = _pool_and_pretrain(out, cfg, tcfg, stages, store_fp)
    eval_keys = ("fractions", "seeds", "val_frac", "test_frac", "scratch_arch", "scratch_input_size",
                 "histogram_size", "scratch_epochs", "scratch_fractions", "scratch_seeds", "n_boot", "feature")  # fmt: skip
    eval_fp = {**pre_fp, **{k: base[k] for k in eval_keys}}
    stages.run(
        "evaluate",
        lambda: _evaluate(out / "report", labels, out / "store_eval", backbone, cfg, log),
        eval_fp,
    )
    models = stages.run(
        "models", lambda: _export_models(out, backbone, labels, out / "report", cfg.feature), eval_fp
    )
    saliency = stages.run(
        "saliency", lambda: _saliency(out, cfg, log), {**eval_fp, "saliency_scans": cfg.saliency_scans}
    )
    _attach_saliency(out / "report", saliency)
    report = json.loads((out / "report" / "report.json").read_text())
    rows = headline_rows(report)
    summary = {
        "differences": headline_differences(report),
        "report_html": str(out / "report" / "report.html"),
        "report_json": str(out / "report" / "report.json"),
        "models": models,
        "rows": rows,
        "saliency": {k: saliency.get(k) for k in ("cases", "tol_mm", "methods", "chance")},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    return summary
