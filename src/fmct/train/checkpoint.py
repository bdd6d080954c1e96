"""Atomic training checkpoints readable with ``torch.load(weights_only=True)``.

Only tensors and primitive containers are stored: model/optimiser state dicts, the step, RNG states
(python as nested lists, numpy as a tensor + ints, torch as a ByteTensor). Writing goes to a temp file in
the same folder, is fsync'ed, the previous checkpoint is kept as ``checkpoint-prev.pt`` and the new one
moved into place with ``os.replace``: a crash at any point leaves a loadable checkpoint, and the temp file
of a killed write is removed by the next save or load (resume).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmct.diskspace import NoSpaceError, no_space

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint-prev.pt"


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU, and CUDA when present) RNG states as weights_only-safe objects."""
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    v, keys, gauss = state["python"]
    random.setstate((v, tuple(keys), gauss))
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            int(n["pos"]),
            int(n["has_gauss"]),
            float(n["cached"]),
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_tmp(run_dir: str | Path) -> list[Path]:
    """Remove the ``.<name>.tmp-<pid>`` files (e.g. ``.checkpoint.pt.tmp-1234``, up to a checkpoint each)
    that writers killed mid-write left in ``run_dir``: those whose process is gone from this host.
    Returns the files removed."""
    removed = []
    for p in Path(run_dir).glob(".*.tmp-*"):
        pid = p.name.rsplit(".tmp-", 1)[-1]
        if p.is_file() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def save_checkpoint(run_dir: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``run_dir/checkpoint.pt`` atomically; the former one becomes ``checkpoint-prev.pt``.

    Raises:
        fmct.diskspace.NoSpaceError: the disk filled up ("no space left on RUN (writing checkpoint.pt)");
            the partial file is removed, the checkpoints already there are untouched.
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(run)
    final = run / CHECKPOINT
    tmp = run / f".{CHECKPOINT}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():
            os.replace(final, run / PREVIOUS)
        os.replace(tmp, final)
        dfd = os.open(run, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException as exc:
        if no_space(exc, final):  # judged before the partial file frees its space
            tmp.unlink(missing_ok=True)
            raise NoSpaceError(final) from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return final


def load_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load ``run_dir/checkpoint.pt`` (falling back to ``checkpoint-prev.pt`` if the newest is unreadable);
    first removes the temp files of writes killed midway (:func:`remove_stale_tmp`)."""
    run = Path(run_dir)
    remove_stale_tmp(run)
    errors = []
    for name in (CHECKPOINT, PREVIOUS):
        p = run / name
        if not p.exists():
            continue
        try:
            return torch.load(p, map_location=map_location, weights_only=True)
        except Exception as e:  # noqa: BLE001 - report and try the previous one
            errors.append(f"{p}: {e}")
    raise FileNotFoundError("; ".join(errors) or f"{run}: no checkpoint.pt to resume from")
