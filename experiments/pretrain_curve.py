"""Held-out frozen-feature AUROC along a pretraining run, and whether the kNN monitor picks a good step.

``pretrain_evidence.py`` probes the teacher at the last step. This probes every snapshot of one or more runs
made with ``snapshot_every=N`` (``RUN/snapshots/step-NNNNNN``) on a held-out labelled store (the protocol's
kNN and linear probes, cross-fitted: :func:`fmct.evaluate.crossfit.cross_fit`), next to the
run's own kNN monitor at the same step (``labels=`` of the pretraining store, logged in ``metrics.jsonl``),
and compares three choices of model with random initialisations of the same architecture, seeds averaged
with one paired bootstrap 95 % CI over patients (:func:`fmct.evaluate.bootstrap.mean_difference`):

- ``final``: the teacher at the last step (``RUN/model``);
- ``best``: ``RUN/model-best``, the step with the best monitor (``best_by=``) — chosen without the held-out
  labels;
- ``oracle``: the snapshot with the best held-out kNN AUROC (chosen *on* the held-out labels, so an upper
  bound for step selection, not a result).

Usage (the runs of docs/results.md, "Choosing the step")::

    fmct pretrain --config configs/demo-cpu.yaml --data pool/store --out runs/s0 max_steps=1200 \\
        monitor_every=100 snapshot_every=100 labels=pool/labels.csv knn_max_scans=300 \\
        best_by=knn_auroc_brain_max
    python experiments/pretrain_curve.py runs/s0 runs/s1 --eval ev/store --labels ev/labels.csv \\
        --feature brain_max --synth-seed 77 --rescore-labels pool/labels.csv --tag demo_1200_2seeds

Embeddings are cached in ``RUN/curve_emb/``. Writes ``experiments/results/pretrain_curve[_TAG].json``.
About 8 s per model to embed 800 scans on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def monitor_at(run: Path, key: str) -> dict[int, float]:
    """``{steps_done: value}`` of monitor ``key`` in ``RUN/metrics.jsonl`` (row ``step`` = after step + 1)."""
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        if key in d:
            out[int(d["step"]) + 1] = float(d[key])
    return out


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation of two equal-length lists (None with < 3 points)."""
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return round(float(spearmanr(a, b).statistic), 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="run folders made with snapshot_every=N")
    ap.add_argument("--eval", type=Path, required=True, help="held-out store (never seen in pretraining)")
    ap.add_argument("--labels", type=Path, required=True, help="labels.csv of the held-out store")
    ap.add_argument("--site", default="a")
    ap.add_argument("--feature", default="brain_max")
    ap.add_argument("--monitor", default="knn_auroc_brain_max", help="metrics.jsonl key to compare with")
    ap.add_argument("--random-seeds", type=int, default=3)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument(
        "--synth-seed",
        type=int,
        default=None,
        help="the held-out labels.csv is one `fmct synth --site SITE --seed S --size 128` call: also report "
        "per snapshot how well the features encode its generator parameters (CV R², pretrain_evidence.py)",
    )
    ap.add_argument(
        "--rescore-labels",
        type=Path,
        default=None,
        help="re-run the kNN monitor offline on every snapshot with these labels of the pretraining store "
        "(RUN/run.json names it) and --rescore-scans of its scans, as a larger `knn_max_scans` would have; "
        "adds the step that monitor picks (`rescored`) to the comparison",
    )
    ap.add_argument("--rescore-scans", type=int, default=1000)
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    for p in (args.eval, args.labels, *args.runs):
        if not p.exists():
            print(f"error: {p} not found", file=sys.stderr)
            return 2

    import torch

    from fmct import load_model
    from fmct.evaluate.bootstrap import mean_difference
    from fmct.evaluate.crossfit import cross_fit, cross_validated_r2
    from fmct.evaluate.embed import embed_store, load_embeddings
    from fmct.evaluate.metrics import auroc_by_finding
    from fmct.labels import FINDINGS
    from fmct.labels.table import read_labels
    from fmct.synth import GENERATOR_PARAMETERS, generator_parameters
    from fmct.train.finetune import frozen_backbone
    from fmct.train.keeper import read_best

    lab = read_labels(args.labels)
    rows_eval = lab[lab["site"] == args.site].sort_values("scan_id")
    cache: dict[Path, dict[str, np.ndarray]] = {}
    feats: dict[Path, np.ndarray] = {}
    y = groups = ids = None

    def probe(model_dir: Path | None, emb_path: Path, seed: int | None = None) -> dict[str, np.ndarray]:
        """Cross-fitted kNN and linear scores ``(n, F)`` of a model directory (or a random init)."""
        nonlocal y, groups, ids
        key = emb_path
        if key in cache:
            return cache[key]
        if not emb_path.exists():
            model = load_model(model_dir) if seed is None else frozen_backbone(model_dir, True, seed)
            emb_path.parent.mkdir(parents=True, exist_ok=True)
            _log(f"embed {args.eval} with {emb_path.parent.parent.name}/{emb_path.stem}")
            embed_store(model, args.eval, emb_path, batch_size=8, keep_patch=False, progress=False)
        fit = cross_fit(load_embeddings(emb_path, with_patch=False), rows_eval, args.feature, FINDINGS)
        ids, y, groups, feats[key], cache[key] = (
            fit.scan_ids,
            fit.labels,
            fit.groups,
            fit.features,
            fit.scores,
        )
        return cache[key]

    def macro(s: np.ndarray) -> float:
        return round(auroc_by_finding(y, s, FINDINGS)["macro"], 4)

    targets = None

    def encoded(emb_path: Path) -> dict[str, float] | None:
        """CV R² of the generator parameters on the features of ``emb_path`` (with ``--synth-seed``)."""
        nonlocal targets
        if args.synth_seed is None:
            return None
        if targets is None:
            _log(f"generator parameters of {len(lab)} scans (seed {args.synth_seed})")
            params = generator_parameters(range(len(lab)), args.site, args.synth_seed)
            row_of = {sid: i for i, sid in enumerate(lab["scan_id"])}
            targets = params[[row_of[i] for i in ids]]
        r2 = cross_validated_r2(feats[emb_path], targets)
        return dict(zip(GENERATOR_PARAMETERS, (round(float(v), 3) for v in r2), strict=True))

    def rescored_monitor(run: Path, snaps: list[Path]) -> dict[int, float]:
        """``{steps: monitor}`` of :class:`fmct.train.loop.KnnMonitor` on ``--rescore-scans`` scans."""
        from fmct.store import open_store
        from fmct.train.loop import KnnMonitor

        st = open_store(json.loads((run / "run.json").read_text())["data"])
        mon, out = None, {}
        for snap in snaps:
            model = load_model(snap)
            if mon is None:
                mon = KnnMonitor(st, str(args.rescore_labels), model.input_size,
                                 model.preprocessing["windows"], args.rescore_scans)  # fmt: skip
            _log(f"monitor {run.name}/{snap.name} on {len(mon.ids)} scans of the pretraining store")
            rec = mon(model.backbone, torch.device("cpu"))
            out[int(snap.name.split("-")[1])] = rec[args.monitor]
        return out

    per_run, chosen = {}, {"final": [], "best": [], "oracle": [], "rescored": []}
    for run in args.runs:
        snaps = sorted((run / "snapshots").glob("step-*"))
        if not snaps:
            print(f"error: {run}: no snapshots (pretrain with snapshot_every=N)", file=sys.stderr)
            return 2
        mon = monitor_at(run, args.monitor)
        rescored = rescored_monitor(run, snaps) if args.rescore_labels else {}
        rows = []
        for snap in snaps:
            steps = int(snap.name.split("-")[1])
            emb_path = run / "curve_emb" / f"{snap.name}.parquet"
            sc = probe(snap, emb_path)
            rows.append({"steps": steps, "monitor": mon.get(steps), "rescored": rescored.get(steps),
                         "knn": macro(sc["knn"]),
                         "linear": macro(sc["linear"]), "generator_r2": encoded(emb_path)})  # fmt: skip
        final = probe(run / "model", run / "curve_emb" / "final.parquet")
        best = read_best(run)
        if best is not None:
            chosen["best"].append(probe(run / "model-best", run / "curve_emb" / "best.parquet"))
        oracle_row = max(rows, key=lambda r: r["knn"])
        rescored_row = max(rows, key=lambda r: r["rescored"]) if rescored else None
        if rescored_row is not None:
            chosen["rescored"].append(cache[run / "curve_emb" / f"step-{rescored_row['steps']:06d}.parquet"])
        chosen["final"].append(final)
        chosen["oracle"].append(cache[run / "curve_emb" / f"step-{oracle_row['steps']:06d}.parquet"])
        paired = [(r["monitor"], r["knn"]) for r in rows if r["monitor"] is not None]
        per_run[str(run)] = {
            "curve": rows,
            "best": best,
            "oracle_steps": oracle_row["steps"],
            "rescored_steps": rescored_row["steps"] if rescored_row else None,
            "spearman_rescored_vs_heldout_knn": spearman(
                [r["rescored"] for r in rows], [r["knn"] for r in rows]
            )
            if rescored
            else None,
            "spearman_monitor_vs_heldout_knn": spearman([a for a, _ in paired], [b for _, b in paired]),
        }
    first = sorted((args.runs[0] / "snapshots").glob("step-*"))[0]
    randoms = [probe(first, args.runs[0] / "curve_emb" / f"random{s}.parquet", seed=s)
               for s in range(args.random_seeds)]  # fmt: skip

    random_r2 = encoded(args.runs[0] / "curve_emb" / "random0.parquet")
    diffs = {}
    for kind in ("knn", "linear"):
        rnd = [r[kind] for r in randoms]
        for name, models in chosen.items():
            if len(models) != len(args.runs):
                continue
            d = mean_difference(y, [m[kind] for m in models], rnd, FINDINGS, groups, args.n_boot)["macro"]
            diffs[f"{kind}: {name} - random"] = {
                "mean_pretrained": round(float(np.mean([macro(m[kind]) for m in models])), 3),
                "diff": round(d["value"], 3), "ci": [round(c, 3) for c in d["ci"]],
            }  # fmt: skip
        if len(chosen["best"]) == len(args.runs):
            d = mean_difference(y, [m[kind] for m in chosen["best"]], [m[kind] for m in chosen["final"]],
                                FINDINGS, groups, args.n_boot)["macro"]  # fmt: skip
            diffs[f"{kind}: best - final"] = {
                "diff": round(d["value"], 3),
                "ci": [round(c, 3) for c in d["ci"]],
            }
    res = {
        "eval": str(args.eval),
        "feature": args.feature,
        "probe_protocol": "cross-fitted (fmct.evaluate.crossfit), 5 folds by patient",
        "monitor": args.monitor,
        "n_eval_scans": int(len(y)),
        "random_macro": {
            k: round(float(np.mean([macro(r[k]) for r in randoms])), 3) for k in ("knn", "linear")
        },
        "random0_generator_r2": random_r2,
        "runs": per_run,
        "differences": diffs,
    }
    for run, d in per_run.items():
        print(f"\n{run} (Spearman monitor vs held-out kNN: {d['spearman_monitor_vs_heldout_knn']}):")
        print("  steps  monitor  held-out kNN  held-out linear")
        for r in d["curve"]:
            m = f"{r['monitor']:.3f}" if r["monitor"] is not None else "  -  "
            r2 = r["generator_r2"]
            extra = "  R² " + " ".join(f"{k} {v:.2f}" for k, v in r2.items()) if r2 else ""
            print(f"  {r['steps']:5d}  {m:>7s}  {r['knn']:12.3f}  {r['linear']:15.3f}{extra}")
        if d["best"]:
            print(f"  best_by chose step {d['best']['step']} ({d['best']['key']} {d['best']['value']:.3f})")
        if d["rescored_steps"]:
            print(f"  rescored monitor: step {d['rescored_steps']}, Spearman vs held-out kNN "
                  f"{d['spearman_rescored_vs_heldout_knn']}; per step "
                  + " ".join(f"{r['rescored']:.3f}" for r in d["curve"]))  # fmt: skip
    print(f"\nrandom init (mean of {args.random_seeds}): {res['random_macro']}")
    for k, v in diffs.items():
        print(f"  {k:24s} {v['diff']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]")
    out = HERE / "results" / (f"pretrain_curve_{args.tag}.json" if args.tag else "pretrain_curve.json")
    out.write_text(json.dumps(res, indent=2) + "\n")
    _log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
