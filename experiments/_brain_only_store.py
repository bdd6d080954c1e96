"""Copy an fmct store with everything but the brain set to air (for the brain-only row of pretrain_evidence).

A helper for one experiment, not an experiment itself (hence the leading ``_``).

Every voxel farther than ``--margin-mm`` from the brain mask of :func:`fmct.preprocess.deface.brain_mask`
(the largest soft-tissue body inside the skull, holes filled) becomes -1000 HU; shapes, affines and
the manifest stay as they are. It asks whether self-supervision learns intracranial content once the
skull, scalp and face (the head's shape and pose) are out of the picture. An experiment, not a
preprocessing option: the brain mask is a threshold rule checked on synthetic heads only.

Usage::

    python experiments/_brain_only_store.py pool/store pool/store_brain
    python experiments/_brain_only_store.py ev/store ev/store_brain
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path, help="an fmct store (fmct ingest --out)")
    ap.add_argument("dst", type=Path, help="the brain-only copy (must not exist)")
    ap.add_argument("--margin-mm", type=float, default=4.0, help="tissue kept around the brain mask (mm)")
    args = ap.parse_args()
    from scipy import ndimage

    from fmct.preprocess.deface import brain_mask
    from fmct.store.reader import ScanStore
    from fmct.store.writer import atomic_write_bytes, scan_paths

    if args.dst.exists():
        raise SystemExit(f"{args.dst} exists; remove it first")
    shutil.copytree(args.src, args.dst)
    store = ScanStore(args.dst)
    kept = []
    for sid in store.scan_ids:
        npy, _ = scan_paths(args.dst, sid)
        hu = np.load(npy, allow_pickle=False)
        spacing = float(store.meta(sid)["spacing_mm"][0])
        keep = ndimage.binary_dilation(
            brain_mask(hu.astype(np.float32)), iterations=max(1, round(args.margin_mm / spacing))
        )
        kept.append(float(keep.mean()))
        out = np.where(keep, hu, np.int16(-1000)).astype(np.int16)
        atomic_write_bytes(npy, lambda f, a=out: np.save(f, a, allow_pickle=False))
    print(f"{args.dst}: {len(kept)} scans, brain + margin = {np.mean(kept):.1%} of each head crop on average")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
