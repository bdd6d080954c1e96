"""CLI start-up: how long `fmct --help`, `fmct ingest --help` and an argument error take, against the peer
`python -c "import torch"` (what every command paid before fmct kept torch out of its start-up path).

Each command runs as a fresh process (the venv's Python, this checkout's ``src`` first on the path), the
commands interleaved round by round so load from other processes hits all alike; the figure per command is
the median of its rounds, and each ratio is the median of the per-round ratios to ``import torch``.
Writes ``benchmarks/results/cli_startup.json``. Usage: ``python benchmarks/cli_startup.py [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fmct.atomic import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: name -> (argv after the interpreter, expected exit code)
COMMANDS = {
    "import torch": (["-c", "import torch"], 0),
    "fmct --help": (["-m", "fmct", "--help"], 0),
    "fmct ingest --help": (["-m", "fmct", "ingest", "--help"], 0),
    "fmct ingest (argument error)": (["-m", "fmct", "ingest"], 2),
}
PEER = "import torch"
GOAL = 0.3


def run_once(argv: list[str], expected: int, env: dict[str, str]) -> float:
    """Wall seconds of one fresh interpreter running ``argv``; raises if it exits with another code."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != expected:
        raise SystemExit(f"{argv}: exit {proc.returncode}, expected {expected}\n{proc.stderr[-2000:]}")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds (after one warm-up round)")
    ap.add_argument("--out", type=Path, default=RESULTS / "cli_startup.json")
    args = ap.parse_args()
    paths = [str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}  # no empty entry (= the cwd)
    load_start = os.getloadavg()[0]
    times: dict[str, list[float]] = {k: [] for k in COMMANDS}
    for r in range(args.rounds + 1):
        for name, (argv, code) in COMMANDS.items():
            t = run_once(argv, code, env)
            if r:  # round 0 warms the page cache
                times[name].append(t)
    res: dict = {"python": sys.executable, "rounds": args.rounds, "peer": PEER, "goal_ratio_max": GOAL,
                 "load_avg_1min": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
                 "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
                 "ratio_to_import_torch": {}}  # fmt: skip
    for name in COMMANDS:
        if name != PEER:
            ratios = [a / b for a, b in zip(times[name], times[PEER], strict=True)]
            res["ratio_to_import_torch"][name] = round(statistics.median(ratios), 3)
    worst = max(res["ratio_to_import_torch"].values())
    res["headline"] = {
        "import_torch_s": res["median_s"][PEER],
        "worst_ratio": worst,
        "meets_goal": worst <= GOAL,
    }
    for name, s in res["median_s"].items():
        ratio = res["ratio_to_import_torch"].get(name)
        print(f"{name:>30}: {s:.3f} s" + (f"  = {ratio:.2f}x import torch" if ratio else ""))
    write_text_atomic(args.out, json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
