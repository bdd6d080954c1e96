"""An ingest worker's footprint: processing a series imports neither torch nor pandas (about 230 MB and
100 MB of RSS per worker), so a worker stays small (issue 27)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dicomkit import write_ball_series

SRC = Path(__file__).resolve().parents[2] / "src"
_CHILD = """
import json, sys, tempfile
from pathlib import Path
from fmct.preprocess import PreprocessConfig
from fmct.ingest.plan import plan
from fmct.ingest.worker import process_item
items, _ = plan([Path(sys.argv[1])])
with tempfile.TemporaryDirectory() as store:
    rows = [process_item(it, store, PreprocessConfig().to_dict(), 10) for it in items]
heavy = [m for m in ("torch", "pandas", "pyarrow") if m in sys.modules]
print(json.dumps({"status": [r["status"] for r in rows], "heavy": heavy}))
"""


def test_processing_a_tilted_series_imports_neither_torch_nor_pandas(tmp_path):
    write_ball_series(tmp_path / "series", tilt_deg=12.0)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path / "series")], capture_output=True, text=True, env=env
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["status"] == ["ok"]
    assert out["heavy"] == []
