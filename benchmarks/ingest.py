"""Benchmark: fmct ingest per DICOM series vs dcm2niix (and MONAI), with fmct's per-stage breakdown.

Series: two generated 512x512x300 head-CT-like series (0.45 x 0.45 x 1.0 mm, a table under the head; one
plain axial, one with a 20 degree gantry tilt) and, when present, the real series of
``../shared/realdata/dcm_qa_ct`` (Philips S21610/S3010 tilted 16.5 deg, Philips S21570/S2010 plain, GE
tilted with 4 then 7 mm slices). Peers, each in its own process, peak RSS measured the same way for all
(``ru_maxrss`` of that child from ``os.wait4``):

* fmct: ``fmct.ingest.plan.plan`` (discover) then ``process_item`` (read, RAS, 1 mm, head crop, write to a
  store): what one ``fmct ingest`` worker does per series. ``work_s`` is the manifest's ``seconds``.
  The stages (``fmct.timing``) split it: read files, sort, decode, stack, hu check, crop, resample
  (tilt + 1 mm in one pass), int16, write; defacing is timed in one extra run with ``deface=True``.
* dcm2niix (Debian package ``dcm2niix``, ``-z n``: uncompressed NIfTI, as fmct's store is uncompressed);
  skipped with a note when not installed.
* MONAI ``LoadImage(PydicomReader) -> Orientation(RAS) -> Spacing(1 mm) -> CropForeground`` on the plain
  generated series only (``--no-monai`` skips it; it takes about a minute).

Ratios are fmct / dcm2niix from the same run (< 1 means fmct is faster). Writes
``benchmarks/results/ingest.json``. Usage: ``python benchmarks/ingest.py [--repeats 3] [--slices 300]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fmct.atomic import write_text_atomic

HERE = Path(__file__).resolve().parent
REAL = HERE.parent / ".." / "shared" / "realdata" / "dcm_qa_ct"
REAL_SERIES = {
    "real_philips_tilted_S3010": "Philips/S21610/S3010",
    "real_philips_axial_S2010": "Philips/S21570/S2010",
    "real_ge_tilted_variable_spacing": "GE",
}
GOALS = {"time_ratio_max": 1.5, "peak_rss_mb_max": 300.0}


def write_series(
    folder: Path,
    size: int,
    slices: int,
    px: float = 0.45,
    dz: float = 1.0,
    seed: int = 0,
    tilt_deg: float = 0.0,
) -> None:
    """Write an axial CT series: skull (1000-1500 HU), brain (~35 HU), scalp, a table slab, noise.

    With ``tilt_deg`` the image plane is tilted about the left-right axis and slice positions advance along
    z (as a tilted gantry records them); the head is defined in world space either way.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    t = np.radians(tilt_deg)
    col_dir = np.array([0.0, np.cos(t), -np.sin(t)])  # LPS; row direction is +x
    c = (np.arange(size) - size / 2.0) * px  # mm from the centre
    rr, cc = np.meshgrid(c, c, indexing="ij")  # rows, cols
    zc = slices * dz / 2.0
    for k in range(slices):
        z = k * dz - zc
        xx, yy, zz = cc, rr * col_dir[1], z + rr * col_dir[2]  # world (LPS mm) of every pixel
        # head: ellipsoid radii (75, 95, 90) mm, skull 7 mm
        r = (xx / 75.0) ** 2 + (yy / 95.0) ** 2 + (zz / 90.0) ** 2
        hu = np.full((size, size), -1000.0, np.float32)
        hu[r <= 1.0] = 40.0
        hu[r <= 0.86] = 1200.0
        hu[r <= 0.75] = 35.0
        hu[(yy > 105.0) & (yy < 115.0)] = 200.0  # table below (posterior of) the head, 10 mm air gap
        hu += rng.normal(0.0, 8.0, hu.shape).astype(np.float32)
        stored = np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.uint16)

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{k:04d}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = "CT"
        ds.PatientID = "BENCH"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = k + 1
        corner = np.array([-size / 2.0 * px, 0.0, z]) - size / 2.0 * px * col_dir
        ds.ImagePositionPatient = [round(float(v), 6) for v in corner]
        ds.ImageOrientationPatient = [1, 0, 0, *[round(float(v), 7) for v in col_dir]]
        ds.PixelSpacing = [px, px]
        ds.SliceThickness = dz
        ds.GantryDetectorTilt = tilt_deg
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024.0, 1.0
        ds.PixelData = stored.tobytes()
        pydicom.dcmwrite(ds.filename, ds, enforce_file_format=True)


