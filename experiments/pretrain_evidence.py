"""Evidence that pretraining learns: frozen-feature kNN / linear AUROC of a pretrained ViT vs the same
network at random initialisation, on held-out labelled scans, plus the training curves behind it.

Uses the stores and labels that ``make demo`` leaves in ``demo_out/`` (or any other, see the flags):
pretrains ``--config`` for ``--steps`` steps on ``--pool`` (unlabelled), then embeds the site-a scans of
``--eval`` (never seen in pretraining) with the teacher backbone and with ``--random-seeds`` random
initialisations of the same architecture. For each model: out-of-fold scores of a cosine kNN (k = 10)
and of a logistic-regression probe (5-fold, folds by patient), per-finding and macro AUROC; the pretrained
model is compared with every random init by a paired bootstrap over patients (95 % CI of the macro
difference). From ``metrics.jsonl``: DINO / iBOT losses and teacher entropy vs log K at each monitor.

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
parameters (pose, head shape, skull thickness, atrophy, ventricle size) and reports how well the features encode
them (5-fold CV R² of a ridge regression). ``_brain_only_store.py`` makes the brain-only stores
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


def oof_scores(x: np.ndarray, y: np.ndarray, groups: np.ndarray, kind: str) -> np.ndarray:
    """Out-of-fold scores ``(n, F)`` of a kNN or linear probe on features ``x (n, D)`` (5 folds by patient)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from fmct.train.monitors import knn_oof_scores

    if kind == "knn":  # the pretraining kNN monitor's vote: cosine, k = 10, temperature 0.07
        return knn_oof_scores(x, y, groups, k=10, n_splits=5)
    scores = np.full(y.shape, 0.5)
    for tr, te in GroupKFold(n_splits=5).split(x, groups=groups):
        for j in range(y.shape[1]):
            if 0 < y[tr, j].sum() < len(tr):
                m = make_pipeline(
                    StandardScaler(), LogisticRegression(C=0.05, max_iter=3000, class_weight="balanced")
                )
                m.fit(x[tr], y[tr, j])
                scores[te, j] = m.predict_proba(x[te])[:, 1]
    return scores


def random_backbone(model_dir: Path, seed: int):
    """The architecture of ``model_dir`` at random initialisation (torch seed ``seed``), as a backbone."""
    import torch

    from fmct.evaluate.finetune import build_model

    torch.manual_seed(seed)
    return build_model(model_dir, ["x"], scratch=True).as_backbone()


def probe_embeddings(emb_path: Path, lab, site: str, feature: str):
    """Probe the ``site`` scans of an embeddings parquet: ``(ids, y (n, F), groups (n,), x (n, D), scores)``
    with ``scores = {"knn": (n, F), "linear": (n, F)}`` out-of-fold (:func:`oof_scores`).

    ``lab`` is :func:`fmct.evaluate.label_table.read_labels` indexed by ``scan_id``.
    """
    from fmct.evaluate.embed import load_embeddings
    from fmct.labels import FINDINGS

    emb = load_embeddings(emb_path, with_patch=False)
    ids = sorted(i for i in emb.scan_ids if i in lab.index and lab.loc[i, "site"] == site)
    emb = emb.select(ids)
    y = lab.loc[ids, FINDINGS].astype(float).to_numpy()
    groups = lab.loc[ids, "patient_id"].to_numpy()
    x = emb.feature(feature)
    return ids, y, groups, x, {kind: oof_scores(x, y, groups, kind) for kind in ("knn", "linear")}


def reference_features(store: Path, ids: list[str], size: int) -> np.ndarray:
    """``(n, 34)`` intracranial HU histograms of the scans' model-input cubes (``size``³, as the ViT sees them).

    A reference for the probes: a feature known to carry finding signal on this cohort
    (``synth_difficulty.py``: logistic regression on it reaches macro AUROC ~0.76), so the kNN and linear
    numbers of the networks can be read against what the same probe gets from it.
    """
    from fmct.evaluate.hu_histogram import hu_histogram
    from fmct.preprocess.model_input import cube_hu
    from fmct.store import open_store

    st = open_store(store)
    return np.stack([hu_histogram(cube_hu(st.load(i), size)[0].numpy()) for i in ids])


