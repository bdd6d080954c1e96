"""Evidence that pretraining learns: frozen-feature kNN / linear AUROC of a pretrained ViT vs the same
network at random initialisation, on held-out labelled scans, plus the training curves behind it.

Uses the stores and labels that ``make demo`` leaves in ``demo_out/`` (or any other, see the flags):
pretrains ``--config`` for ``--steps`` steps on ``--pool`` (unlabelled), then embeds the site-a scans of
``--eval`` (never seen in pretraining) with the teacher backbone and with ``--random-seeds`` random
initialisations of the same architecture. For each model: out-of-fold scores of the evaluation protocol's
kNN and linear probes, cross-fitted (:func:`fmct.evaluate.crossfit.cross_fit`: 5 folds by patient, each fold
scored by the probe fitted on the others with its k / C chosen on 15 % of their patients), per-finding and
macro AUROC; the pretrained model is compared with every random init by a paired bootstrap over patients
(95 % CI of the macro difference). From ``metrics.jsonl``: DINO / iBOT losses and teacher entropy vs log K at
each monitor. Result files without a ``probe_protocol`` key were made with the script's former probes (a fixed
k = 10 and C = 0.05, no validation part).

Usage::

    make demo   # once, for demo_out/store_pool, demo_out/store_eval, demo_out/cohort/labels.csv
    python experiments/pretrain_evidence.py [--steps 800] [--random-seeds 3] [--work DIR] [key=value ...]

The demo's 200 labelled site-a scans give CIs of about +-0.05; docs/results.md uses 800 held-out scans
of a separate cohort (about 15 min to make on 2 cores)::

    fmct synth ev --n 800 --site a --seed 77 --size 128 -j 2
    fmct ingest ev/dicom --out ev/store --spacing 2 -j 2 --deface   # defaced, as the demo's pool is
    python experiments/pretrain_evidence.py --steps 100 --eval ev/store --labels ev/labels.csv --tag demo100

A larger unlabelled pool the same way (``fmct synth pool --n 1000 --site a --seed 1001 --size 128`` +
``fmct ingest pool/dicom --out pool/store --spacing 2 --deface``, then ``--pool pool/store``).
``--feature brain_max`` probes the max over the patch tokens of the patches inside the cranial cavity instead
of the CLS and mean tokens (which pool the whole cube, so head pose and shape dominate them).
``--pretrain-seeds N`` pretrains N runs (config seeds 0..N-1, in ``WORK/run`` and ``WORK/run_seed<s>``) and adds
the mean over them minus the mean over the random inits, with one paired bootstrap CI
(:func:`fmct.evaluate.bootstrap.mean_difference`), so the verdict does not rest on one lucky seed.
``--reference`` adds a hand-made feature probed the same way: the intracranial HU histogram of the very
cubes the ViT sees, which tells what the kNN and linear probes can reach on these scans. ``--synth-seed 77``
(the seed of the ``fmct synth`` call that made the held-out set) regenerates each held-out scan's generator
parameters (pose, head shape, skull thickness, atrophy, ventricle size; :func:`fmct.synth.generator_parameters`)
and reports how well the features encode them (5-fold CV R² of a ridge regression,
:func:`fmct.evaluate.crossfit.cross_validated_r2`). ``_brain_only_store.py`` makes the brain-only stores
(docs/results.md).

Trailing ``key=value`` pairs are passed to ``fmct pretrain`` as config overrides. Writes
``experiments/results/pretrain_evidence[_TAG].json``. About 1.5-2 s per step on 2 cores with the demo config
(MAE: about 0.3 s), plus about 10 s per model to embed 800 scans.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


#: How the probes are fitted (written into the results, which older files do not have).
PROBE_PROTOCOL = (
    "cross-fitted (fmct.evaluate.crossfit): 5 folds by patient; each fold scored by the protocol's kNN / "
    "linear probe fitted on the other folds, k / C chosen on 15 % of their patients"
)


def cross_fit_embeddings(emb_path: Path, rows, feature: str):
    """:func:`fmct.evaluate.crossfit.cross_fit` of the embeddings in ``emb_path`` on the labelled scans ``rows``
    (a labels table in scan order), kNN and linear."""
    from fmct.evaluate.crossfit import cross_fit
    from fmct.evaluate.embed import load_embeddings
    from fmct.labels import FINDINGS

    return cross_fit(load_embeddings(emb_path, with_patch=False), rows, feature, FINDINGS)


def reference_embeddings(store: Path, ids: list[str], size: int):
    """The evaluation protocol's hand-made reference (:mod:`fmct.evaluate.hu_histogram`): the intracranial HU
    histogram of the scans' model-input cubes (``size``³, as the ViT sees them), which tells what the kNN and
    linear probes can reach on these scans (``synth_difficulty.py``: logistic regression on it ~0.76)."""
    from fmct.evaluate.embed import CubeCache
    from fmct.evaluate.hu_histogram import histogram_embeddings

    return histogram_embeddings(CubeCache(store, ids, size))


def auroc_row(fit, method: str) -> dict[str, float | None]:
    """Per-finding and macro AUROC of one probe, rounded to 3 decimals."""
    return {k: None if v is None else round(v, 3) for k, v in fit.auroc(method).items()}


def curves(run: Path) -> list[dict]:
    """Monitor rows of ``metrics.jsonl``: the steps where the monitors ran (effective rank is logged there for
    every method; teacher entropy only exists for DINO)."""
    keep = ("step", "dino", "ibot", "koleo", "mae", "nt_xent", "contrastive_top1", "loss", "teacher_entropy",
            "log_k", "effective_rank", "knn_auroc_macro", "knn_auroc_brain_max")  # fmt: skip
    rows = []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "effective_rank" in d:
            rows.append({k: round(v, 4) if isinstance(v, float) else v for k, v in d.items() if k in keep})
    return rows


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=Path, default=ROOT / "demo_out" / "store_pool")
    ap.add_argument("--eval", type=Path, default=ROOT / "demo_out" / "store_eval")
    ap.add_argument("--labels", type=Path, default=ROOT / "demo_out" / "cohort" / "labels.csv")
    ap.add_argument(
        "--pool-labels",
        type=Path,
        default=None,
        help="labels.csv of the pool scans for the kNN monitor (default: the demo's, when present)",
    )
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "demo-cpu.yaml")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--random-seeds", type=int, default=3)
    ap.add_argument(
        "--pretrain-seeds",
        type=int,
        default=1,
        help="pretraining runs (config seed 0..N-1); with N > 1 the result also gives the mean over the "
        "pretrained runs minus the mean over the random inits, with one paired bootstrap CI",
    )
    ap.add_argument("--site", default="a", help="site of the held-out labelled scans")
    ap.add_argument(
        "--feature",
        default="cls+mean",
        help="cls, mean_patch, cls+mean, brain_max (max over the patch tokens inside the cranial cavity) or "
        "brain_stats (their mean, std and max)",
    )
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument(
        "--work", type=Path, default=None, help="work folder (default: temporary); reused if present"
    )
    ap.add_argument(
        "--reference",
        action="store_true",
        help="also probe a hand-made feature (intracranial HU histogram of the same input cubes)",
    )
    ap.add_argument(
        "--synth-seed",
        type=int,
        default=None,
        help="the held-out labels.csv is one `fmct synth --site SITE --seed S` call: also report how well "
        "the features encode its generator parameters (pose, head shape, bone, atrophy, ventricle size)",
    )
    ap.add_argument(
        "--synth-size",
        type=int,
        default=128,
        help="the --size of that fmct synth call (accepted for old command lines: the parameters do not "
        "depend on it)",
    )
    ap.add_argument("--tag", default="", help="results file suffix: pretrain_evidence_<tag>.json")
    ap.add_argument("overrides", nargs="*", help="config overrides for fmct pretrain (key=value)")
    return ap.parse_args()


def pretrain_runs(args: argparse.Namespace, work: Path) -> tuple[dict[str, Path], list[str], float]:
    """Pretrain ``--pretrain-seeds`` runs (seed s in ``work/run`` for s = 0, else ``work/run_seed<s>``; a run
    with a model already there is reused): ``({model name: run folder}, reused names, seconds)``."""
    runs = {("pretrained" if s == 0 else f"pretrained{s}"): work / ("run" if s == 0 else f"run_seed{s}")
            for s in range(args.pretrain_seeds)}  # fmt: skip
    t0 = time.time()
    reused = [name for name, run in runs.items() if (run / "model" / "config.json").exists()]
    for seed, (name, run) in enumerate(runs.items()):
        if name in reused:
            continue
        cmd = [sys.executable, "-m", "fmct", "pretrain", "--config", str(args.config), "--data",
               str(args.pool), "--out", str(run), f"max_steps={args.steps}", "monitor_every=100",
               f"checkpoint_every={max(100, args.steps // 4)}", *args.overrides]  # fmt: skip
        if seed:
            cmd.append(f"seed={seed}")
        pool_labels = args.pool_labels or args.pool.parent / "cohort" / "a_pool" / "labels.csv"
        if pool_labels.exists():
            cmd.append(f"labels={pool_labels}")
        _log("pretrain: " + " ".join(cmd[2:]))
        subprocess.run(cmd, check=True)
    return runs, reused, time.time() - t0


def probe_models(args: argparse.Namespace, work: Path, runs: dict[str, Path], rows) -> tuple[dict, int]:
    """Embed the held-out store with every pretrained run and ``--random-seeds`` random inits of the first
    run's architecture, and cross-fit the probes: ``({model name: CrossFitted}, model input size)``."""
    from fmct import load_model
    from fmct.evaluate.embed import embed_store, load_embeddings, model_input_spec
    from fmct.models.readout import BRAIN_READOUTS
    from fmct.train.finetune import frozen_backbone

    models = {**{name: None for name in runs}, **{f"random{s}": s for s in range(args.random_seeds)}}
    first_run = runs["pretrained"] / "model"  # random inits take its architecture
    fits, input_size = {}, 0
    for name, seed in models.items():
        if seed is None:
            model = load_model(runs[name] / "model")
        else:
            model = frozen_backbone(first_run, random_init=True, seed=seed)
        out = work / f"emb_{name}.parquet"
        if (
            out.exists()
            and args.feature in BRAIN_READOUTS
            and getattr(load_embeddings(out, False), args.feature) is None
        ):
            out.unlink()  # embedded by an fmct without that brain readout
        if not out.exists():
            _log(f"embed {args.eval} with {name}")
            embed_store(model, args.eval, out, batch_size=8, keep_patch=False, progress=False)
        fits[name] = cross_fit_embeddings(out, rows, args.feature)
        input_size = model_input_spec(model)[0]
    return fits, input_size


