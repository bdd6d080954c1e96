"""Pretraining input pipeline: store -> multi-crop batches (samples/s) vs the SSL step's sample rate.

Everything at ``fmct pretrain``'s defaults (``fmct.train.config.DEFAULTS``): batch size, ``num_workers``,
cache size, 2 global + n local crops with all augmentations, the DINO/iBOT model. The loader is the same
``SSLDataset`` + ``make_loader`` the training loop uses. Rounds alternate the two, so load from other
processes hits both alike:
  - loader: a fresh DataLoader (default workers) pulls ``--batches`` batches while the main process only
    waits (its workers fork with the head cubes already cached, as after the first epoch of a run);
  - SSL step: ``--steps`` full steps (teacher + student forward, losses, backward, AdamW, EMA) on a
    batch from the loader, no loader alive, after ``--fed-warmup`` untimed steps (see below);
  - the same steps fed by a live loader (its workers crop the next batches meanwhile, as in training), timed
    after ``--fed-warmup`` untimed steps: ``fed_over_step_only`` near 1 means the step neither waits for data
    nor loses much CPU to the workers.
The start-up costs are reported apart: the cold start (the first batch of a fresh dataset: reading and cubing
every scan it touches) and the first step after the workers fork (``first_fed_step_over_step_only``). That
step pays once per run: the forked worker shares the main process's memory copy-on-write, so the step's first
write to each page of its heap (activations, gradients, AdamW state) copies it (``minor_faults_per_step``:
the first fed step against the later ones), while the worker crops the prefetched batches on the same cores.
A loader's fork leaves the same faults to the next steps without a loader, hence their warm-up too.
Without ``--store`` a small store is made in a temporary folder with ``fmct synth`` + ``fmct ingest``.
Writes ``benchmarks/results/loader.json``; the goal is loader samples/s >= 5x the step's.
"""

from __future__ import annotations

# isort: off
import fmct  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch loads libgomp)

# isort: on
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fmct.atomic import write_text_atomic

HERE = Path(__file__).resolve().parent


