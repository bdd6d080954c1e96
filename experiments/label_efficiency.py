"""Label efficiency: does self-supervised pretraining beat supervised training from scratch with few labels?

Protocol (all in one run, same harness, same splits, same bootstrap resamples):

- site a, scans ``0 .. n_pool-1``: unlabelled pool, used only for pretraining (DINO + iBOT + KoLeo,
  ``configs/demo-cpu.yaml`` with ``--steps`` steps);
- site a, the next ``n_labelled`` scans: labelled, split by patient into train / val / ID test;
- sites b and c (``n_ood`` each): OOD test;
- methods: linear probe on the pretrained ViT (``ssl``), linear probe on the same ViT with random weights
  (``random``), supervised ViT from scratch (same architecture) and a 3D ResNet from scratch;
- label fractions 1 %, 10 %, 100 % of the training split, ``--seeds`` seeds each;
- macro AUROC (mean ± sd over seeds, 95 % bootstrap CI, resampling patients) on ID and OOD, and paired
  bootstrap differences ssl − each baseline.

Prints a table and writes ``experiments/results/label_efficiency.json``. Usage::

    python experiments/label_efficiency.py [--n-pool 200] [--n-labelled 240] [--n-ood 80] [--steps 40]
        [--seeds 3] [--scratch-epochs 8] [--workers 2] [--work DIR] [--keep]
        [--feature cls+mean|brain_max] [--tag TAG]

``--feature`` is what the linear probes read (default ``cls+mean``, as in docs/results.md's first run;
``brain_max`` is the intracranial-patch readout that ``make demo`` probes); ``--tag`` writes
``label_efficiency_TAG.json`` instead, so a second run does not overwrite the first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_data(work: Path, args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """Synthesise and ingest: returns (pool store, labelled store, labels.csv)."""
    import pandas as pd

    from fmct.ingest import run_ingest as ingest
    from fmct.preprocess import PreprocessConfig
    from fmct.synth import generate_cohort

    raw = work / "raw"
    if not (work / "labels.csv").exists():
        _log(f"synth: pool {args.n_pool} + labelled {args.n_labelled} (site a), {args.n_ood} each of b, c")
        generate_cohort(
            raw / "pool",
            args.n_pool,
            "a",
            args.seed,
            fmt="nifti",
            workers=args.workers,
            progress=False,
            size=args.size,
        )
        tables = [
            generate_cohort(
                raw / "a",
                args.n_labelled,
                "a",
                args.seed,
                fmt="nifti",
                workers=args.workers,
                progress=False,
                start=args.n_pool,
                size=args.size,
            )
        ]
        for site in ("b", "c"):
            tables.append(
                generate_cohort(
                    raw / site,
                    args.n_ood,
                    site,
                    args.seed,
                    fmt="nifti",
                    workers=args.workers,
                    progress=False,
                    size=args.size,
                )
            )
        labels = pd.concat([pd.read_csv(t, dtype={"scan_id": str, "patient_id": str}) for t in tables])
        tmp = work / ".labels.csv.tmp"
        labels.to_csv(tmp, index=False)
        os.replace(tmp, work / "labels.csv")
    pool_store, lab_store = work / "store_pool", work / "store_labelled"
    if not (pool_store / "manifest.parquet").exists():
        _log("ingest pool")
        ingest([raw / "pool"], pool_store, PreprocessConfig(spacing=args.spacing), workers=args.workers)
    if not (lab_store / "manifest.parquet").exists():
        _log("ingest labelled + OOD")
        ingest(
            [raw / "a", raw / "b", raw / "c"],
            lab_store,
            PreprocessConfig(spacing=args.spacing),
            workers=args.workers,
        )
    return pool_store, lab_store, work / "labels.csv"


def pretrain(work: Path, pool_store: Path, args: argparse.Namespace) -> Path:
    """Pretrain on the pool with the demo config; returns the exported model directory."""
    from fmct.train.config import resolve_config
    from fmct.train.loop import train

    run = work / "run"
    model = run / "model"
    if (model / "config.json").exists():
        return model
    steps = [f"max_steps={args.steps}"] if args.steps else []
    cfg = resolve_config(ROOT / "configs" / "demo-cpu.yaml", [*steps, f"seed={args.seed}"])
    _log(f"pretrain: {cfg['max_steps']} steps on {pool_store}")
    shutil.rmtree(run, ignore_errors=True)
    train(cfg, pool_store, run, progress=True)
    if not (model / "config.json").exists():
        from fmct.train.loop import export_run

        export_run(run, pool_store)
    return model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-pool", type=int, default=200)
    ap.add_argument("--n-labelled", type=int, default=240)
    ap.add_argument("--n-ood", type=int, default=80)
    ap.add_argument("--steps", type=int, default=None, help="pretraining steps (default: the demo config's)")
    ap.add_argument("--size", type=int, default=128, help="synthetic in-plane matrix (as in the demo)")
    ap.add_argument("--spacing", type=float, default=2.0, help="ingest spacing in mm (as in the demo)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--scratch-epochs", type=int, default=8)
    ap.add_argument("--fractions", default="0.01,0.1,1.0")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work folder (data, run, report)")
    ap.add_argument(
        "--feature",
        default="cls+mean",
        choices=["cls", "mean_patch", "cls+mean", "brain_max"],
        help="embedding feature the linear probes read (default: cls+mean)",
    )
    ap.add_argument("--tag", default="", help="results file label_efficiency_TAG.json")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    from fmct.evaluate.protocol import run_protocol
    from fmct.evaluate.splits import make_splits

    t0 = time.time()
    import tempfile

    temporary = args.work is None
    work = Path(tempfile.mkdtemp(prefix="fmct_label_eff_")) if temporary else args.work
    work.mkdir(parents=True, exist_ok=True)
    pool_store, lab_store, labels_csv = build_data(work, args)
    t_data = time.time() - t0
    model = pretrain(work, pool_store, args)
    t_pre = time.time() - t0 - t_data

    import pandas as pd

    labels = pd.read_csv(labels_csv, dtype={"scan_id": str, "patient_id": str, "site": str})
    labels = labels[
        ~labels["scan_id"].isin(set(pd.read_csv(work / "raw" / "pool" / "labels.csv")["scan_id"]))
    ]
    splits = make_splits(labels, train_site="a", val_frac=0.2, test_frac=0.3, seed=args.seed)
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds = list(range(args.seeds))
    ft = {"epochs": args.scratch_epochs, "batch_size": 8, "lr": 1e-3, "layer_decay": 1.0, "patience": 3}
    models = {
        "ssl": str(model),
        "random": {"model": str(model), "random_init": True},
        "vit_scratch": {"finetune": {"model": str(model), "scratch": True, **ft}},
        "resnet_scratch": {"finetune": {"arch": "resnet3d", "input_size": 64, **ft}},
    }
    _log("evaluate: " + ", ".join(models))
    report = run_protocol(
        models,
        labels,
        work / "report",
        store=lab_store,
        splits=splits,
        log=_log,
        config={
            "fractions": fractions,
            "seeds": seeds,
            "methods": ["linear"],
            "n_boot": args.n_boot,
            "feature": args.feature,
        },
    )
    t_eval = time.time() - t0 - t_data - t_pre

    settings = [f"{f:g}" for f in fractions]
    rows = {}
    print(
        f"\nmacro AUROC (mean ± sd over {len(seeds)} seeds [95% CI]); ID = held-out site a, OOD = sites b+c"
    )
    print(
        f"{'model':>16} {'method':>14} "
        + " ".join(f"{'labels ' + s + ' ' + t:>30}" for s in settings for t in ("id", "ood"))
    )
    for r in report["results"]:
        rows.setdefault((r["model"], r["method"]), {})[(r["setting"], r["test_set"])] = r["auroc"]["macro"]
    for (m, meth), cells in rows.items():
        line = f"{m:>16} {meth:>14} "
        for s in settings:
            for t in ("id", "ood"):
                c = cells.get((s, t))
                text = "—" if not c else "{:.3f}±{:.3f} [{:.2f},{:.2f}]".format(c["mean"], c["sd"], *c["ci"])
                line += f"{text:>30} "
        print(line)
    diffs = [c for c in report["comparisons"] if c["metric"] == "auroc" and c["a"] == "ssl"]
    print("\nssl (linear probe) − baseline, paired bootstrap:")
    for c in diffs:
        print(
            f"  vs {c['b']:>15} ({c['method']}) labels {c['setting']:>5} {c['test_set']:>3}: "
            f"{c['value']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]  P(Δ≤0)={c['p_le_0']:.3f}"
        )

    def cell(m: str, meth: str, s: str, t: str) -> float | None:
        c = rows.get((m, meth), {}).get((s, t))
        return None if not c else round(c["mean"], 4)

    headline = {}
    for s in settings:
        for t in ("id", "ood"):
            ssl = cell("ssl", "linear", s, t)
            best = max(
                [
                    v
                    for v in (
                        cell("vit_scratch", "finetune-full", s, t),
                        cell("resnet_scratch", "finetune-full", s, t),
                    )
                    if v is not None
                ],
                default=None,
            )
            headline[f"ssl_minus_best_scratch@{s}_{t}"] = (
                None if ssl is None or best is None else round(ssl - best, 4)
            )
    out = {
        "benchmark": "label_efficiency",
        "headline": headline,
        "config": vars(args) | {"work": str(work)},
        "seconds": {"data": round(t_data, 1), "pretrain": round(t_pre, 1), "evaluate": round(t_eval, 1)},
        "table": [
            {"model": m, "method": meth, "setting": s, "test_set": t, **(cells[(s, t)] or {})}
            for (m, meth), cells in rows.items()
            for (s, t) in cells
        ],
        "comparisons": [{k: v for k, v in c.items() if k != "per_finding"} for c in diffs],
        "meta": report["meta"],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = RESULTS / (f"label_efficiency_{args.tag}.json" if args.tag else "label_efficiency.json")
    tmp = result.with_name(f".{result.name}.tmp")
    tmp.write_text(json.dumps(out, indent=1, default=str))
    os.replace(tmp, result)
    kept = not temporary or args.keep
    print(
        f"\nwrote {result} (data {t_data:.0f} s, pretrain {t_pre:.0f} s, "
        f"evaluate {t_eval:.0f} s)" + (f"; report in {work / 'report'}" if kept else "")
    )
    if temporary and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