# ---------------------------------------------------------------- children (one process per peer)


def child_fmct(folder: Path, repeats: int) -> dict:
    """``repeats`` x (plan + process_item) into fresh stores, then one run with defacing."""
    from contextlib import nullcontext

    from fmct.ingest.plan import plan
    from fmct.ingest.worker import process_item
    from fmct.preprocess import PreprocessConfig

    try:
        from fmct.timing import record
    except ImportError:  # a baseline checkout from before the stage timers
        record = None

    def one(cfg: PreprocessConfig) -> dict:
        with tempfile.TemporaryDirectory(prefix="fmct-bench-store-") as store:
            t0 = time.perf_counter()
            items, _ = plan([folder])
            discover_s = time.perf_counter() - t0
            with record() if record else nullcontext({}) as stages:
                c0 = time.process_time()
                row = process_item(items[0], store, cfg.to_dict(), 10)
                cpu = time.process_time() - c0
        stages = {k: round(v, 4) for k, v in stages.items()}
        if stages:
            stages["other"] = round(row["seconds"] - sum(stages.values()), 4)
        return {
            "discover_s": round(discover_s, 4),
            "work_s": row["seconds"],
            "cpu_s": round(cpu, 4),
            "stages_s": stages,
            "status": row["status"],
            "reason": row["reason"],
            "warnings": row["warnings"],
            "shape": row["shape"],
        }

    runs = [one(PreprocessConfig()) for _ in range(repeats)]
    deface = one(PreprocessConfig(deface=True))
    return {"runs": runs, "deface_run": deface, "torch_imported": "torch" in sys.modules}


def child_monai(folder: Path, repeats: int) -> dict:
    from monai.transforms import CropForeground, LoadImage, Orientation, Spacing

    load = LoadImage(reader="PydicomReader", image_only=True, ensure_channel_first=True)
    orient, spacing = Orientation(axcodes="RAS"), Spacing(pixdim=(1.0, 1.0, 1.0))
    crop = CropForeground(select_fn=lambda x: x > -500, margin=5)
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        img = crop(spacing(orient(load(str(folder)))))
        runs.append({"work_s": round(time.perf_counter() - t0, 4), "shape": list(img.shape[1:])})
    return {"runs": runs}


# ---------------------------------------------------------------- parent


