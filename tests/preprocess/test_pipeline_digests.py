"""Speed work must not change what ingest stores (issue 27): the int16 volumes that ``read_series`` +
``preprocess`` give on fixed series are bit-identical to those of the code before the speed work.

``data/preprocess_digests.json`` holds, per case, the shape, affine, crop box and SHA-256 of the stored
int16 array as the code gave them before the speed work (commit af8a9eb). Cases: synthetic DICOM series
written by ``benchmarks/ingest.py``'s writer (a head on a table, plain axial and 20 degree gantry tilt),
with and without defacing, a demo-like scan (``fmct.synth`` site b, 128² x 36 slices, ingested as ``fmct demo``
does: 2 mm, defaced; pinned before the defacing speed work), and the real series of ``../shared/realdata``
(tilted, plain, variable spacing) when present. A change that is meant to alter the output bumps
``PREPROCESS_VERSION`` and rewrites the file with ``python tests/preprocess/test_pipeline_digests.py --write``
(``--write NAME ...`` adds or rewrites only those cases).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from fmct.io.dicom import discover, read_series
from fmct.preprocess import PreprocessConfig, preprocess

HERE = Path(__file__).resolve().parent
DIGESTS = HERE / "data" / "preprocess_digests.json"
REAL = HERE.parents[1] / ".." / "shared" / "realdata" / "dcm_qa_ct"
DEMO_LIKE = {  # name: (fmct.synth site, scan index, seed, in-plane size, ingest spacing mm); defaced
    "synth_demo_site_b_2mm_deface": ("b", 0, 0, 128, 2.0),
}
SYNTHETIC = {  # name: (write_series kwargs, deface)
    "synthetic_axial": (dict(size=256, slices=90, px=0.9, dz=2.0, seed=1), False),
    "synthetic_axial_deface": (dict(size=256, slices=90, px=0.9, dz=2.0, seed=1), True),
    "synthetic_tilted_20deg": (dict(size=256, slices=90, px=0.9, dz=2.0, seed=2, tilt_deg=20.0), False),
}
REAL_CASES = {  # name: (folder under REAL, deface)
    "real_philips_tilted_S3010": ("Philips/S21610/S3010", False),
    "real_philips_axial_S2010": ("Philips/S21570/S2010", False),
    "real_ge_tilted_variable_spacing": ("GE", False),
    "real_ge_deface": ("GE", True),
}


def _writer():
    path = HERE.parents[1] / "benchmarks" / "ingest.py"
    spec = importlib.util.spec_from_file_location("fmct_bench_ingest", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.write_series


def digest(folder: Path, deface: bool, spacing: float = 1.0) -> dict:
    """Shape, affine, crop box and SHA-256 of what ingest stores for the one series in ``folder``."""
    found = discover([folder])
    assert len(found.series) == 1, found
    vol = preprocess(read_series(found.series[0]), PreprocessConfig(spacing=spacing, deface=deface))
    arr = np.ascontiguousarray(vol.array)
    assert arr.dtype == np.int16 and vol.array.flags["C_CONTIGUOUS"]
    return {
        "shape": list(arr.shape),
        "affine": np.round(vol.affine, 5).tolist(),
        "crop_box": vol.meta["preprocess"].get("crop_box"),
        "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
    }


def _write_demo_like(folder: Path, site: str, index: int, seed: int, size: int) -> None:
    from fmct.synth import get_site, synth_scan
    from fmct.synth.dicom_writer import write_dicom_series

    scan = synth_scan(index, site, seed, size=size, with_mask=False)
    write_dicom_series(scan, folder, get_site(site), seed, index)


def _case(name: str, tmp: Path) -> tuple[Path, bool, float]:
    """``(folder, deface, spacing)`` of case ``name``, its series written under ``tmp`` when synthetic."""
    if name in DEMO_LIKE:
        site, index, seed, size, spacing = DEMO_LIKE[name]
        _write_demo_like(tmp / name, site, index, seed, size)
        return tmp / name, True, spacing
    return (*_case_folder(name, tmp), 1.0)


def _case_folder(name: str, tmp: Path) -> tuple[Path, bool]:
    if name in SYNTHETIC:
        kwargs, deface = SYNTHETIC[name]
        folder = tmp / name
        _writer()(folder, **kwargs)
        return folder, deface
    sub, deface = REAL_CASES[name]
    if not REAL.is_dir():
        pytest.skip(f"real CT DICOM not present at {REAL} (see shared/realdata/README.md)")
    return REAL / sub, deface


CASES = [*SYNTHETIC, *DEMO_LIKE, *REAL_CASES]


@pytest.mark.parametrize("name", CASES)
def test_stored_volume_is_bit_identical_to_before(name, tmp_path):
    expected = json.loads(DIGESTS.read_text())[name]
    got = digest(*_case(name, tmp_path))
    assert got["shape"] == expected["shape"]
    assert got["crop_box"] == expected["crop_box"]
    np.testing.assert_allclose(got["affine"], expected["affine"], atol=1e-5)
    assert got["sha256"] == expected["sha256"]


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    names = sys.argv[sys.argv.index("--write") + 1 :] or CASES
    out = json.loads(DIGESTS.read_text()) if DIGESTS.exists() and names != CASES else {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in names:
            out[case] = digest(*_case(case, Path(tmp)))
            print(case, out[case]["shape"], out[case]["sha256"][:12])
    DIGESTS.parent.mkdir(exist_ok=True)
    DIGESTS.write_text(json.dumps(out, indent=1) + "\n")
