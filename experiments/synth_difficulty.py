"""Calibration of the synthetic cohort: are the findings learnable but not trivial, and is OOD harder?

Generates site-a scans (train + held-out test) and external site-b/c scans at the demo's 128² matrix and
puts each into a RAS-aligned 64³ cube around the head (3.3 mm voxels, int16 HU). Two supervised models
are trained on the site-a training split only, with all 12 labels, and scored (per-finding AUROC) on
held-out site a (ID) and on sites b and c (OOD):

- ``cnn``: a small 3D ResNet (``fmct.models.baselines.ResNet3D``, widths 16-128, batch norm) from scratch on
  the 3 default windows resized to ``--input``³ (default 32³, 6.6 mm voxels), average+max pooled, flips
  and shifts as augmentation;
- ``hu_hist``: the evaluation protocol's linear probe (:func:`fmct.evaluate.probe.fit_linear_probe`, C chosen
  on 15 % of the training scans; ``results/synth_difficulty.json`` was made with a fixed C = 0.3) on the
  intracranial HU histogram (:mod:`fmct.evaluate.hu_histogram`) - a transparent check of how much of each
  finding is plain density.

Writes experiments/results/synth_difficulty.json.
Usage: python experiments/synth_difficulty.py [--n-a 1200] [--n-test-a 200] [--n-ood 150] [--epochs 30]

The criterion is only "learnable but not trivial" (some findings clearly detected, not every AUROC 1.0,
OOD lower than ID); the generator must never be tuned to favour a method. Prevalences are doubled for
this run (listed in the JSON) so each held-out finding has enough positives for an AUROC.
Measured on 2 cores: 1500 scans generated in ~4-5 min, CNN training ~3 min at 32³ (~20 s/epoch at 48³,
~60 s/epoch at 64³).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CUBE, CUBE_MM = 64, 210.0


def head_cube(volume, cube: int = CUBE) -> np.ndarray:
    """``(cube,)*3`` int16 HU in RAS orientation, centred on the head's centre of mass."""
    from scipy import ndimage as ndi

    arr = volume.array
    fg = np.argwhere(arr[::2, ::2, ::2] > -300) * 2
    centre_vox = fg.mean(0) if len(fg) else (np.array(arr.shape) - 1) / 2
    centre = (volume.affine @ np.r_[centre_vox, 1.0])[:3]
    h = CUBE_MM / cube
    cube_aff = np.eye(4)
    cube_aff[:3, :3] *= h
    cube_aff[:3, 3] = centre - h * (cube - 1) / 2
    m = np.linalg.inv(volume.affine) @ cube_aff
    # light anti-aliasing before the resampling to h mm
    sig = [max(0.0, 0.4 * h / s - 0.3) for s in volume.spacing]
    src = ndi.gaussian_filter(arr, sig) if max(sig) > 0 else arr
    out = ndi.affine_transform(
        src, m[:3, :3], offset=m[:3, 3], output_shape=(cube,) * 3, order=1, cval=-1000.0
    )
    return np.rint(np.clip(out, -1024, 3071)).astype(np.int16)


def _job(args):
    index, site, seed, size, prevalence = args
    from fmct.labels import FINDINGS
    from fmct.synth import synth_scan

    s = synth_scan(index, site, seed, size=size, prevalence=prevalence, with_mask=False)
    return head_cube(s.volume), np.array([s.labels[f] for f in FINDINGS], dtype=np.float32)


def generate(site: str, n: int, seed: int, size: int, prevalence, workers: int):
    """``(n, CUBE, CUBE, CUBE)`` int16 cubes and ``(n, 12)`` labels of scans ``0..n-1`` of ``(site, seed)``."""
    jobs = [(i, site, seed, size, prevalence) for i in range(n)]
    with ProcessPoolExecutor(workers) as ex:
        res = list(ex.map(_job, jobs, chunksize=4))
    return np.stack([r[0] for r in res]), np.stack([r[1] for r in res])


# ---------------------------------------------------------------- HU-histogram baseline
def hu_histogram(cubes: np.ndarray) -> np.ndarray:
    """``(n, 34)`` intracranial HU histograms (:func:`fmct.evaluate.hu_histogram.hu_histogram`) of ``(n, L, L, L)``
    HU cubes."""
    from fmct.evaluate.hu_histogram import hu_histogram as one

    return np.stack([one(v) for v in cubes])