def _run(cmd: list[str], env: dict | None = None) -> tuple[str, float, float, float]:
    """Run ``cmd``; ``(stdout, wall s, CPU s (user + sys), peak RSS MB)`` of that process via ``os.wait4``."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {proc.returncode}:\n{stderr[-3000:]}")
    return stdout, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0  # KiB on Linux


def measure_child(method: str, folder: Path, repeats: int, src: Path | None = None) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    if src is not None:  # another checkout's fmct (the baseline)
        env["PYTHONPATH"] = os.pathsep.join([str(src), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, __file__, "--child", method, "--dir", str(folder), "--repeats", str(repeats)]
    stdout, wall, _, rss = _run(cmd, env)
    res = json.loads(stdout.strip().splitlines()[-1])
    res["best_work_s"] = min(r["work_s"] for r in res["runs"])
    if all("cpu_s" in r for r in res["runs"]):
        res["best_cpu_s"] = min(r["cpu_s"] for r in res["runs"])
    res["peak_rss_mb"] = round(rss, 1)
    res["process_wall_s"] = round(wall, 3)
    return res


def measure_dcm2niix(folder: Path, repeats: int) -> dict:
    exe = shutil.which("dcm2niix")
    if exe is None:
        return {"skipped": "dcm2niix not installed (Debian/Ubuntu: apt-get install dcm2niix)"}
    runs, version = [], None
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="fmct-bench-d2n-") as out:
            stdout, wall, cpu, rss = _run([exe, "-z", "n", "-o", out, str(folder)])
            files = sorted(p.name.rsplit("_", 1)[-1] for p in Path(out).glob("*.nii"))
        version = next((ln.strip() for ln in stdout.splitlines() if "version" in ln.lower()), version)
        runs.append(
            {
                "work_s": round(wall, 4),
                "cpu_s": round(cpu, 4),
                "peak_rss_mb": round(rss, 1),
                "nifti_files": files,
            }
        )
    return {
        "version": version,
        "runs": runs,
        "best_work_s": min(r["work_s"] for r in runs),
        "best_cpu_s": min(r["cpu_s"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }


def bench_series(name: str, folder: Path, repeats: int, monai: bool, baseline: Path | None) -> dict:
    print(f"--- {name}", flush=True)
    f = measure_child("fmct", folder, repeats)
    best = min(f["runs"], key=lambda r: r["work_s"])
    d = measure_dcm2niix(folder, repeats)
    entry = {"folder": str(folder), "fmct": f, "dcm2niix": d}
    stages = ", ".join(f"{k} {v:.3f}" for k, v in sorted(best["stages_s"].items(), key=lambda kv: -kv[1]))
    print(
        f"fmct     work {best['work_s']:.3f} s (+ discover {best['discover_s']:.3f} s), peak RSS "
        f"{f['peak_rss_mb']:.0f} MB, {best['status']} {best['shape']}\n         stages: {stages}; "
        f"deface {f['deface_run']['stages_s'].get('deface', float('nan')):.3f} s "
        f"({f['deface_run']['status']})",
        flush=True,
    )
    if "skipped" in d:
        print(f"dcm2niix skipped: {d['skipped']}", flush=True)
    else:
        entry["ratio_fmct_work_vs_dcm2niix"] = round(best["work_s"] / d["best_work_s"], 3)
        entry["ratio_fmct_with_discover_vs_dcm2niix"] = round(
            (best["work_s"] + best["discover_s"]) / d["best_work_s"], 3
        )
        entry["ratio_fmct_cpu_vs_dcm2niix"] = round(f["best_cpu_s"] / d["best_cpu_s"], 3)
        entry["ratio_peak_rss_fmct_vs_dcm2niix"] = round(f["peak_rss_mb"] / d["peak_rss_mb"], 3)
        print(
            f"dcm2niix {d['best_work_s']:.3f} s ({d['best_cpu_s']:.3f} s CPU), peak RSS {d['peak_rss_mb']:.0f} MB"
            f" -> fmct/dcm2niix time {entry['ratio_fmct_work_vs_dcm2niix']:.2f}x (CPU "
            f"{entry['ratio_fmct_cpu_vs_dcm2niix']:.2f}x, with discover "
            f"{entry['ratio_fmct_with_discover_vs_dcm2niix']:.2f}x), RSS "
            f"{entry['ratio_peak_rss_fmct_vs_dcm2niix']:.2f}x",
            flush=True,
        )
    if baseline is not None:
        b = measure_child("fmct", folder, repeats, src=baseline)
        entry["fmct_baseline"] = b
        if all(r["status"] == "ok" for r in b["runs"]):
            entry["ratio_fmct_work_vs_baseline"] = round(best["work_s"] / b["best_work_s"], 3)
            if "skipped" not in d:
                entry["ratio_baseline_work_vs_dcm2niix"] = round(b["best_work_s"] / d["best_work_s"], 3)
            print(
                f"baseline {b['best_work_s']:.3f} s, peak RSS {b['peak_rss_mb']:.0f} MB ({baseline}) -> fmct "
                f"now {entry['ratio_fmct_work_vs_baseline']:.2f}x of it",
                flush=True,
            )
        else:
            print(f"baseline {b['runs'][0]['status']}: {b['runs'][0]['reason']}", flush=True)
    if monai:
        m = measure_child("monai", folder, min(repeats, 2))
        entry["monai"] = m
        entry["ratio_fmct_work_vs_monai"] = round(best["work_s"] / m["best_work_s"], 3)
        print(f"MONAI    {m['best_work_s']:.2f} s, peak RSS {m['peak_rss_mb']:.0f} MB", flush=True)
    return entry


def _headline(results: dict) -> dict:
    ratios = {
        k: v["ratio_fmct_work_vs_dcm2niix"] for k, v in results.items() if "ratio_fmct_work_vs_dcm2niix" in v
    }
    cpu = {
        k: v["ratio_fmct_cpu_vs_dcm2niix"] for k, v in results.items() if "ratio_fmct_cpu_vs_dcm2niix" in v
    }
    before = {
        k: v["ratio_baseline_work_vs_dcm2niix"]
        for k, v in results.items()
        if "ratio_baseline_work_vs_dcm2niix" in v
    }
    with_discover = {  # like for like: dcm2niix's time includes finding its files
        k: v["ratio_fmct_with_discover_vs_dcm2niix"]
        for k, v in results.items()
        if "ratio_fmct_with_discover_vs_dcm2niix" in v
    }
    rss = {k: v["fmct"]["peak_rss_mb"] for k, v in results.items()}
    head = {
        "worst_time_ratio_fmct_vs_dcm2niix": max(ratios.values()) if ratios else None,
        "worst_fmct_peak_rss_mb": max(rss.values()),
        "time_ratio_fmct_vs_dcm2niix": ratios,
        "cpu_time_ratio_fmct_vs_dcm2niix": cpu,
        "time_ratio_with_discover_fmct_vs_dcm2niix": with_discover,
        "baseline_time_ratio_vs_dcm2niix": before,
        "baseline_peak_rss_mb": {
            k: v["fmct_baseline"]["peak_rss_mb"] for k, v in results.items() if "fmct_baseline" in v
        },
    }
    head["meets_goals"] = bool(
        ratios
        and head["worst_time_ratio_fmct_vs_dcm2niix"] <= GOALS["time_ratio_max"]
        and head["worst_fmct_peak_rss_mb"] <= GOALS["peak_rss_mb_max"]
    )
    return head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-monai", action="store_true", help="skip the (slow) MONAI peer")
    ap.add_argument("--no-real", action="store_true", help="skip the real series of ../shared/realdata")
    ap.add_argument(
        "--baseline-src",
        type=Path,
        help="src/ folder of another fmct checkout (e.g. `git archive c4a1d17 src | tar -x -C /tmp/old`) "
        "measured the same way, as the before-figure",
    )
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ingest.json")
    ap.add_argument("--child", choices=["fmct", "monai"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        fn = child_fmct if args.child == "fmct" else child_monai
        print(json.dumps(fn(args.dir, args.repeats)))
        return
    results, notes = {}, []
    load_start = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="fmct-bench-ingest-") as tmp:
        for name, tilt in (("generated_axial", 0.0), ("generated_tilted_20deg", 20.0)):
            folder = Path(tmp) / name
            t0 = time.perf_counter()
            write_series(folder, args.size, args.slices, tilt_deg=tilt)
            print(f"wrote {name}: {args.slices} slices of {args.size}^2 in {time.perf_counter() - t0:.1f} s")
            monai = not args.no_monai and tilt == 0.0
            results[name] = bench_series(name, folder, args.repeats, monai, args.baseline_src)
    if args.no_real:
        notes.append("real series skipped (--no-real)")
    elif not REAL.is_dir():
        notes.append(f"real series skipped: {REAL} not present")
    else:
        for name, sub in REAL_SERIES.items():
            results[name] = bench_series(name, REAL / sub, args.repeats, False, args.baseline_src)
    report = {
        "benchmark": "ingest one DICOM series: fmct (read, RAS, 1 mm, head crop, write) vs dcm2niix",
        "how": "each peer in its own process, 1 thread; time = best of repeats (fmct's first run in a process "
        "includes lazy imports); fmct time = manifest seconds (work per series, discover reported apart); CPU = "
        "user+sys (fmct: process_time around the work; dcm2niix: its process); peak RSS = ru_maxrss of that "
        "process. Wall-time ratios move with machine load; CPU ratios less so",
        "baseline": str(args.baseline_src) if args.baseline_src else None,
        "generated": {"size": args.size, "slices": args.slices, "spacing_mm": [0.45, 0.45, 1.0]},
        "repeats": args.repeats,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_1_5_15_min": {"start": load_start, "end": [round(v, 2) for v in os.getloadavg()]},
            "note": "a shared machine: other work ran alongside; each ratio pairs fmct and dcm2niix on the "
            "same series minutes apart, so load shifts both",
        },
        "goals": GOALS,
        "headline": _headline(results),
        "series": results,
        "notes": notes,
    }
    print(json.dumps(report["headline"], indent=1))
    write_text_atomic(args.out, json.dumps(report, indent=1))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
