"""Per-scan wall time of `fmct predict` on CPU, split into read / preprocess / model (+ saliency).

Two classifiers, each a linear head on the ``brain_max`` readout, as ``fmct demo`` trains it (timing does not
depend on the head's weights): the shipped CPU backbone ``weights/demo-vit`` (192/4/3, 48³ input, patch 4 ->
1,728 tokens) and the GPU recipe's ViT-B of ``configs/vit-b-96.yaml`` (768/12/12, 96³ input, patch 8 -> 1,728
tokens; random weights). Inputs: synthetic DICOM series of site "a" (``fmct.synth``), read through the same
path as ingest. The peer is the read + preprocess time of the same scans: it tells whether the network or the
I/O dominates a prediction. Writes ``benchmarks/results/predict.json``.

    python benchmarks/predict.py [--scans 3] [--threads 2] [--saliency-finding ich]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fmct.atomic import write_text_atomic
from fmct.labels import FINDINGS
from fmct.models.hub import ClassifierModel, load_model
from fmct.preprocess import PreprocessConfig
from fmct.train.backbone import backbone_from_config
from fmct.train.config import resolve_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: name -> (what it is, input size, patch size)
MODELS = {
    "demo-vit": ("shipped weights/demo-vit", 48, 4),
    "vit-b-96": ("configs/vit-b-96.yaml, random init", 96, 8),
}


def build(name: str, out: Path) -> Path:
    """The classifier ``name`` (a linear ``brain_max`` head on its backbone) saved under ``out``."""
    torch.manual_seed(0)
    if name == "demo-vit":
        backbone = load_model(ROOT / "weights" / "demo-vit")
        clf = ClassifierModel.from_backbone(backbone, list(FINDINGS), pooling="brain_max", name=name)
    else:
        cfg = resolve_config(ROOT / "configs" / "vit-b-96.yaml")
        pre = {**PreprocessConfig().to_dict(), "input_size": int(cfg["data"]["global_size"])}
        bb = backbone_from_config(cfg, len(pre["windows"]))
        clf = ClassifierModel.from_backbone(
            bb, list(FINDINGS), pooling="brain_max", preprocessing=pre, name=name
        )
    return clf.save_pretrained(out / name)


def summarize(entries: list[dict]) -> dict:
    ok = [e for e in entries if e["status"] == "ok"]
    keys = sorted({k for e in ok for k in e["timings"]})
    return {k: round(statistics.median(e["timings"][k] for e in ok if k in e["timings"]), 4) for k in keys}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scans", type=int, default=3, help="synthetic DICOM series to time (median reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument(
        "--saliency-finding", default="ich", help="finding explained in the saliency timing ('' = skip)"
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "predict.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from fmct.infer.predict import predict_paths
    from fmct.synth import generate_cohort

    with tempfile.TemporaryDirectory(prefix="fmct-bench-predict-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        generate_cohort(tmp / "cohort", n=args.scans, site="a", seed=11, fmt="dicom", progress=False)
        synth_s = time.perf_counter() - t0
        scans = sorted(str(p) for p in (tmp / "cohort" / "dicom").iterdir())
        report: dict = {
            "benchmark": "predict",
            "machine": {
                "cpu_threads": args.threads,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "torch": torch.__version__,
                "load_avg_1min_at_start": round(os.getloadavg()[0], 2),
            },
            "inputs": {
                "n": len(scans),
                "kind": "synthetic DICOM series, site a",
                "synth_s": round(synth_s, 2),
            },
            "models": {},
        }
        for name in MODELS:
            d = build(name, tmp / "models")
            t0 = time.perf_counter()
            model = load_model(d)
            load_s = time.perf_counter() - t0
            predict_paths(model, scans[:1])  # warm-up (first-call allocations, lazy imports)
            entries = predict_paths(model, scans)
            failed = [e for e in entries if e["status"] != "ok"]
            if failed:
                print(f"{name}: {len(failed)} inputs failed: {failed[0].get('error')}")
            med = summarize(entries)
            row = {
                "load_model_s": round(load_s, 3),
                "per_scan_median_s": med,
                "n_params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                "what": MODELS[name][0],
                "input": f"{MODELS[name][1]}^3 patch {MODELS[name][2]}",
                "source_shape": entries[0].get("source", {}).get("shape"),
            }
            io = med.get("read_s", 0.0) + med.get("preprocess_s", 0.0)
            row["model_over_read_preprocess"] = round(med.get("model_s", 0.0) / io, 3) if io else None
            if args.saliency_finding:
                sal = predict_paths(
                    model,
                    scans[:1],
                    saliency_dir=tmp / "sal" / name,
                    saliency_findings=[args.saliency_finding],
                )
                row["saliency_s_one_finding_3_methods"] = round(
                    sal[0]["timings"].get("saliency_s", float("nan")), 3
                )
            report["models"][name] = row
            print(
                f"{name:>14}: read {med.get('read_s', 0):.3f} s  preprocess {med.get('preprocess_s', 0):.3f} s  "
                f"model {med.get('model_s', 0):.3f} s  saliency(1 finding) {row.get('saliency_s_one_finding_3_methods')}"
                f" s  [{row['input']}, {row['n_params_M']} M params]"
            )
    report["machine"]["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    report["headline"] = {
        f"{n}_model_s": report["models"][n]["per_scan_median_s"].get("model_s") for n in MODELS
    } | {
        "read_plus_preprocess_s": round(
            sum(
                report["models"]["demo-vit"]["per_scan_median_s"].get(k, 0)
                for k in ("read_s", "preprocess_s")
            ),
            3,
        )
    }
    write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
