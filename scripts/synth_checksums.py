"""Checksums of the synthetic generator's outputs, to show a refactor of ``fmct.synth`` changes no output.

Hashes (SHA-256, first 16 hex) the plans of 2,600 scans (3 sites x 2 seeds x 400, and 200 with a prevalence
override, with the generator state after each), the painted anatomy (HU, label map, labels, sizes) of one scan
per scenario and of 120 more, 11 whole scans (HU, stored values, mask, affine, labels, sizes, meta; DICOM and
NIfTI geometry) and the bytes of two small cohorts on disk (DICOM and NIfTI, with masks and labels.csv).
Run it before and after a change and compare the output (about 20 s on 2 cores)::

    PYTHONPATH=src python scripts/synth_checksums.py > before.txt   # on the old code
    PYTHONPATH=src python scripts/synth_checksums.py | diff before.txt -
"""

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from fmct.synth.anatomy import Grid, render_head, sample_head
from fmct.synth.cohort import generate_cohort
from fmct.synth.findings import paint, sample_plan
from fmct.synth.scan import scan_rng, synth_scan


def h(*arrs):
    m = hashlib.sha256()
    for a in arrs:
        if isinstance(a, np.ndarray):
            m.update(str((a.dtype, a.shape)).encode())
            m.update(np.ascontiguousarray(a).tobytes())
        else:
            m.update(json.dumps(a, sort_keys=True, default=repr).encode())
    return m.hexdigest()[:16]


def plan_obj(p):
    return {
        "lesions": [
            (
                les.kind,
                {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in les.p.items()},
            )
            for les in p.lesions
        ],
        "scenarios": p.scenarios,
        "hyd": p.hydrocephalus,
        "shift": p.shift,
        "shift_y": p.shift_y,
    }


lines = []
# 1. plans: many draws on every site/seed, incl. a prevalence override; keep the state of rng afterwards
all_plans = hashlib.sha256()
scen_idx = {}
for site in ("a", "b", "c"):
    for seed in (0, 7):
        for i in range(400):
            rng = scan_rng(i, site, seed)
            head = sample_head(rng)
            p = sample_plan(rng, head)
            all_plans.update(h(plan_obj(p), head.to_meta(), rng.random(3)).encode())
            for s in p.scenarios:
                scen_idx.setdefault(s, (site, seed, i))
for i in range(200):
    rng = scan_rng(i, "a", 3)
    head = sample_head(rng)
    p = sample_plan(rng, head, {"trauma": 0.9, "mass": 0.5, "infarct": 0.4, "hydrocephalus": 0.3})
    all_plans.update(h(plan_obj(p), head.to_meta(), rng.random(3)).encode())
    for s in p.scenarios:
        scen_idx.setdefault("override:" + s, ("a", 3, i))
lines.append(f"plans {all_plans.hexdigest()[:16]}")
print("scenario examples:", sorted(scen_idx), file=sys.stderr)

# 2. paint: one painted anatomy per scenario (internal grid 2 mm)
items = [(n, v) for n, v in sorted(scen_idx.items()) if not n.startswith("override:")]
items += [("idx", ("a", 0, i)) for i in range(80)] + [("idx", ("c", 7, i)) for i in range(40)]
paint_all = hashlib.sha256()
for name, (site, seed, i) in items:
    rng = scan_rng(i, site, seed)
    head = sample_head(rng)
    p = sample_plan(rng, head)
    grid = Grid.covering(2.0)
    anat = render_head(head, grid, shift=p.shift, shift_y=p.shift_y)
    mask_i, labels, sizes = paint(anat, p, rng)
    v = h(anat.hu, mask_i, labels, sizes, rng.random(3))
    paint_all.update(v.encode())
    if name != "idx":
        lines.append(f"paint {name} {site}/{seed}/{i} {v}")
lines.append(f"paint 120 scans a/0/0-79 c/7/0-39 {paint_all.hexdigest()[:16]}")

# 3. full scans: several seeds and sites at size 64 (dicom geometry) and one nifti
for site, seed, i, fmt in [
    ("a", 0, 0, "dicom"),
    ("a", 0, 5, "dicom"),
    ("b", 7, 3, "dicom"),
    ("c", 1, 2, "dicom"),
    ("c", 42, 11, "nifti"),
    *[(s, sd, ix, "dicom") for (s, sd, ix) in list(scen_idx.values())[:6]],
]:
    sc = synth_scan(i, site, seed, size=64, fmt=fmt)
    lines.append(
        f"scan {site}/{seed}/{i}/{fmt} {h(sc.volume.array, sc.volume.affine, sc.stored, sc.mask, sc.labels, sc.sizes, sc.meta)}"
    )

# 4. DICOM + NIfTI cohort bytes (write_dicom_series), labels.csv
with tempfile.TemporaryDirectory() as d:
    for fmt in ("dicom", "nifti"):
        out = Path(d) / fmt
        generate_cohort(out, n=3, site="b", seed=5, size=48, fmt=fmt, masks=True, workers=1, progress=False)
        m = hashlib.sha256()
        for f in sorted(out.rglob("*")):
            if f.is_file():
                m.update(str(f.relative_to(out)).encode())
                m.update(f.read_bytes())
        lines.append(f"cohort {fmt} {m.hexdigest()[:16]}")
print("\n".join(lines))
print("ALL", hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16])
