"""`make bench`: run every CPU benchmark in this folder, then print a summary of benchmarks/results/*.json.

Each benchmark measures ours against a peer in the same run and writes ``results/<name>.json``.
Run one alone with ``python benchmarks/<name>.py --help``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: Order matters little; the slow calibration/label-efficiency runs go last.
ORDER = [
    "ingest",
    "synth_speed",
    "train_step",
    "loader",
    "predict",
    "saliency_score",
    "synth_difficulty",
    "label_efficiency",
    "view_consistency",
    "pretrain_evidence",
]
#: Benchmarks that need files another command makes; skipped (and said so) when they are missing.
REQUIRES = {
    "view_consistency": (HERE.parent / "demo_out" / "store_pool", "make demo"),
    "pretrain_evidence": (HERE.parent / "demo_out" / "store_eval", "make demo"),
}


def main() -> int:
    scripts = {p.stem: p for p in HERE.glob("*.py") if p.stem != "run_all" and not p.stem.startswith("_")}
    names = [n for n in ORDER if n in scripts] + sorted(set(scripts) - set(ORDER))
    failed = []
    for name in names:
        print(f"\n=== benchmarks/{name}.py", flush=True)
        need = REQUIRES.get(name)
        if need and not need[0].exists():
            print(f"--- {name}: skipped, needs {need[0]} (run `{need[1]}` first)", flush=True)
            continue
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(scripts[name])])
        print(f"--- {name}: exit {rc} in {time.perf_counter() - t0:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    print("\n=== summary (benchmarks/results)")
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        headline = data.get("headline") or {k: v for k, v in data.items() if isinstance(v, (int, float, str))}
        print(f"{path.stem:>20}: {json.dumps(headline)[:300]}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
