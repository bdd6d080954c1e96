"""fmct sets OMP_WAIT_POLICY=PASSIVE before torch loads libgomp, and keeps a value the user set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fmct import omp_policy

SRC = str(Path(omp_policy.__file__).resolve().parents[1])

#: Records the variable at the moment ``import torch`` starts, i.e. what libgomp will read.
PROBE = """
import importlib.abc, os, sys
seen = []
class Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY", "<unset>"))
        return None
sys.meta_path.insert(0, Hook())
import fmct
import torch
print(seen[0], os.environ.get("OMP_WAIT_POLICY"))
"""


def _probe(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != omp_policy.VARIABLE}
    if env_value is not None:
        env[omp_policy.VARIABLE] = env_value
    env["PYTHONPATH"] = SRC
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_import_fmct_sets_passive_before_torch_loads() -> None:
    # whether fmct imports torch itself or the caller does after it, libgomp reads PASSIVE
    assert _probe(None) == "PASSIVE PASSIVE"


def test_user_value_is_kept() -> None:
    assert _probe("ACTIVE") == "ACTIVE ACTIVE"


def test_no_effect_once_torch_is_loaded(monkeypatch) -> None:
    import torch  # noqa: F401  (pytest has loaded it already; make it explicit)

    monkeypatch.delenv(omp_policy.VARIABLE, raising=False)
    assert omp_policy.apply_default() is False
    assert omp_policy.VARIABLE not in os.environ
