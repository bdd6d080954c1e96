"""One synthetic scan: anatomy + findings + acquisition, fully determined by ``(index, site, seed, size)``."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fmct.io.volume import Volume
from fmct.labels import FINDINGS, ICH_SUBTYPES
from fmct.synth.acquire import Geometry, Pose, acquire, make_geometry, sample_mask, sample_pose
from fmct.synth.anatomy import Grid, HeadParams, render_head, sample_head
from fmct.synth.findings import MASK_VALUES, Plan, paint, sample_plan
from fmct.synth.sites import get_site

#: Default in-plane matrix.
DEFAULT_SIZE = 256


@dataclass
class SynthScan:
    """A generated scan.

    Attributes:
        volume: float32 HU ``(size, size, n_slices)`` at the acquisition geometry (column, row, slice
            order) with the voxel -> RAS affine; exactly the values written to DICOM/NIfTI.
        labels: ``{finding: 0|1}`` for every :data:`fmct.labels.FINDINGS` (``ich`` = OR of subtypes).
        sizes: ``{finding: size}`` (units in :data:`fmct.synth.findings.SIZE_UNITS`; 0 when absent).
        mask: uint8 label map on the same grid (:data:`fmct.synth.findings.MASK_VALUES`), or None.
        stored: the integer pixel values written to DICOM (``volume = stored + rescale_intercept``).
            ``stored`` and ``volume.array`` lie slice-major in memory (``a.transpose(2, 1, 0)`` is
            C-contiguous), as the acquisition produces them and DICOM stores them.
        meta: de-identified facts (site, index, seed, pose, anatomy, scenarios), JSON-able.
        geometry: the acquisition :class:`~fmct.synth.acquire.Geometry` (DICOM tags come from it).
    """

    volume: Volume
    labels: dict[str, int]
    sizes: dict[str, float]
    mask: np.ndarray | None
    stored: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    geometry: Geometry | None = None


def scan_rng(index: int, site: str, seed: int) -> np.random.Generator:
    """The random generator of one scan: independent of the other scans and of the worker count."""
    key = int.from_bytes(hashlib.sha256(f"fmct-synth:{site}:{seed}:{index}".encode()).digest()[:8], "little")
    return np.random.default_rng(key)


def internal_spacing(pixel_mm: float, slice_mm: float) -> float:
    """Resolution (mm) of the internal anatomy grid: fine enough for the scan, at most 2 mm."""
    return float(np.clip(0.9 * min(pixel_mm, slice_mm), 1.25, 2.0))


def draw_subject(
    index: int, site: str, seed: int, prevalence: dict[str, float] | None = None
) -> tuple[np.random.Generator, HeadParams, Plan, Pose]:
    """The subject of scan ``index`` of the cohort ``(site, seed)`` before it is rendered: its head, its
    findings and its pose, and the random generator that goes on to draw the acquisition."""
    rng = scan_rng(index, site, seed)
    head = sample_head(rng)
    plan = sample_plan(rng, head, prevalence)
    pose = sample_pose(rng)
    return rng, head, plan, pose


def _subject_meta(head: HeadParams, pose: Pose) -> dict[str, Any]:
    """The pose (degrees) and anatomy of a scan as its meta holds them (rounded)."""
    return {"pose_deg": [round(a, 2) for a in pose.angles_deg], "anatomy": head.to_meta()}


#: Generator parameters of a synthetic scan, the columns of :func:`generator_parameters`: pose (degrees),
#: head semi-axes and skull thickness (mm), atrophy and ventricle scale (unitless).
GENERATOR_PARAMETERS: tuple[str, ...] = ("pose_x_deg", "pose_y_deg", "pose_z_deg", "head_axis_x_mm",
                                         "head_axis_y_mm", "head_axis_z_mm", "bone_mm", "atrophy",
                                         "ventricle_scale")  # fmt: skip


def generator_parameters(
    indices: Iterable[int], site: str, seed: int, prevalence: dict[str, float] | None = None
) -> np.ndarray:
    """``(n, 9)`` float64 :data:`GENERATOR_PARAMETERS` of scans ``indices`` of the cohort ``(site, seed)``
    (row ``i`` of an ``fmct synth --site SITE --seed SEED`` labels.csv is scan ``i``), as their meta holds
    them: the nuisance variables a readout should not need to encode. Drawn without rendering, so they do
    not depend on the matrix size."""
    name = get_site(site).name
    rows = []
    for i in indices:
        _, head, _, pose = draw_subject(i, name, seed, prevalence)
        m = _subject_meta(head, pose)
        a = m["anatomy"]
        rows.append([*m["pose_deg"], *a["axes_mm"], a["bone_mm"], a["atrophy"], a["ventricle_scale"]])
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(GENERATOR_PARAMETERS))


def synth_scan(
    index: int,
    site: str,
    seed: int,
    size: int = DEFAULT_SIZE,
    prevalence: dict[str, float] | None = None,
    fmt: str = "dicom",
    with_mask: bool = True,
) -> SynthScan:
    """Generate scan ``index`` of the cohort ``(site, seed)``; ``fmt="nifti"`` de-shears a gantry tilt."""
    if size < 16:
        raise ValueError(f"size must be >= 16, got {size}")
    st = get_site(site)
    rng, head, plan, pose = draw_subject(index, st.name, seed, prevalence)
    geom = make_geometry(st, size, rng, head_z=float(pose.offset[2]), shear=(fmt == "dicom"))
    grid = Grid.covering(internal_spacing(geom.pixel_mm, geom.thickness_mm))
    anat = render_head(head, grid, shift=plan.shift, shift_y=plan.shift_y)
    mask_i, labels, sizes = paint(anat, plan, rng)
    stored, hu = acquire(anat.hu, grid, geom, pose, st, rng)
    present = [MASK_VALUES[f] for f in FINDINGS if f != "ich" and labels[f]]
    mask = sample_mask(mask_i, present, grid, geom, pose)
    # a finding outside the scanned field (e.g. above the last slice) is not in the image: not labelled
    for f in FINDINGS:
        if f != "ich" and labels[f] and not (mask == MASK_VALUES[f]).any():
            labels[f], sizes[f] = 0, 0.0
    labels["ich"] = int(any(labels[f] for f in ICH_SUBTYPES))
    if not labels["ich"]:
        sizes["ich"] = 0.0
    meta = {
        "source_kind": "synthetic",
        "site": st.name,
        "index": int(index),
        "seed": int(seed),
        "manufacturer": st.manufacturer,
        "convolution_kernel": st.convolution_kernel,
        "slice_thickness": geom.thickness_mm,
        "pixel_spacing": geom.pixel_mm,
        "gantry_tilt": geom.tilt_deg,
        **_subject_meta(head, pose),
        "scenarios": list(plan.scenarios),
        "midline_shift_mm": round(abs(plan.shift), 2),
        "internal_mm": grid.h,
        "rescale_intercept": st.rescale_intercept,
    }
    vol = Volume(array=hu, affine=geom.affine, meta=meta)
    scan = SynthScan(
        volume=vol,
        labels=labels,
        sizes={k: round(float(v), 3) for k, v in sizes.items()},
        mask=mask if with_mask else None,
        stored=stored,
        meta=meta,
        geometry=geom,
    )
    return scan