def fit_hu_hist(x_tr, y_tr, tests, seed: int = 0):
    """The evaluation protocol's linear probe (:func:`fmct.evaluate.probe.fit_linear_probe`: a balanced
    logistic regression per finding, C chosen on a validation part of 15 % of the training scans) on
    :func:`hu_histogram` features -> ``{test: (n, 12) scores}`` (NaN for a finding with one class in train)."""
    import pandas as pd

    from fmct.evaluate.probe import fit_linear_probe
    from fmct.evaluate.splits import make_splits
    from fmct.labels import FINDINGS

    f_tr = hu_histogram(x_tr)
    ids = pd.DataFrame({"scan_id": [str(i) for i in range(len(f_tr))], "ich": y_tr[:, FINDINGS.index("ich")]})
    split = make_splits(ids, val_frac=0.15, test_frac=0.0, seed=seed)["split"].to_numpy()
    tr, va = split == "train", split == "val"
    probe = fit_linear_probe(f_tr[tr], y_tr[tr], f_tr[va], y_tr[va], FINDINGS, seed=seed)
    return {k: probe.predict_proba(hu_histogram(x)) for k, (x, _) in tests.items()}


# ---------------------------------------------------------------- small 3D CNN
def to_input(cubes: np.ndarray, size: int):
    """int16 HU cubes ``(n, L, L, L)`` -> windowed ``(n, 3, size, size, size)`` float32 in [0, 1]."""
    import torch
    import torch.nn.functional as F

    from fmct.preprocess.windows import DEFAULT_WINDOWS, apply_windows

    parts = []
    for i in range(0, len(cubes), 100):
        x = apply_windows(torch.from_numpy(cubes[i : i + 100].astype(np.float32)), DEFAULT_WINDOWS)
        x = x.permute(1, 0, 2, 3, 4).contiguous()
        if size != x.shape[-1]:
            x = F.interpolate(x, size=(size,) * 3, mode="trilinear", align_corners=False)
        parts.append(x)
    return torch.cat(parts)


def build_cnn(n_labels: int):
    """ResNet3D (batch norm) -> concat(global average, global max) -> dropout -> linear logits."""
    import torch
    from torch import nn

    from fmct.models.baselines import ResNet3D

    class SmallCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = ResNet3D(widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1), norm="batch")
            self.drop = nn.Dropout(0.2)
            self.fc = nn.Linear(2 * self.backbone.embed_dim, n_labels)

        def forward(self, x):
            f = self.backbone.stem(x)
            for stage in self.backbone.stages:
                f = stage(f)
            return self.fc(self.drop(torch.cat([f.mean((2, 3, 4)), f.amax((2, 3, 4))], 1)))

    return SmallCNN()


