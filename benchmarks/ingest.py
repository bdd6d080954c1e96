"""Benchmark: fmct ingest path (read_series + preprocess) vs the MONAI chain on one DICOM series.

Generates a 512x512x300 int16 head-CT-like DICOM series (0.45 x 0.45 x 1.0 mm, CT Image Storage, a table
under the head) in a temporary folder, then times, each in its own subprocess (so peak RSS is per method):

* fmct:  ``fmct.io.dicom.discover`` + ``read_series`` + ``fmct.preprocess.preprocess`` (RAS, 1 mm, crop)
* MONAI: ``LoadImage(PydicomReader)`` -> ``Orientation("RAS")`` -> ``Spacing(1 mm)`` ->
  ``CropForeground(x > -500 HU)``

Prints series/s, peak RSS and the speed ratio; writes ``benchmarks/results/ingest.json``.
Usage: ``python benchmarks/ingest.py [--size 512] [--slices 300] [--repeats 2] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def write_series(
    folder: Path, size: int, slices: int, px: float = 0.45, dz: float = 1.0, seed: int = 0
) -> None:
    """Write an axial CT series: skull (1000-1500 HU), brain (~35 HU), scalp, a table slab, noise."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    c = (np.arange(size) - size / 2.0) * px  # mm from the centre
    yy, xx = np.meshgrid(c, c, indexing="ij")  # rows = y (posterior +), cols = x
    zc = slices * dz / 2.0
    for k in range(slices):
        z = k * dz - zc
        # head: ellipsoid radii (75, 95, 90) mm, skull 7 mm
        r = (xx / 75.0) ** 2 + (yy / 95.0) ** 2 + (z / 90.0) ** 2
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
        ds.ImagePositionPatient = [float(-size / 2.0 * px), float(-size / 2.0 * px), float(z)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [px, px]
        ds.SliceThickness = dz
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024.0, 1.0
        ds.PixelData = stored.tobytes()
        pydicom.dcmwrite(ds.filename, ds, enforce_file_format=True)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_fmct(folder: Path) -> dict:
    from fmct.io.dicom import discover, read_series
    from fmct.preprocess import preprocess

    t0 = time.perf_counter()
    found = discover([folder])
    t1 = time.perf_counter()
    vol = read_series(found.series[0])
    t2 = time.perf_counter()
    out = preprocess(vol)
    t3 = time.perf_counter()
    return {
        "seconds": t3 - t0,
        "discover_s": t1 - t0,
        "read_s": t2 - t1,
        "preprocess_s": t3 - t2,
        "shape": list(out.shape),
        "spacing": [round(s, 3) for s in out.spacing],
    }


def run_monai(folder: Path) -> dict:
    from monai.transforms import CropForeground, LoadImage, Orientation, Spacing

    load = LoadImage(reader="PydicomReader", image_only=True, ensure_channel_first=True)
    orient, spacing = Orientation(axcodes="RAS"), Spacing(pixdim=(1.0, 1.0, 1.0))
    crop = CropForeground(select_fn=lambda x: x > -500, margin=5)
    t0 = time.perf_counter()
    img = load(str(folder))
    t1 = time.perf_counter()
    img = crop(spacing(orient(img)))
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "read_s": t1 - t0,
        "preprocess_s": t2 - t1,
        "shape": list(img.shape[1:]),
        "spacing": [round(float(s), 3) for s in img.pixdim],
    }


def child(method: str, folder: Path, repeats: int, threads: int) -> None:
    """Run ``method`` ``repeats`` times in this process and print one JSON line."""
    import torch

    torch.set_num_threads(threads)
    fn = run_fmct if method == "fmct" else run_monai
    import_rss = _peak_rss_mb()
    runs = [fn(folder) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["seconds"])
    print(
        json.dumps(
            {
                "method": method,
                "runs": runs,
                "best": best,
                "series_per_s": 1.0 / best["seconds"],
                "peak_rss_mb": _peak_rss_mb(),
                "rss_after_imports_mb": import_rss,
            }
        )
    )


def measure(method: str, folder: Path, repeats: int, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    cmd = [
        sys.executable,
        __file__,
        "--child",
        method,
        "--dir",
        str(folder),
        "--repeats",
        str(repeats),
        "--threads",
        str(threads),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in each method's process")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "ingest.json")
    ap.add_argument("--child", choices=["fmct", "monai"], help=argparse.SUPPRESS)
    ap.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.dir, args.repeats, args.threads)
        return
    with tempfile.TemporaryDirectory(prefix="fmct-bench-ingest-") as tmp:
        folder = Path(tmp) / "series"
        t0 = time.perf_counter()
        write_series(folder, args.size, args.slices)
        print(f"wrote {args.slices} slices of {args.size}x{args.size} in {time.perf_counter() - t0:.1f} s")
        results = {m: measure(m, folder, args.repeats, args.threads) for m in ("fmct", "monai")}
    f, m = results["fmct"], results["monai"]
    ratio = f["series_per_s"] / m["series_per_s"]
    report = {
        "benchmark": "ingest one DICOM series: read + RAS + 1 mm + head crop",
        "series": {"size": args.size, "slices": args.slices, "spacing_mm": [0.45, 0.45, 1.0]},
        "threads": args.threads,
        "fmct": f,
        "monai": m,
        "speedup_fmct_vs_monai": ratio,
        "targets": {"speedup_min": 3.0, "fmct_peak_rss_mb_max": 1024.0},
        "meets_targets": bool(ratio >= 3.0 and f["peak_rss_mb"] <= 1024.0),
    }
    for name, r in (("fmct", f), ("monai", m)):
        b = r["best"]
        print(
            f"{name:6s} {r['series_per_s']:.3f} series/s ({b['seconds']:.2f} s: read {b['read_s']:.2f} s, "
            f"preprocess {b['preprocess_s']:.2f} s), peak RSS {r['peak_rss_mb']:.0f} MB "
            f"(after imports {r['rss_after_imports_mb']:.0f} MB), output {b['shape']}"
        )
    print(
        f"fmct / MONAI speed ratio: {ratio:.2f}x (target >= 3x); fmct peak RSS {f['peak_rss_mb']:.0f} MB "
        "(target <= 1024 MB)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = args.out.with_name(args.out.name + ".tmp")
    tmp_out.write_text(json.dumps(report, indent=1))
    os.replace(tmp_out, args.out)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
