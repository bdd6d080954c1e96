"""Teacher backbones kept during pretraining: periodic snapshots and the best one by a kNN monitor.

Self-supervised losses and collapse monitors say little about which step's features serve downstream tasks
best (on the synthetic cohort the DINO + iBOT features of the demo config peak and then decline while the
losses keep falling; docs/results.md "Does pretraining learn?"). Two config keys keep what is needed to choose:

- ``snapshot_every: N`` exports the teacher backbone every N steps to ``RUN/snapshots/step-NNNNNN/`` (a model
  directory each, loadable with ``fmct.load_model``), so any step can be evaluated afterwards;
- ``best_by: knn_auroc_brain_max`` (or ``knn_auroc_macro``) re-exports ``RUN/model-best/`` whenever that
  kNN monitor (``labels=``, scored at each ``monitor_every``) beats its best so far, and records the step and
  value in ``RUN/best.json``. The monitor's labelled scans then took part in choosing the model: report
  downstream numbers on other scans.

``RUN/model`` stays the teacher at the last step.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from torch import nn

BEST_DIR = "model-best"
BEST_JSON = "best.json"
SNAPSHOT_DIR = "snapshots"

#: ``save(backbone, out_dir, steps_done) -> out_dir``: writes one model directory.
SaveBackbone = Callable[[nn.Module, Path, int], Path]


def snapshot_dir(run_dir: str | Path, steps_done: int) -> Path:
    """``RUN/snapshots/step-NNNNNN`` for the teacher after ``steps_done`` optimiser steps."""
    return Path(run_dir) / SNAPSHOT_DIR / f"step-{steps_done:06d}"


def read_best(run_dir: str | Path) -> dict[str, Any] | None:
    """``RUN/best.json`` (``{"key", "value", "step", "path"}``) or None when absent or unreadable."""
    p = Path(run_dir) / BEST_JSON
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and isinstance(d.get("value"), int | float) else None


def describe_best(best: Mapping[str, Any], steps_done: int) -> str:
    """The line (two with a note) on a kept best model for the end of ``fmct pretrain``.

    The first monitor runs after the first update, when the teacher is still close to its random
    initialisation; if no later teacher beat it, the line says so (seen on the synthetic cohort: a 1200-step
    iBOT-only run whose 1,000-scan monitor never beat its value after step 1, docs/results.md).
    """
    line = f"best {best['key']} {float(best['value']):.3f} at step {best['step']}: {best['path']}"
    if int(best["step"]) <= 1 < steps_done:
        line += (
            f"\nnote: no teacher after step 1 beat the first monitor in {steps_done} steps; model-best is the "
            "teacher after one update, close to its random initialisation (pretraining did not improve this "
            "monitor)"
        )
    return line


def _write_json_atomic(path: Path, obj: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


class ModelKeeper:
    """Decides when to snapshot the teacher and whether a monitor record makes a new best; writes both.

    Args:
        run_dir: the run folder.  save: writes a backbone as a model directory (see :data:`SaveBackbone`).
        snapshot_every: steps between snapshots (0 = none).  best_by: monitor key to maximise, or None.
        resume: continue the best-so-far of ``RUN/best.json`` (a fresh run starts from scratch).
    """

    def __init__(
        self,
        run_dir: str | Path,
        save: SaveBackbone,
        snapshot_every: int = 0,
        best_by: str | None = None,
        resume: bool = False,
    ) -> None:
        self.run = Path(run_dir)
        self.save = save
        self.snapshot_every = int(snapshot_every or 0)
        self.best_by = best_by
        prior = read_best(self.run) if resume else None
        self.best = prior if prior is not None and prior.get("key") == best_by else None

    @property
    def needs_backbone(self) -> bool:
        """True when snapshots or a best model are to be written (the loop must provide backbones)."""
        return self.snapshot_every > 0 or self.best_by is not None

    def wants_snapshot(self, steps_done: int) -> bool:
        return self.snapshot_every > 0 and steps_done > 0 and steps_done % self.snapshot_every == 0

    def snapshot(self, backbone: nn.Module, steps_done: int) -> Path:
        """Export ``backbone`` to :func:`snapshot_dir` (atomic, as every model directory)."""
        return self.save(backbone, snapshot_dir(self.run, steps_done), steps_done)

    def offer(self, record: Mapping[str, Any], backbone: nn.Module, steps_done: int) -> bool:
        """Export ``backbone`` to ``RUN/model-best`` if ``record[best_by]`` beats the best so far.

        Ties keep the earlier model; a missing or non-finite value changes nothing. Returns True when a new
        best was written (``RUN/best.json`` is replaced after the model directory is in place).
        """
        if self.best_by is None:
            return False
        value = record.get(self.best_by)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if self.best is not None and value <= float(self.best["value"]):
            return False
        out = self.save(backbone, self.run / BEST_DIR, steps_done)
        self.best = {"key": self.best_by, "value": float(value), "step": int(steps_done), "path": str(out)}
        _write_json_atomic(self.run / BEST_JSON, self.best)
        return True
