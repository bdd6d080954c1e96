"""Cost of the CRC-32 that ``write_scan`` records per scan file: the plain ``np.save`` + fsync of a
typical cropped 1 mm head (200 x 240 x 180 int16, 17 MB) against the same write counted and checksummed
(the store's ``save_npy``), median of 7, same run, same file. Also the ``ScanStore.verify`` re-read.

Usage: python benchmarks/store_checksum.py [--reps 7]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from fmct.store.writer import file_crc32, save_npy


def _median_s(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    arr = np.random.default_rng(0).integers(-1000, 2000, size=(200, 240, 180), dtype=np.int16)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "scan.npy"

        def write(counted: bool) -> None:
            with open(path, "wb") as f:
                if counted:
                    save_npy(f, arr)
                else:
                    np.save(f, arr, allow_pickle=False)
                f.flush()
                os.fsync(f.fileno())

        plain = _median_s(lambda: write(False), args.reps)
        crc = _median_s(lambda: write(True), args.reps)
        verify = _median_s(lambda: file_crc32(path), args.reps)
    mb = arr.nbytes / 1e6
    print(f"{mb:.1f} MB scan: np.save+fsync {plain * 1e3:.1f} ms, with CRC-32 {crc * 1e3:.1f} ms "
          f"({crc / plain:.2f}x); verify (re-read + CRC-32) {verify * 1e3:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
