"""`make bench`: run every peer benchmark in this folder, then print a summary of benchmarks/results/*.json.

Each benchmark measures ours against a peer in the same run and writes ``results/<name>.json``.
Run one alone with ``python benchmarks/<name>.py --help``. The research scripts (does pretraining learn,
label efficiency, saliency, cohort difficulty) are in ``experiments/`` and run one at a time; see
docs/results.md for their commands.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
#: Run order (any other script in this folder runs after these).
ORDER = ["ingest", "synth_speed", "train_step", "loader", "predict", "cli_startup"]
#: Extra arguments: train_step also measures torch.compile (about 30 s of compiling), so its committed result
#: keeps that section.
ARGS = {"train_step": ["--compile"]}


def main() -> int:
    scripts = {p.stem: p for p in HERE.glob("*.py") if p.stem != "run_all" and not p.stem.startswith("_")}
    names = [n for n in ORDER if n in scripts] + sorted(set(scripts) - set(ORDER))
    failed = []
    for name in names:
        print(f"\n=== benchmarks/{name}.py", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(scripts[name]), *ARGS.get(name, [])])
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