def fit_cnn(x_tr, y_tr, tests, args):
    """Train :func:`build_cnn` on ``x_tr`` (all labels) -> ``{test: (n, 12) scores}``."""
    import torch

    size = args.input
    xt, yt = to_input(x_tr, size), torch.from_numpy(y_tr)
    model = build_cnn(y_tr.shape[1])
    pos = yt.mean(0).clamp(0.02, 0.98)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=((1 - pos) / pos).clamp(max=10.0))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    bs, n = 16, len(xt)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=args.epochs * ((n + bs - 1) // bs), pct_start=0.1
    )
    g = torch.Generator().manual_seed(args.seed)
    max_shift = max(1, size // 16)
    t0 = time.time()
    model.train()
    for ep in range(args.epochs):
        perm = torch.randperm(n, generator=g)
        tot = 0.0
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            xb = xt[idx]
            if float(torch.rand((), generator=g)) < 0.5:
                xb = xb.flip(2)  # left-right (RAS x)
            shift = torch.randint(-max_shift, max_shift + 1, (3,), generator=g).tolist()
            xb = torch.roll(xb, shifts=shift, dims=(2, 3, 4))
            loss = loss_fn(model(xb), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        print(f"epoch {ep + 1}/{args.epochs} loss {tot / n:.4f} ({time.time() - t0:.0f}s)", flush=True)
    model.eval()
    scores = {}
    with torch.no_grad():
        for k, (x, _) in tests.items():
            xi = to_input(x, size)
            scores[k] = torch.cat(
                [torch.sigmoid(model(xi[i : i + 32])) for i in range(0, len(xi), 32)]
            ).numpy()
    return scores


def auroc_table(scores, tests, names):
    """Per test set: per-finding AUROC (:func:`fmct.evaluate.metrics.auroc_by_finding`) with the positives."""
    from fmct.evaluate.metrics import auroc_by_finding

    table: dict[str, dict] = {}
    for k, (_, y) in tests.items():
        aucs = auroc_by_finding(y, scores[k], names)
        row = {}
        for j, f in enumerate(names):
            auc = aucs[f]
            row[f] = {
                "auroc": None if auc is None else round(auc, 3),
                "n_pos": int(y[:, j].sum()),
                "n": int(len(y)),
            }
        macro = aucs["macro"]
        row["macro"] = {"auroc": None if macro is None else round(macro, 3), "n_pos": None, "n": int(len(y))}
        table[k] = row
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-a", type=int, default=1200, help="site-a scans (train + held-out test)")
    ap.add_argument("--n-test-a", type=int, default=200, help="held-out site-a scans (ID test)")
    ap.add_argument("--n-ood", type=int, default=150, help="scans of each external site (b, c)")
    ap.add_argument("--size", type=int, default=128, help="in-plane matrix of the generated scans")
    ap.add_argument("--input", type=int, default=32, help="CNN input side (voxels) of the 210 mm cube")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    from fmct.labels import FINDINGS
    from fmct.synth.findings import DEFAULT_PREVALENCE

    torch.set_num_threads(max(1, args.workers))
    torch.manual_seed(args.seed)
    prev = {k: min(0.6, 2 * v) for k, v in DEFAULT_PREVALENCE.items()}
    t0 = time.time()
    xa, ya = generate("a", args.n_a, 1000 + args.seed, args.size, prev, args.workers)
    xb, yb = generate("b", args.n_ood, 2000 + args.seed, args.size, prev, args.workers)
    xc, yc = generate("c", args.n_ood, 3000 + args.seed, args.size, prev, args.workers)
    t_gen = time.time() - t0
    n_tr = args.n_a - args.n_test_a
    tests = {"a (ID)": (xa[n_tr:], ya[n_tr:]), "b (OOD)": (xb, yb), "c (OOD)": (xc, yc)}
    t1 = time.time()
    tables = {"cnn": auroc_table(fit_cnn(xa[:n_tr], ya[:n_tr], tests, args), tests, FINDINGS)}
    t_cnn = time.time() - t1
    tables["hu_hist"] = auroc_table(fit_hu_hist(xa[:n_tr], ya[:n_tr], tests, args.seed), tests, FINDINGS)
    res = {
        "headline": {
            f"{m}_macro_auroc_{k.split()[0]}": t[k]["macro"]["auroc"] for m, t in tables.items() for k in t
        },
        "what": "supervised models trained on site-a synthetic scans (all 12 labels), AUROC on held-out a, b, c",
        "models": {
            "cnn": f"ResNet3D 16-128 from scratch, {args.input}^3 input, {args.epochs} epochs",
            "hu_hist": "the protocol's linear probe (C chosen on 15 % of the training scans) on an intracranial "
            "HU histogram",
        },
        "n_train_a": n_tr,
        "n_test": {k: int(len(v[1])) for k, v in tests.items()},
        "matrix": args.size,
        "cube": CUBE,
        "cube_mm": CUBE_MM,
        "input": args.input,
        "epochs": args.epochs,
        "seed": args.seed,
        "prevalence_used": prev,
        "seconds_generate": round(t_gen, 1),
        "seconds_train_cnn": round(t_cnn, 1),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "auroc": tables,
    }
    for m, table in tables.items():
        print(f"\n[{m}] {'finding':15s}" + "".join(f"{k:>14s}" for k in table))
        for f in [*FINDINGS, "macro"]:
            cells = []
            for k in table:
                v = table[k][f]
                a = "-" if v["auroc"] is None else f"{v['auroc']:.3f}"
                cells.append(f"{a:>7}" + (f" ({v['n_pos']:>3})" if v["n_pos"] is not None else "      "))
            print(f"{'':{len(m) + 3}s}{f:15s}" + "".join(f"{c:>14s}" for c in cells))
    out = Path(__file__).parent / "results" / "synth_difficulty.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {out}; generation {t_gen:.0f}s, CNN training {t_cnn:.0f}s")


if __name__ == "__main__":
    main()
