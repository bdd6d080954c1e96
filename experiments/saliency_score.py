"""Do our saliency maps point at the findings? Scored against the synthetic cohort's finding masks.

For every held-out synthetic scan and every finding present in it (with a mask), each saliency method
(attention rollout, gradient-weighted rollout, Grad x Input) is scored by
  * mass share: fraction of the map's mass inside the finding mask (on the model cube), and
  * pointing game: whether the map's maximum lies within --tol-mm of the mask,
against the peer: smooth random maps of the same size and smoothness (the chance level), scored the
same way (and against the mask itself, smoothed: the upper bound, which also checks the scoring
geometry). The classifier is --model (a classifier directory, e.g. from `fmct finetune`) or, by default,
a small ViT trained here from scratch on the synthetic training scans for --train-s seconds (its test
macro AUROC is reported: maps of a model that learned little cannot be expected to localise).
Writes ``experiments/results/saliency.json``.

    python experiments/saliency_score.py [--model DIR] [--n-train 32] [--n-test 12] [--train-s 120]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from fmct.labels import FINDINGS

RESULTS = Path(__file__).resolve().parent / "results"


def load_cohort(root: Path, size: int, windows) -> list[dict]:
    """Read, preprocess and cube every NIfTI scan of a synthetic cohort (with its labels and mask)."""
    from fmct.io import load_volume
    from fmct.preprocess import preprocess
    from fmct.preprocess.model_input import to_model_input

    labels = pd.read_csv(root / "labels.csv")
    items = []
    for _, row in labels.iterrows():
        sid = row["scan_id"]
        src = load_volume(root / "nifti" / f"{sid}.nii.gz")
        x, grid_affine = to_model_input(preprocess(src), size, windows)
        items.append(
            {
                "scan_id": sid,
                "x": x,
                "grid_affine": grid_affine,
                "y": np.array([float(row[f]) for f in FINDINGS]),
                "mask_path": root / "masks" / f"{sid}.nii.gz",
            }
        )
    return items


def train_small_vit(items: list[dict], size: int, seconds: float, seed: int = 0):
    """A ViT (96/4/3, patch 8) + linear head trained from scratch with BCE for ``seconds``."""
    from fmct.models.hub import ClassifierModel
    from fmct.models.vit3d import ViT3D, ViT3DConfig
    from fmct.preprocess import PreprocessConfig

    torch.manual_seed(seed)
    bb = ViT3D(ViT3DConfig(img_size=size, patch_size=8, embed_dim=96, depth=4, num_heads=3))
    model = ClassifierModel.from_backbone(
        bb,
        list(FINDINGS),
        pooling="cls+mean",
        preprocessing={**PreprocessConfig().to_dict(), "input_size": size},
    )
    x = torch.stack([it["x"] for it in items])
    y = torch.tensor(np.stack([it["y"] for it in items]), dtype=torch.float32)
    pos = y.sum(0)
    pw = ((len(y) - pos) / pos.clamp(min=1)).clamp(max=20)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.05)
    g = torch.Generator().manual_seed(seed)
    t0, steps = time.perf_counter(), 0
    model.train()
    while time.perf_counter() - t0 < seconds:
        idx = torch.randperm(len(x), generator=g)[:8]
        xb = x[idx]
        if torch.rand(1, generator=g) < 0.5:  # left-right flip (RAS axis 0)
            xb = xb.flip(2)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xb), y[idx], pos_weight=pw)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    return model.eval(), {
        "steps": steps,
        "seconds": round(time.perf_counter() - t0, 1),
        "final_loss": round(float(loss.detach()), 4),
    }


def macro_auroc(model, items) -> float | None:
    from fmct.evaluate.metrics import auroc_by_finding

    with torch.no_grad():
        p = torch.sigmoid(model(torch.stack([it["x"] for it in items]))).numpy()
    macro = auroc_by_finding(np.stack([it["y"] for it in items]), p, FINDINGS)["macro"]
    return None if macro is None else round(macro, 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", type=Path, default=None, help="classifier directory (default: train a small ViT)"
    )
    ap.add_argument("--n-train", type=int, default=32)
    ap.add_argument("--n-test", type=int, default=12)
    ap.add_argument("--synth-size", type=int, default=128, help="in-plane matrix of the synthetic scans")
    ap.add_argument("--input-size", type=int, default=48, help="cube size of the model trained here")
    ap.add_argument("--train-s", type=float, default=120.0, help="training time budget (s)")
    ap.add_argument("--random-maps", type=int, default=8, help="random peer maps per case")
    ap.add_argument("--tol-mm", type=float, default=10.0, help="pointing-game tolerance")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "saliency.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from fmct.infer.saliency import METHODS, blur_maps, compute_saliency
    from fmct.infer.saliency_metrics import (
        MaskDistance,
        mask_on_cube,
        mass_share,
        pointing_hit,
        random_map,
    )
    from fmct.synth import DEFAULT_PREVALENCE, finding_mask, generate_cohort

    prevalence = {k: min(0.5, 3 * v) for k, v in DEFAULT_PREVALENCE.items()}  # more positives to score
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fmct-bench-saliency-") as tmp:
        tmp = Path(tmp)
        model = None
        if args.model is not None:
            from fmct.models.hub import load_model

            model = load_model(args.model)
        size = int(model.preprocessing["input_size"]) if model is not None else args.input_size
        windows = model.preprocessing.get("windows") if model is not None else None
        from fmct.preprocess.windows import DEFAULT_WINDOWS

        windows = windows or DEFAULT_WINDOWS
        gen_kw = dict(
            site="a",
            seed=7,
            fmt="nifti",
            masks=True,
            size=args.synth_size,
            prevalence=prevalence,
            progress=False,
        )
        generate_cohort(tmp / "test", n=args.n_test, start=10_000, **gen_kw)
        test = load_cohort(tmp / "test", size, windows)
        training = {"source": str(args.model)}
        if model is None:
            generate_cohort(tmp / "train", n=args.n_train, **gen_kw)
            train = load_cohort(tmp / "train", size, windows)
            model, training = train_small_vit(train, size, args.train_s)
            training["n_train"] = len(train)
        auroc = macro_auroc(model, test)
        sigma = float(max(model.backbone.patch_size)) if hasattr(model.backbone, "patch_size") else 4.0
        g = torch.Generator().manual_seed(0)
        rows = []
        for it in test:
            present = [f for f, v in zip(FINDINGS, it["y"], strict=True) if v == 1]
            if not present:
                continue
            mimg = nib.load(str(it["mask_path"]))
            label_map = np.asarray(mimg.dataobj)
            findings = [f for f in present if finding_mask(label_map, f).any()]
            if not findings:
                continue
            maps = compute_saliency(model, it["x"][None], model.labels, findings)
            for f in findings:
                mask = finding_mask(label_map, f)
                occ = mask_on_cube(mask, mimg.affine, it["grid_affine"], size)
                dist = MaskDistance(mask, mimg.affine)
                row = {"scan_id": it["scan_id"], "finding": f, "mask_fraction": float(occ.mean())}
                for method, m in maps[f].items():
                    row[f"{method}_mass"] = mass_share(m, occ)
                    row[f"{method}_hit"] = pointing_hit(m, it["grid_affine"], dist, args.tol_mm)
                # upper bound and check of the scoring geometry: the mask itself, smoothed like the maps
                oracle = blur_maps(torch.as_tensor(occ)[None], sigma / 2)[0].numpy()
                row["mask_oracle_mass"] = mass_share(oracle, occ)
                row["mask_oracle_hit"] = pointing_hit(oracle, it["grid_affine"], dist, args.tol_mm)
                rnd = [random_map(size, sigma, g) for _ in range(args.random_maps)]
                row["random_mass"] = float(np.mean([mass_share(r, occ) for r in rnd]))
                row["random_hit"] = float(
                    np.mean([pointing_hit(r, it["grid_affine"], dist, args.tol_mm) for r in rnd])
                )
                rows.append(row)
    df = pd.DataFrame(rows)
    summary = {}
    for method in [*METHODS, "random", "mask_oracle"]:
        if df.empty:
            break
        summary[method] = {
            "mass_share": round(float(df[f"{method}_mass"].mean()), 4),
            "pointing_game": round(float(df[f"{method}_hit"].astype(float).mean()), 4),
        }
    per_finding = (
        df.groupby("finding")[[c for c in df.columns if c.endswith(("_mass", "_hit"))]]
        .mean()
        .round(4)
        .to_dict(orient="index")
        if not df.empty
        else {}
    )
    report = {
        "benchmark": "saliency_score",
        "cases": int(len(df)),
        "model": training,
        "test_macro_auroc": auroc,
        "tol_mm": args.tol_mm,
        "summary": summary,
        "per_finding": per_finding,
        "wall_s": round(time.perf_counter() - t_start, 1),
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        "headline": {
            "cases": int(len(df)),
            "test_macro_auroc": auroc,
            **{
                f"{m}_mass_vs_random": round(
                    summary[m]["mass_share"] / max(summary["random"]["mass_share"], 1e-9), 2
                )
                for m in METHODS
                if m in summary
            },
            **{f"{m}_pointing": summary[m]["pointing_game"] for m in [*METHODS, "random"] if m in summary},
        },
    }
    for method, s in summary.items():
        print(f"{method:>13}: mass share {s['mass_share']:.4f}  pointing game {s['pointing_game']:.3f}")
    print(f"cases {len(df)}, test macro AUROC {auroc}, model {training}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(f".{args.out.name}.tmp")
    tmp_out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    os.replace(tmp_out, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