def differences(args: argparse.Namespace, fits: dict, pretrained: list[str], randoms: list[str]) -> dict:
    """Paired bootstrap 95 % CIs (patients resampled) of the macro AUROC: each pretrained run minus each
    random init, and with several runs the mean over the runs minus the mean over the random inits."""
    from fmct.evaluate.bootstrap import mean_difference, paired_difference
    from fmct.labels import FINDINGS

    ref = fits[pretrained[0]]
    y, groups = ref.labels, ref.groups

    def summary(d: dict) -> dict:
        return {"macro": round(d["macro"]["value"], 3), "ci": [round(c, 3) for c in d["macro"]["ci"]]}

    diffs = {}
    for kind in ("knn", "linear"):
        for p in pretrained:
            for name in randoms:
                d = paired_difference(
                    y, fits[p].scores[kind], fits[name].scores[kind], FINDINGS, groups, args.n_boot
                )
                diffs[f"{kind}: {p} - {name}"] = summary(d)
        if len(pretrained) > 1:
            d = mean_difference(y, [fits[p].scores[kind] for p in pretrained],
                                [fits[r].scores[kind] for r in randoms], FINDINGS, groups, args.n_boot)  # fmt: skip
            key = f"{kind}: mean of {len(pretrained)} pretrained - mean of {len(randoms)} random"
            diffs[key] = summary(d)
    return diffs


