"""Optional wall-clock timing of named stages (ingest's breakdown in ``benchmarks/ingest.py``).

Code marks a stage with ``with stage("decode"): ...``; that costs one global lookup unless a caller is
recording: ``with record() as times: ...`` collects ``{stage: seconds}`` (summed over repeats) for the
code run inside it, in this process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

_ACTIVE: dict[str, float] | None = None


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time the enclosed block as ``name`` when recording; a no-op otherwise."""
    if _ACTIVE is None:
        yield
        return
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if _ACTIVE is not None:
            _ACTIVE[name] = _ACTIVE.get(name, 0.0) + time.perf_counter() - t0


@contextmanager
def record() -> Iterator[dict[str, float]]:
    """Collect the stages run inside the block into the yielded dict (seconds)."""
    global _ACTIVE
    previous, _ACTIVE = _ACTIVE, {}
    try:
        yield _ACTIVE
    finally:
        _ACTIVE = previous
