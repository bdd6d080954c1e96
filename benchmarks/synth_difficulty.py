"""Calibration of the synthetic cohort: are the findings learnable but not trivial, and is OOD harder?

Generates site-a scans (train + held-out test) and external site-b/c scans at a small matrix, puts each
into a RAS-aligned 48^3 cube around the head (4.4 mm voxels, 3 default windows), trains a small 3D CNN
from scratch on all 12 labels of the site-a training split and reports per-finding AUROC on held-out a
(ID) and on b and c (OOD). Writes benchmarks/results/synth_difficulty.json.

Usage: python benchmarks/synth_difficulty.py [--n-a 400] [--n-ood 100] [--epochs 30] [--workers 2]

The criterion is only "learnable but not trivial" (not every AUROC 1.0, ID above chance, OOD lower than
ID); the generator must never be tuned to favour a method. Prevalences are doubled for this run (listed
in the JSON) so each held-out finding has enough positives for an AUROC.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CUBE, CUBE_MM = 48, 210.0


def head_cube(volume) -> np.ndarray:
    """``(CUBE,)*3`` int16 HU in RAS orientation, centred on the head's centre of mass."""
    from scipy import ndimage as ndi

    arr = volume.array
    fg = np.argwhere(arr[::2, ::2, ::2] > -300) * 2
    centre_vox = fg.mean(0) if len(fg) else (np.array(arr.shape) - 1) / 2
    centre = (volume.affine @ np.r_[centre_vox, 1.0])[:3]
    h = CUBE_MM / CUBE
    cube_aff = np.eye(4)
    cube_aff[:3, :3] *= h
    cube_aff[:3, 3] = centre - h * (CUBE - 1) / 2
    m = np.linalg.inv(volume.affine) @ cube_aff
    # light anti-aliasing before the 4.4 mm resampling
    sig = [max(0.0, 0.4 * h / s - 0.3) for s in volume.spacing]
    src = ndi.gaussian_filter(arr, sig) if max(sig) > 0 else arr
    out = ndi.affine_transform(
        src, m[:3, :3], offset=m[:3, 3], output_shape=(CUBE,) * 3, order=1, cval=-1000.0
    )
    return np.rint(np.clip(out, -1024, 3071)).astype(np.int16)


def _job(args):
    index, site, seed, size, prevalence = args
    from fmct.labels import FINDINGS
    from fmct.synth import synth_scan

    s = synth_scan(index, site, seed, size=size, prevalence=prevalence, with_mask=False)
    return head_cube(s.volume), np.array([s.labels[f] for f in FINDINGS], dtype=np.float32)


def generate(site: str, n: int, seed: int, size: int, prevalence, workers: int):
    jobs = [(i, site, seed, size, prevalence) for i in range(n)]
    with ProcessPoolExecutor(workers) as ex:
        res = list(ex.map(_job, jobs, chunksize=4))
    return np.stack([r[0] for r in res]), np.stack([r[1] for r in res])


def build_model():
    import torch.nn as nn

    def block(i, o, double=True):
        layers = [nn.Conv3d(i, o, 3, stride=2, padding=1, bias=False), nn.BatchNorm3d(o), nn.ReLU()]
        if double:
            layers += [nn.Conv3d(o, o, 3, padding=1, bias=False), nn.BatchNorm3d(o), nn.ReLU()]
        return nn.Sequential(*layers)

    return nn.Sequential(
        block(3, 12, double=False),
        block(12, 24),
        block(24, 48),
        block(48, 96),
        nn.AdaptiveMaxPool3d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(96, 12),
    )


def to_input(cubes):
    import torch

    from fmct.preprocess.windows import DEFAULT_WINDOWS, apply_windows

    return (
        apply_windows(torch.from_numpy(cubes.astype(np.float32)), DEFAULT_WINDOWS)
        .permute(1, 0, 2, 3, 4)
        .contiguous()
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n-a", type=int, default=400)
    ap.add_argument("--n-test-a", type=int, default=100)
    ap.add_argument("--n-ood", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch
    from sklearn.metrics import roc_auc_score

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
    x_tr, y_tr = to_input(xa[:n_tr]), torch.from_numpy(ya[:n_tr])
    tests = {
        "a (ID)": (to_input(xa[n_tr:]), ya[n_tr:]),
        "b (OOD)": (to_input(xb), yb),
        "c (OOD)": (to_input(xc), yc),
    }
    model = build_model()
    pos = y_tr.mean(0).clamp(0.02, 0.98)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=((1 - pos) / pos).clamp(max=10.0))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    steps = args.epochs * int(np.ceil(n_tr / 16))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.15)
    g = torch.Generator().manual_seed(args.seed)
    t1 = time.time()
    for ep in range(args.epochs):
        model.train()
        perm = torch.randperm(n_tr, generator=g)
        tot = 0.0
        for i in range(0, n_tr, 16):
            idx = perm[i : i + 16]
            xb_ = x_tr[idx]
            shift = torch.randint(-3, 4, (3,), generator=g).tolist()
            xb_ = torch.roll(xb_, shifts=shift, dims=(2, 3, 4))
            loss = loss_fn(model(xb_), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        print(f"epoch {ep + 1}/{args.epochs} loss {tot / n_tr:.4f} ({time.time() - t1:.0f}s)", flush=True)
    t_train = time.time() - t1
    model.eval()
    table: dict[str, dict] = {}
    with torch.no_grad():
        for name, (x, y) in tests.items():
            p = torch.cat([torch.sigmoid(model(x[i : i + 32])) for i in range(0, len(x), 32)]).numpy()
            row = {}
            for j, f in enumerate(FINDINGS):
                npos = int(y[:, j].sum())
                auc = float(roc_auc_score(y[:, j], p[:, j])) if 0 < npos < len(y) else None
                row[f] = {"auroc": None if auc is None else round(auc, 3), "n_pos": npos, "n": int(len(y))}
            aucs = [v["auroc"] for v in row.values() if v["auroc"] is not None]
            row["macro"] = {"auroc": round(float(np.mean(aucs)), 3), "n_pos": None, "n": int(len(y))}
            table[name] = row
    res = {
        "headline": {f"macro_auroc_{k.split()[0]}": v["macro"]["auroc"] for k, v in table.items()},
        "what": "small 3D CNN trained from scratch on site-a synthetic scans, all 12 labels",
        "n_train_a": n_tr,
        "n_test": {k: int(len(v[1])) for k, v in tests.items()},
        "matrix": args.size,
        "cube": CUBE,
        "cube_mm": CUBE_MM,
        "epochs": args.epochs,
        "prevalence_used": prev,
        "seconds_generate": round(t_gen, 1),
        "seconds_train": round(t_train, 1),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "auroc": table,
    }
    print(f"\n{'finding':15s}" + "".join(f"{k:>12s}" for k in table))
    for f in [*FINDINGS, "macro"]:
        cells = []
        for k in table:
            v = table[k][f]
            cells.append(
                f"{'-' if v['auroc'] is None else v['auroc']:>7}"
                + (f" ({v['n_pos']:>2})" if v["n_pos"] is not None else "     ")
            )
        print(f"{f:15s}" + "".join(f"{c:>12s}" for c in cells))
    out = Path(__file__).parent / "results" / "synth_difficulty.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"\nwrote {out}; generation {t_gen:.0f}s, training {t_train:.0f}s")


if __name__ == "__main__":
    main()