#: Generator parameters of a synthetic scan that :func:`generator_parameters` reads back.
GENERATOR_PARAMETERS = ("pose_x_deg", "pose_y_deg", "pose_z_deg", "head_axis_x_mm", "head_axis_y_mm",
                        "head_axis_z_mm", "bone_mm", "atrophy", "ventricle_scale")  # fmt: skip


def generator_parameters(n: int, site: str, seed: int, size: int) -> np.ndarray:
    """``(n, 9)`` :data:`GENERATOR_PARAMETERS` of scans ``0..n-1`` of ``fmct synth --site SITE --seed SEED
    --size SIZE`` (row ``i`` of that call's labels.csv is scan ``i``), regenerated in memory."""
    from fmct.synth import synth_scan

    out = []
    for i in range(n):
        m = synth_scan(i, site, seed, size=size, with_mask=False).meta
        a = m["anatomy"]
        out.append([*m["pose_deg"], *a["axes_mm"], a["bone_mm"], a["atrophy"], a["ventricle_scale"]])
    return np.asarray(out, dtype=np.float64)


def encoded_r2(x: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """5-fold CV R² of a ridge regression (alpha chosen inside) of each column of ``targets`` ``(n, 9)``
    on ``x``, keyed by :data:`GENERATOR_PARAMETERS`."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    r2 = (float(cross_val_score(model, x, t, cv=5, scoring="r2").mean()) for t in targets.T)
    return dict(zip(GENERATOR_PARAMETERS, (round(v, 3) for v in r2), strict=True))


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


def main() -> int:
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
        help="cls, mean_patch, cls+mean or brain_max (max over the patch tokens inside the cranial cavity)",
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
    ap.add_argument("--synth-size", type=int, default=128, help="the --size of that fmct synth call")
    ap.add_argument("--tag", default="", help="results file suffix: pretrain_evidence_<tag>.json")
    ap.add_argument("overrides", nargs="*", help="config overrides for fmct pretrain (key=value)")
    args = ap.parse_args()
    for p in (args.pool, args.eval, args.labels):
        if not p.exists():
            print(
                f"error: {p} not found; run `make demo` first or pass --pool/--eval/--labels", file=sys.stderr
            )
            return 2

    from fmct import load_model
    from fmct.evaluate.bootstrap import mean_difference, paired_difference
    from fmct.evaluate.embed import embed_store, load_embeddings, model_input_spec
    from fmct.evaluate.label_table import read_labels
    from fmct.evaluate.metrics import auroc
    from fmct.labels import FINDINGS

    work = args.work or Path(tempfile.mkdtemp(prefix="fmct_pretrain_evidence_"))
    # pretraining seed s runs in work/run (s = 0) or work/run_seed<s>; models "pretrained", "pretrained<s>"
    runs = {("pretrained" if s == 0 else f"pretrained{s}"): (s, work / ("run" if s == 0 else f"run_seed{s}"))
            for s in range(args.pretrain_seeds)}  # fmt: skip
    t0 = time.time()
    reused_runs = [name for name, (_, run) in runs.items() if (run / "model" / "config.json").exists()]
    reused = len(reused_runs) == len(runs)
    for name, (seed, run) in runs.items():
        if name in reused_runs:
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
    t_pre = time.time() - t0

    lab = read_labels(args.labels).set_index("scan_id")
    if args.synth_seed is not None and (lab["site"] != args.site).any():
        raise SystemExit("--synth-seed: the labels.csv must come from one `fmct synth` call of --site")
    models = {**{name: None for name in runs}, **{f"random{s}": s for s in range(args.random_seeds)}}
    pretrained = list(runs)
    randoms = [m for m in models if m not in runs]
    scores: dict[str, dict[str, np.ndarray]] = {}
    features: dict[str, np.ndarray] = {}  # per model (and the reference): the probed features
    y = groups = None
    first_run = runs["pretrained"][1] / "model"  # random inits take its architecture
    for name, seed in models.items():
        model = load_model(runs[name][1] / "model") if seed is None else random_backbone(first_run, seed)
        out = work / f"emb_{name}.parquet"
        if out.exists() and args.feature == "brain_max" and load_embeddings(out, False).brain_max is None:
            out.unlink()  # embedded by an fmct without the brain_max readout
        if not out.exists():
            _log(f"embed {args.eval} with {name}")
            embed_store(model, args.eval, out, batch_size=8, keep_patch=False, progress=False)
        ids, y, groups, features[name], scores[name] = probe_embeddings(out, lab, args.site, args.feature)
        input_size = model_input_spec(model)[0]

    def per_finding(s: np.ndarray) -> dict[str, float | None]:
        row = {}
        for j, f in enumerate(FINDINGS):
            ok = 0 < y[:, j].sum() < len(y)
            row[f] = round(float(auroc(y[:, j], s[:, j])), 3) if ok else None
        vals = [v for v in row.values() if v is not None]
        row["macro"] = round(float(np.mean(vals)), 3)
        return row

    if args.reference:
        _log("reference: intracranial HU histogram of the model-input cubes")
        features["hu_histogram"] = x = reference_features(args.eval, ids, input_size)
        scores["hu_histogram"] = {kind: oof_scores(x, y, groups, kind) for kind in ("knn", "linear")}
    encoded = None
    if args.synth_seed is not None:
        all_rows = lab.reset_index()
        _log(f"generator parameters of {len(all_rows)} scans (site {args.site}, seed {args.synth_seed})")
        params = generator_parameters(len(all_rows), args.site, args.synth_seed, args.synth_size)
        row_of = {sid: i for i, sid in enumerate(all_rows["scan_id"])}
        target = params[[row_of[i] for i in ids]]
        encoded = {name: encoded_r2(x, target) for name, x in features.items()}
    table = {m: {k: per_finding(s) for k, s in d.items()} for m, d in scores.items()}

    def summary(d: dict) -> dict:
        return {"macro": round(d["macro"]["value"], 3), "ci": [round(c, 3) for c in d["macro"]["ci"]]}

    diffs = {}
    for kind in ("knn", "linear"):
        for p in pretrained:
            for name in randoms:
                d = paired_difference(y, scores[p][kind], scores[name][kind], FINDINGS, groups, args.n_boot)
                diffs[f"{kind}: {p} - {name}"] = summary(d)
        if len(pretrained) > 1:
            d = mean_difference(y, [scores[p][kind] for p in pretrained],
                                [scores[r][kind] for r in randoms], FINDINGS, groups, args.n_boot)  # fmt: skip
            key = f"{kind}: mean of {len(pretrained)} pretrained - mean of {len(randoms)} random"
            diffs[key] = summary(d)
    rows = {p: curves(run) for p, (_, run) in runs.items()}

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
        "n_eval_scans": int(len(y)),
        "n_pos": {f: int(y[:, j].sum()) for j, f in enumerate(FINDINGS)},
        "auroc": table,
        "paired_differences": diffs,
        "generator_parameters_cv_r2": encoded,
        "training_monitors": rows if len(rows) > 1 else rows["pretrained"],
        "seconds_pretrain": None if reused else round(t_pre, 1),
        "pretrain_run_reused": reused,
        "pretrain_runs_reused": reused_runs,  # seconds_pretrain counts only the others
    }
    print(
        f"\nheld-out site-{args.site} scans: {len(y)}; feature {args.feature}; macro AUROC (5-fold, by patient)"
    )
    for m in table:
        print(f"  {m:12s} kNN {table[m]['knn']['macro']:.3f}   linear {table[m]['linear']['macro']:.3f}")
    for k, v in diffs.items():
        print(f"  {k:42s} {v['macro']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]")
    if encoded:
        print("\nCV R² of ridge regressions of the generator parameters on the features:")
        for name, r2 in encoded.items():
            print(f"  {name:12s} " + "  ".join(f"{k} {v:.2f}" for k, v in r2.items()))
    for p, prow in rows.items():
        print(f"\ntraining monitors ({p}):")
        for r in prow:
            print("  " + "  ".join(f"{k} {v}" for k, v in r.items()))
    out = HERE / "results" / (f"pretrain_evidence_{args.tag}.json" if args.tag else "pretrain_evidence.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    _log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
