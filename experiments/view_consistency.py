"""Can a backbone tell two augmented global views of the same scan apart from views of other scans?

DINO only learns when the teacher's target for one view is predictable from the student's other view; at
initialisation that needs the two views of a scan to be closer in feature space than views of different
scans. For ``--n`` scans of a store, two global views each are drawn with the given augmentation settings;
features (CLS and mean patch token, centred over all views) of view 1 retrieve view 2 by cosine similarity.
Reports top-1 retrieval accuracy (chance = 1/n) and mean same-scan vs other-scan cosine, for a randomly
initialised backbone and, with ``--model``, a trained one; one row per augmentation setting.

Usage::

    python experiments/view_consistency.py [--store demo_out/store_pool] [--model demo_out/runs/ssl/model]
        [--n 32] [--setting NAME:key=value,key=value ...]

Writes ``experiments/results/view_consistency.json``. About 5 s per setting and model on 2 cores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: Augmentation settings compared by default. Each names every augmentation key it relies on, so its meaning
#: does not change with configs/demo-cpu.yaml (which gives only crop sizes and whatever a setting leaves out);
#: ``demo-config`` is the demo config's own augmentation.
DEFAULT_SETTINGS = [
    "paper-style:global_scale=0.5/1.0,rotate_deg=10,flip_p=0.5,window_level_jitter=0.1,window_width_jitter=0.2,"
    "noise_p=0.5,noise_hu=15,blur_p=0.2,gamma_p=0.3",
    "crop-scale-only:global_scale=0.5/1.0,rotate_deg=0,flip_p=0,noise_p=0,blur_p=0,gamma_p=0,"
    "window_level_jitter=0,window_width_jitter=0",
    "mild:global_scale=0.9/1.0,rotate_deg=5,flip_p=0.5,window_level_jitter=0.05,window_width_jitter=0.1,"
    "noise_p=0.5,noise_hu=8,blur_p=0.2,gamma_p=0.1",
    "near-identical:global_scale=0.95/1.0,rotate_deg=0,flip_p=0,noise_p=0,blur_p=0,gamma_p=0,"
    "window_level_jitter=0,window_width_jitter=0",
    "demo-config:",
]


def parse_setting(text: str) -> tuple[str, dict]:
    """``NAME:key=value,...`` -> (name, overrides); ``a/b`` values become ``(a, b)`` tuples."""
    name, _, rest = text.partition(":")
    kw: dict = {}
    for item in filter(None, rest.split(",")):
        k, _, v = item.partition("=")
        kw[k] = tuple(float(x) for x in v.split("/")) if "/" in v else float(v)
    return name, kw


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=ROOT / "demo_out" / "store_pool")
    ap.add_argument("--model", type=Path, default=ROOT / "demo_out" / "runs" / "ssl" / "model")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "demo-cpu.yaml")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--setting", action="append", help="NAME:key=value,... (repeatable)")
    args = ap.parse_args()
    if not args.store.exists():
        print(f"error: {args.store} not found; run `make demo` first or pass --store")
        return 2
    import torch
    import torch.nn.functional as F
    import yaml

    from fmct import load_model
    from fmct.ssl.augment import AugmentConfig
    from fmct.ssl.data import SSLDataset
    from fmct.ssl.meta_arch import vit_from_model_config
    from fmct.store import open_store

    torch.set_num_threads(2)
    cfg = yaml.safe_load(args.config.read_text())
    data = dict(cfg.get("data", {}))
    store = open_store(args.store)
    ids = sorted(store.scan_ids)[: args.n]
    torch.manual_seed(0)
    models = {"random-init": vit_from_model_config(cfg["model"], int(data.get("global_size", 48))).eval()}
    if args.model and (args.model / "config.json").exists():
        loaded = load_model(args.model)
        models["trained"] = getattr(loaded, "backbone", loaded).eval()

    def features(model, views):
        with torch.no_grad():
            out = model.forward_features(views)
        return {"cls": out["cls"], "mean_patch": out["patch"].mean(1)}

    results = []
    for text in args.setting or DEFAULT_SETTINGS:
        name, kw = parse_setting(text)
        aug = AugmentConfig.from_dict({**data, "n_local": 0, **kw})
        ds = SSLDataset(store, ids, aug, cache_size=int(data.get("cache_size", 72)), seed=0)
        views = torch.stack([ds[i]["global"][:2] for i in range(len(ids))])  # (n, 2, C, G, G, G)
        for mname, model in models.items():
            f1, f2 = features(model, views[:, 0]), features(model, views[:, 1])
            row = {"setting": name, "overrides": kw, "model": mname}
            for k in ("cls", "mean_patch"):
                mu = torch.cat([f1[k], f2[k]]).mean(0)
                a, b = F.normalize(f1[k] - mu, dim=1), F.normalize(f2[k] - mu, dim=1)
                sim = a @ b.t()
                off = ~torch.eye(len(ids), dtype=torch.bool)
                row[k] = {
                    "top1_retrieval": round(
                        float((sim.argmax(1) == torch.arange(len(ids))).float().mean()), 3
                    ),
                    "same_scan_cos": round(float(sim.diag().mean()), 3),
                    "other_scan_cos": round(float(sim[off].mean()), 3),
                }
            results.append(row)
            print(
                f"{name:16s} {mname:11s} top-1 retrieval cls {row['cls']['top1_retrieval']:.2f} "
                f"mean_patch {row['mean_patch']['top1_retrieval']:.2f} (chance {1 / len(ids):.2f}); "
                f"same-scan cos {row['cls']['same_scan_cos']:+.3f} vs other {row['cls']['other_scan_cos']:+.3f}",
                flush=True,
            )
    out = HERE / "results" / "view_consistency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    headline = {f"{r['setting']}/{r['model']}": r["cls"]["top1_retrieval"] for r in results}
    out.write_text(json.dumps({"headline": headline, "n_scans": len(ids), "rows": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