def encoded_parameters(args: argparse.Namespace, lab, fits: dict) -> dict[str, dict[str, float]]:
    """5-fold CV R² of a ridge regression of each generator parameter on each model's features."""
    from fmct.evaluate.crossfit import cross_validated_r2
    from fmct.synth import GENERATOR_PARAMETERS, generator_parameters

    all_ids = list(lab["scan_id"])
    _log(f"generator parameters of {len(all_ids)} scans (site {args.site}, seed {args.synth_seed})")
    params = generator_parameters(range(len(all_ids)), args.site, args.synth_seed)
    row_of = {sid: i for i, sid in enumerate(all_ids)}
    target = params[[row_of[i] for i in next(iter(fits.values())).scan_ids]]
    return {
        name: dict(
            zip(
                GENERATOR_PARAMETERS,
                (round(float(v), 3) for v in cross_validated_r2(f.features, target)),
                strict=True,
            )
        )
        for name, f in fits.items()
    }


def main() -> int:
    args = parse_args()
    for p in (args.pool, args.eval, args.labels):
        if not p.exists():
            print(
                f"error: {p} not found; run `make demo` first or pass --pool/--eval/--labels", file=sys.stderr
            )
            return 2

    from fmct.evaluate.crossfit import cross_fit
    from fmct.labels import FINDINGS
    from fmct.labels.table import read_labels

    work = args.work or Path(tempfile.mkdtemp(prefix="fmct_pretrain_evidence_"))
    runs, reused_runs, t_pre = pretrain_runs(args, work)
    reused = len(reused_runs) == len(runs)
    lab = read_labels(args.labels)
    if args.synth_seed is not None and (lab["site"] != args.site).any():
        raise SystemExit("--synth-seed: the labels.csv must come from one `fmct synth` call of --site")
    rows = lab[lab["site"] == args.site].sort_values("scan_id")
    fits, input_size = probe_models(args, work, runs, rows)
    pretrained = list(runs)
    randoms = [m for m in fits if m not in runs]
    ids = fits["pretrained"].scan_ids
    y = fits["pretrained"].labels
    if args.reference:
        _log("reference: intracranial HU histogram of the model-input cubes")
        ref = reference_embeddings(args.eval, ids, input_size)
        fits["hu_histogram"] = cross_fit(ref, rows, args.feature, FINDINGS)
    encoded = encoded_parameters(args, lab, fits) if args.synth_seed is not None else None
    table = {m: {kind: auroc_row(f, kind) for kind in ("knn", "linear")} for m, f in fits.items()}
    diffs = differences(args, fits, pretrained, randoms)
    monitors = {p: curves(run) for p, run in runs.items()}

    def mean_macro(names: list[str], kind: str) -> float:
        return round(float(np.mean([table[m][kind]["macro"] for m in names])), 3)

    res = {
        "headline": {
            "knn_macro_pretrained": mean_macro(pretrained, "knn"),
            "knn_macro_random_mean": mean_macro(randoms, "knn"),
            "linear_macro_pretrained": mean_macro(pretrained, "linear"),
            "linear_macro_random_mean": mean_macro(randoms, "linear"),
            "pretrain_seeds": len(pretrained),
            "steps": args.steps,
        },
        "config": str(args.config),
        "overrides": args.overrides,
        "feature": args.feature,
        "probe_protocol": PROBE_PROTOCOL,
        "n_eval_scans": int(len(y)),
        "n_pos": {f: int(np.nansum(y[:, j])) for j, f in enumerate(FINDINGS)},
        "auroc": table,
        "paired_differences": diffs,
        "generator_parameters_cv_r2": encoded,
        "training_monitors": monitors if len(monitors) > 1 else monitors["pretrained"],
        "seconds_pretrain": None if reused else round(t_pre, 1),
        "pretrain_run_reused": reused,
        "pretrain_runs_reused": reused_runs,  # seconds_pretrain counts only the others
    }
    print_summary(args, res)
    out = HERE / "results" / (f"pretrain_evidence_{args.tag}.json" if args.tag else "pretrain_evidence.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    _log(f"wrote {out}")
    return 0


def print_summary(args: argparse.Namespace, res: dict) -> None:
    """The AUROC table, the paired differences, the encoded generator parameters and the monitors."""
    table, encoded = res["auroc"], res["generator_parameters_cv_r2"]
    print(
        f"\nheld-out site-{args.site} scans: {res['n_eval_scans']}; feature {args.feature}; macro AUROC "
        "(cross-fitted, 5 folds by patient)"
    )
    for m in table:
        print(f"  {m:12s} kNN {table[m]['knn']['macro']:.3f}   linear {table[m]['linear']['macro']:.3f}")
    for k, v in res["paired_differences"].items():
        print(f"  {k:42s} {v['macro']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]")
    if encoded:
        print("\nCV R² of ridge regressions of the generator parameters on the features:")
        for name, r2 in encoded.items():
            print(f"  {name:12s} " + "  ".join(f"{k} {v:.2f}" for k, v in r2.items()))
    monitors = res["training_monitors"]
    for p, prow in (monitors if isinstance(monitors, dict) else {"pretrained": monitors}).items():
        print(f"\ntraining monitors ({p}):")
        for r in prow:
            print("  " + "  ".join(f"{k} {v}" for k, v in r.items()))


if __name__ == "__main__":
    raise SystemExit(main())
