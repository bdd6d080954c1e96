"""Synthetic-scan throughput: scans per second per core, in memory and written as DICOM.

Usage: python benchmarks/synth_speed.py [--sizes 256 128] [--n 4] [--site a]

Prints a stage breakdown (anatomy render, findings, acquisition = trilinear sampling + the slice-chunked
calibration / noise / kernel / streaks / quantisation, mask sampling, DICOM write) and the cost with the
DICOM write, per matrix size, and the trilinear sampling of the acquisition with and without skipping the
air blocks (same scans, same run), and writes benchmarks/results/synth_speed.json. One process, one core.
Target: >= 1 scan/s per core at 256x256x~150.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 128])
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--site", default="a")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # one core (the trilinear sampler also pins itself to one thread)
    from fmct.synth import acquire as acq
    from fmct.synth import anatomy, cohort, findings, generate_cohort, scan

    stages: dict[str, float] = {}
    inside: list[str] = []  # the enclosing timed stage, so a shared function is booked to its caller

    def timed(name, fn, within: str | None = None):
        def wrap(*a, **k):
            if within is not None and inside[-1:] != [within]:
                return fn(*a, **k)
            inside.append(name)
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                stages[name] = stages.get(name, 0.0) + time.perf_counter() - t
                inside.pop()

        return wrap

    scan.render_head = timed("render_anatomy", anatomy.render_head)
    scan.paint = timed("paint_findings", findings.paint)
    scan.acquire = timed("acquire", acq.acquire)
    acq.LinearSampler.sample = timed(
        "acquire: trilinear sampling", acq.LinearSampler.sample, within="acquire"
    )
    scan.sample_mask = timed("sample_mask", acq.sample_mask)
    cohort.write_dicom_series = timed("dicom_write", cohort.write_dicom_series)
    per_size = {}
    load_start = os.getloadavg()[0]
    for size in args.sizes:
        scan.synth_scan(0, args.site, 0, size=size)  # warm-up
        stages.clear()
        t0 = time.perf_counter()
        shapes = []
        for i in range(args.n):
            shapes.append(scan.synth_scan(i, args.site, 0, size=size).volume.shape)
        mem = (time.perf_counter() - t0) / args.n
        stages["acquire: calibration+noise+kernel+streaks+quantise (slice chunks)"] = stages.pop(
            "acquire", 0.0
        ) - stages.get("acquire: trilinear sampling", 0.0)
        per_stage = {k: round(v / args.n, 3) for k, v in stages.items()}
        stages.clear()
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            generate_cohort(tmp, args.n, args.site, 0, size=size, progress=False)  # in this process
            disk = (time.perf_counter() - t0) / args.n
        per_stage["dicom_write"] = round(stages.get("dicom_write", 0.0) / args.n, 3)
        per_size[str(size)] = {
            "shape": [int(v) for v in np.median(np.array(shapes), axis=0)],
            "seconds_per_scan_in_memory": round(mem, 3),
            "seconds_per_scan_with_dicom_write": round(disk, 3),
            "scans_per_second_per_core_in_memory": round(1 / mem, 3),
            "scans_per_second_per_core_with_dicom_write": round(1 / disk, 3),
            "stage_seconds_per_scan": per_stage,
        }
    first = per_size[str(args.sizes[0])]
    sampler = _sampler_ratio(args.sizes[0], args.site, min(args.n, 4))
    res = {
        "headline": {
            f"scans_per_s_per_core_{k}_dicom": v["scans_per_second_per_core_with_dicom_write"]
            for k, v in per_size.items()
        }
        | {"target_at_256": 1.0},
        "site": args.site,
        "n": args.n,
        "sizes": per_size,
        "trilinear_sampling_air_skip": sampler,
        "load_average_1min": {"start": round(load_start, 2), "end": round(os.getloadavg()[0], 2)},
        "cpu_count": os.cpu_count(),
    }
    del first
    print(json.dumps(res, indent=2))
    out = Path(__file__).parent / "results" / "synth_speed.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")


def _sampler_ratio(size: int, site: str, n: int) -> dict:
    """Same run, same scans: the acquisition's trilinear sampling with and without skipping air blocks."""
    from fmct.synth import acquire as acq
    from fmct.synth.anatomy import Grid, render_head, sample_head
    from fmct.synth.findings import sample_plan
    from fmct.synth.scan import internal_spacing, scan_rng
    from fmct.synth.sites import get_site

    st = get_site(site)
    t = {True: 0.0, False: 0.0}
    fractions = []
    for i in range(n):
        rng = scan_rng(i, st.name, 0)
        head = sample_head(rng)
        sample_plan(rng, head, None)
        pose = acq.sample_pose(rng)
        geom = acq.make_geometry(st, size, rng, head_z=float(pose.offset[2]))
        grid = Grid.covering(internal_spacing(geom.pixel_mm, geom.thickness_mm))
        hu = render_head(head, grid).hu
        m = acq.output_to_internal(geom, pose, grid)
        offsets = acq.slab_offsets(geom, grid.h)
        shape = (geom.size, geom.size, geom.n_slices)
        for skip in (False, True, False, True):  # interleaved: both see the same machine load
            t0 = time.perf_counter()
            s = acq.LinearSampler(hu, -1000.0, skip_air=skip)
            s.sample(m, shape, offsets)
            t[skip] += (time.perf_counter() - t0) / 2
            if skip:
                fractions.append(s.sampled_fraction)
    return {
        "seconds_per_scan_every_block": round(t[False] / n, 3),
        "seconds_per_scan_air_skipped": round(t[True] / n, 3),
        "speedup": round(t[False] / t[True], 2),
        "sampled_block_fraction": round(float(np.mean(fractions)), 3),
    }


if __name__ == "__main__":
    main()
