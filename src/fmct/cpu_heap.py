"""Keep freed large blocks in the process heap, so CPU model passes stop paying for fresh pages.

glibc's ``malloc`` serves blocks above its mmap threshold (128 KiB at start, raised on the fly to at most 32
MiB) with a fresh ``mmap`` and gives them back to the kernel on ``free``. Every large tensor of a CPU forward
or backward pass (a ViT's MLP hidden layer, a 48³ volume's voxel features) is allocated and freed again on
each pass, so each pass page-faults its whole working set in again and the kernel zeroes every page: in
``benchmarks/train_step.py`` a GELU over 10.6 M floats took 43-110 ms with the default heap and 6 ms with
this setting, and the p4 backbone's inference ~10 % less CPU time. :func:`reuse_freed_memory` raises the
mmap and trim thresholds (``mallopt``) so those blocks come from the heap and stay there for the next pass.

The cost: the process keeps up to :data:`THRESHOLD_BYTES` of freed memory instead of returning it (peak
resident memory is the pass's own peak). It is applied where a model runs on the CPU (pretraining,
embedding, the benchmarks), not at import. An ingest worker applies smaller thresholds (blocks under 32 MiB,
64 MiB kept): it allocates the same arrays of tens of MB for every scan (source stack, resampled volume, stored
crop), and fresh zeroed pages cost ~6 ms of ~50 ms on a 28 x 512² series. A ``MALLOC_*`` variable or
``GLIBC_TUNABLES`` set by the user is respected; other C libraries (macOS, musl) are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: Blocks up to this size come from the heap; freed memory up to this size stays in it.
THRESHOLD_BYTES = 256 << 20
#: ``mallopt`` parameters (glibc ``malloc.h``).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: Environment variables through which a user already tunes glibc's malloc.
USER_SETTINGS = ("GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

#: The setting last asked for, and whether it took effect (malloc holds one setting at a time).
_last: tuple[tuple[int, int], bool] | None = None


def reuse_freed_memory(mmap_below: int = THRESHOLD_BYTES, keep: int = THRESHOLD_BYTES) -> bool:
    """Have glibc's malloc serve blocks under ``mmap_below`` bytes from its heap and keep up to ``keep`` bytes
    of freed heap (its mmap and trim thresholds); ``mallopt`` is called only when the setting differs from the
    one asked for last.

    Returns True when the setting is in effect (now or from an earlier call); False on a C library other than
    glibc, when the user tunes malloc through the environment (:data:`USER_SETTINGS`), or when ``mallopt``
    refuses.
    """
    global _last
    key = (int(mmap_below), int(keep))
    if _last is None or _last[0] != key:
        _last = (key, _apply(*key))
    return _last[1]


def _apply(mmap_below: int, keep: int) -> bool:
    if platform.libc_ver()[0] != "glibc" or any(v in os.environ for v in USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    # the trim threshold first: setting the mmap threshold also stops glibc's own raising of both
    return bool(libc.mallopt(M_TRIM_THRESHOLD, keep)) and bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_below))