def make_store(tmp: Path, n: int, size: int) -> Path:
    """``fmct synth`` (NIfTI, site a, seed 0) + ``fmct ingest`` into ``tmp``; returns the store folder."""
    cli = [sys.executable, "-m", "fmct.cli"]
    src = str(Path(fmct.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    subprocess.run([*cli, "synth", str(tmp / "synth"), "--n", str(n), "--size", str(size), "--format", "nifti",
                    "--seed", "0"], check=True, env=env, stdout=subprocess.DEVNULL)  # fmt: skip
    subprocess.run([*cli, "ingest", str(tmp / "synth"), "--out", str(tmp / "store")], check=True, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    return tmp / "store"


def pull(loader: torch.utils.data.DataLoader) -> tuple[float, int, dict]:
    """Seconds to iterate ``loader`` to the end (worker start included), samples seen, last batch."""
    t = time.perf_counter()
    n, last = 0, {}
    for last in loader:
        n += len(last["p"])
    return time.perf_counter() - t, n, last


def minor_faults() -> int:
    """Minor page faults of this process so far (a copy-on-write copy is one)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def fed_rate(ds, ssl_step, start: int, steps: int, bsz: int, workers: int, warmup: int) -> dict:
    """SSL steps that take their batches from a live loader (default workers), as the training loop does.

    Worker start and the first batch are not timed. Returns ``samples_per_s`` of the ``steps`` steps after
    ``warmup`` untimed ones (steady state), ``first_step_s`` (the first step after the fork) and the minor
    page faults of that step and, per step, of the timed ones."""
    from fmct.ssl.data import make_loader

    it = iter(make_loader(ds, start, start + warmup + steps + 1, bsz, num_workers=workers))
    next(it)
    first_step_s, first_faults = 0.0, 0
    for i in range(warmup):
        f, t = minor_faults(), time.perf_counter()
        ssl_step(next(it))
        if i == 0:
            first_step_s, first_faults = time.perf_counter() - t, minor_faults() - f
    f, t = minor_faults(), time.perf_counter()
    for b in it:
        ssl_step(b)
    seconds = time.perf_counter() - t
    return {"samples_per_s": steps * bsz / seconds, "first_step_s": first_step_s,
            "first_step_minor_faults": first_faults, "minor_faults_per_step": (minor_faults() - f) / steps}  # fmt: skip


def start_up_costs(fed_runs: list[dict], step_rates: list[float], step_faults: list[float], bsz: int) -> dict:
    """The first fed step after the fork (seconds, and over a step alone of the same round) and the minor
    page faults per step: a step alone, the first fed step, a fed step in steady state (medians of rounds)."""
    return {
        "first_fed_step_s": statistics.median([f["first_step_s"] for f in fed_runs]),
        "first_fed_step_over_step_only": statistics.median(
            [f["first_step_s"] * rate / bsz for f, rate in zip(fed_runs, step_rates, strict=True)]
        ),
        "minor_faults_per_step": {
            "step_only": statistics.median(step_faults),
            "first_fed_step": statistics.median([f["first_step_minor_faults"] for f in fed_runs]),
            "fed_steady": statistics.median([f["minor_faults_per_step"] for f in fed_runs]),
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=None, help="an ingested store (default: make a small one)")
    ap.add_argument("--scans", type=int, default=6, help="scans of the generated store")
    ap.add_argument("--size", type=int, default=128, help="fmct synth --size of the generated store")
    ap.add_argument("--batches", type=int, default=6, help="loader batches per round")
    ap.add_argument("--steps", type=int, default=3, help="timed SSL steps per round")
    ap.add_argument("--fed-warmup", type=int, default=2,
                    help="untimed steps of each fed run after its workers start (start-up costs, reported apart)")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from fmct.cpu_heap import reuse_freed_memory
    from fmct.ssl.data import SSLDataset, make_loader
    from fmct.store import open_store
    from fmct.train.config import resolve_config
    from fmct.train.loop import aug_config, build_arch, store_windows
    from fmct.train.optim import build_optimizer, param_groups

    heap = reuse_freed_memory()  # as `fmct pretrain` on a CPU (fmct.train.loop), before its workers fork
    with tempfile.TemporaryDirectory(prefix="fmct-loader-bench-") as tmp:
        root = args.store or make_store(Path(tmp), args.scans, args.size)
        cfg = resolve_config(None)
        store = open_store(root)
        windows = store_windows(store, cfg)
        aug = aug_config(cfg, windows)
        bsz, workers = int(cfg["batch_size"]), int(cfg["data"]["num_workers"])
        ds = SSLDataset(store, store.scan_ids, aug, int(cfg["data"]["cache_size"]), int(cfg["seed"]))
        cold_s, _, batch = pull(make_loader(ds, 0, 1, bsz, num_workers=0))  # fills the main process's cache
        for sid in ds.scan_ids:  # every scan cached before the workers fork
            ds.cube(sid)

        torch.manual_seed(0)
        arch = build_arch(cfg, len(windows))
        opt = build_optimizer(param_groups(arch.student, "backbone.", 0.9, arch.last_layer_names()))
        arch.train()

        def ssl_step(b: dict = batch) -> None:
            loss, _, _ = arch.compute_loss(b, {"teacher_temp": 0.04}, torch.Generator().manual_seed(0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            arch.update_teacher(0.996)

        ssl_step()  # warm-up
        rates: dict[str, list[float]] = {"loader": [], "ssl_step": [], "ssl_step_fed_by_loader": []}
        step_faults: list[float] = []
        fed_runs: list[dict] = []
        for r in range(args.rounds):
            start = 1 + r * args.batches  # new sample numbers each round: new crops
            s, n, _ = pull(make_loader(ds, start, start + args.batches, bsz, num_workers=workers))
            rates["loader"].append(n / s)
            for _ in range(args.fed_warmup):  # the loader's fork left the heap's pages to fault in again
                ssl_step()
            f, t = minor_faults(), time.perf_counter()
            for _ in range(args.steps):
                ssl_step()
            rates["ssl_step"].append(args.steps * bsz / (time.perf_counter() - t))
            step_faults.append((minor_faults() - f) / args.steps)
            fed = fed_rate(ds, ssl_step, 10_000 + r * 100, args.steps, bsz, workers, args.fed_warmup)
            rates["ssl_step_fed_by_loader"].append(fed["samples_per_s"])
            fed_runs.append(fed)
            print(f"round {r}: loader {rates['loader'][-1]:.1f} samples/s, SSL step {rates['ssl_step'][-1]:.2f} "
                  f"samples/s, fed by the live loader {rates['ssl_step_fed_by_loader'][-1]:.2f} after "
                  f"{args.fed_warmup} steps (its first step {fed['first_step_s']:.2f} s)", flush=True)  # fmt: skip
        ratios = [a / b for a, b in zip(rates["loader"], rates["ssl_step"], strict=True)]
        res = {
            "store": "given"
            if args.store
            else f"fmct synth --n {args.scans} --size {args.size} + fmct ingest",
            "scans": len(ds.scan_ids),
            "batch_size": bsz,
            "num_workers": workers,
            "cache_size": int(cfg["data"]["cache_size"]),
            "views": {k: cfg["data"][k] for k in ("n_global", "global_size", "n_local", "local_size")},
            "model": {k: cfg["model"][k] for k in ("embed_dim", "depth", "num_heads", "patch_size")},
            "threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "cpu_heap_reuse": heap,
            "cold_first_batch_s": cold_s,
            "loader_samples_per_s": statistics.median(rates["loader"]),
            "ssl_step_samples_per_s": statistics.median(rates["ssl_step"]),
            "loader_over_step_median_ratio": statistics.median(ratios),
            "ssl_step_fed_by_loader_samples_per_s": statistics.median(rates["ssl_step_fed_by_loader"]),
            "fed_over_step_only_median_ratio": statistics.median(
                [a / b for a, b in zip(rates["ssl_step_fed_by_loader"], rates["ssl_step"], strict=True)]
            ),
            "fed_warmup_steps": args.fed_warmup,
            **start_up_costs(fed_runs, rates["ssl_step"], step_faults, bsz),
            "rounds": {k: [round(v, 2) for v in vs] for k, vs in rates.items()},
            "load_avg_1min_end": os.getloadavg()[0],
        }
    res["headline"] = {"loader_samples_per_s": round(res["loader_samples_per_s"], 1),
                       "ssl_step_samples_per_s": round(res["ssl_step_samples_per_s"], 2),
                       "loader_over_step": round(res["loader_over_step_median_ratio"], 1),
                       "fed_over_step_only": round(res["fed_over_step_only_median_ratio"], 2),
                       "first_fed_step_over_step_only": round(res["first_fed_step_over_step_only"], 2),
                       "goal": ">= 5"}  # fmt: skip
    print(json.dumps(res["headline"]))
    out = HERE / "results" / "loader.json"
    write_text_atomic(out, json.dumps(res, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
