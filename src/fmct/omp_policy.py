"""OpenMP wait policy: idle compute threads sleep instead of spinning, so shared CPUs do not stall.

PyTorch's CPU kernels (and MKL/oneDNN) run each parallel region on a GNU OpenMP team whose idle threads
spin-wait by default. When another process wants the same cores (a DataLoader worker, a second job on the
machine), a spinning thread holds a core the descheduled team member needs, and every one of the
hundreds of small parallel regions in a ViT step waits out a scheduler time slice: on a 2-core machine
with one busy competitor the backbone step ran 1.4-1.8x slower than with ``OMP_WAIT_POLICY=PASSIVE``
(``benchmarks/train_step.py``, section ``contention``), while on an idle machine spinning saved <= 4 %. Short
spins (``GOMP_SPINCOUNT`` 1,000 / 10,000, ~10 / ~100 us) saved the same 4 % idle and cost 8 % / 37 % next to a
busy process. A user with a dedicated machine may set either variable: a value the user set is kept, and
libgomp lets ``GOMP_SPINCOUNT`` override the policy. The policy is read once, when torch loads libgomp, so
:func:`apply_default` must run before the first ``import torch``; ``fmct/__init__`` calls it first.
"""

from __future__ import annotations

import os
import sys

#: The environment variable libgomp reads at load time, and fmct's default for it.
VARIABLE = "OMP_WAIT_POLICY"
DEFAULT = "PASSIVE"


def apply_default() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it or torch is already imported.

    Returns True when this call set it (False: user value kept, or too late to take effect).
    """
    if VARIABLE in os.environ or "torch" in sys.modules:
        return False
    os.environ[VARIABLE] = DEFAULT
    return True
