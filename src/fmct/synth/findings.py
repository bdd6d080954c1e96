"""Findings: which ones a scan has (correlated as in life) and how they are painted into the anatomy.

:func:`sample_plan` draws clinical scenarios (trauma, spontaneous haemorrhage, aneurysmal SAH, tumour,
stroke …) from :data:`DEFAULT_PREVALENCE`, turns them into lesions with a conspicuity drawn per lesion
(small/faint = subtle … large/dense = obvious) and derives the midline shift from the mass effect.
:func:`paint` writes the lesions into a rendered :class:`~fmct.synth.anatomy.Anatomy` and returns the
label map (one integer per finding, :data:`MASK_VALUES`) and the measured sizes (:data:`SIZE_UNITS`).

Densities (HU): IPH 50-85 blob in parenchyma; IVH 45-80 layering in the dependent (posterior) ventricles;
SDH crescent along the inner table, acute 50-90 or subacute 25-45; EDH biconvex lens 55-90, usually under
a fracture; SAH 42-75 in sulci/cisterns; mass 32-50 with vasogenic edema in the white matter; edema
14-24; infarct 15-25 wedge in a vascular territory (MCA/ACA/PCA); hydrocephalus = enlarged ventricles
with effaced sulci; fracture = a 0.9-2.5 mm break through the vault (often with scalp swelling);
midline shift when the mass effect displaces the falx and ventricles (label 1 when > 3 mm).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fmct.labels import FINDINGS, ICH_SUBTYPES
from fmct.synth.anatomy import (
    BONE,
    CSF,
    DEEP_GREY,
    GREY,
    SOFT,
    VENTRICLE,
    WHITE,
    Anatomy,
    HeadParams,
)

#: Per-scan probability of each clinical scenario (drawn independently). Marginal prevalences of the
#: planned findings with these defaults (10,000 draws): ich 0.24, iph 0.10, ivh 0.06, sdh 0.10,
#: edh 0.05, sah 0.10, mass 0.07, hydrocephalus 0.07, edema 0.10, infarct 0.09, fracture 0.11,
#: midline_shift 0.13. Labels in labels.csv can be slightly rarer: a lesion outside the scanned field
#: or with no room (e.g. SAH without nearby CSF) is not labelled. Checked in tests/synth/test_findings.py.
DEFAULT_PREVALENCE: dict[str, float] = {
    "trauma": 0.15,  # -> TRAUMA_MIX below
    "spontaneous_iph": 0.06,  # hypertensive bleed; IVH extension 45 %
    "aneurysmal_sah": 0.03,  # basal SAH; IVH 30 %, hydrocephalus 30 %
    "primary_ivh": 0.015,
    "chronic_sdh": 0.025,  # elderly, often subacute/isodense
    "mass": 0.07,  # tumour; vasogenic edema 80 %
    "edema": 0.045,  # edema without a visible mass
    "infarct": 0.09,
    "hydrocephalus": 0.045,
}

#: Given trauma, the probability of each lesion (at least one is forced).
TRAUMA_MIX: dict[str, float] = {
    "sdh": 0.5,
    "edh": 0.32,
    "sah": 0.45,
    "iph": 0.3,
    "ivh": 0.08,
    "fracture": 0.6,
}

#: Integer of each finding in the label map (0 = background). ``ich`` has none (it is the OR).
MASK_VALUES: dict[str, int] = {f: i + 1 for i, f in enumerate(FINDINGS) if f != "ich"}

#: Unit of ``<finding>_size`` in labels.csv.
SIZE_UNITS: dict[str, str] = {
    "ich": "mL",
    "iph": "mL",
    "ivh": "mL",
    "sdh": "mm (max thickness)",
    "edh": "mm (max thickness)",
    "sah": "mL",
    "mass": "mL",
    "hydrocephalus": "mL (ventricular volume)",
    "edema": "mL",
    "infarct": "mL",
    "fracture": "mm (length)",
    "midline_shift": "mm",
}

#: A midline shift is labelled when larger than this (mm).
SHIFT_THRESHOLD_MM = 3.0


@dataclass
class Lesion:
    """One lesion: ``kind`` is a finding name; ``p`` its parameters (mm, HU, unit vectors)."""

    kind: str
    p: dict = field(default_factory=dict)


@dataclass
class Plan:
    """What a scan will contain: lesions, the ventricle scale and the midline shift (signed, mm along x)."""

    lesions: list[Lesion]
    scenarios: list[str]
    hydrocephalus: bool
    shift: float
    shift_y: float


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _r_in(head: HeadParams, u: np.ndarray) -> float:
    """Approximate inner-table radius (mm) along unit direction ``u`` (shape harmonics ignored)."""
    return float(1.0 / np.sqrt(np.sum((u / np.asarray(head.axes)) ** 2)))


def _parenchyma_point(rng: np.random.Generator, head: HeadParams, depth: tuple[float, float]) -> np.ndarray:
    """A supratentorial point ``depth`` mm (range) inside the inner table."""
    u = _unit([rng.normal(), rng.normal() * 1.1, abs(rng.normal()) * 0.7 + 0.15])
    return u * (_r_in(head, u) - rng.uniform(*depth))


#: The order in which a plan draws its lesions (the order of the random draws is part of a cohort's
#: definition: same seed, same scans). A fracture comes last: :func:`paint` relies on it.
LESION_ORDER: tuple[str, ...] = ("sdh", "edh", "iph", "mass", "edema", "ivh", "sah", "infarct", "fracture")


def sample_plan(
    rng: np.random.Generator, head: HeadParams, prevalence: dict[str, float] | None = None
) -> Plan:
    """Draw the scenarios and lesions of one scan (mutates ``head`` for hydrocephalus).

    Draws, in this order: the scenarios (:data:`DEFAULT_PREVALENCE`, overridden by ``prevalence``), the side
    of the lesions, the lesions the scenarios call for (:func:`_wanted_lesions`), each lesion's parameters in
    :data:`LESION_ORDER`, the hydrocephalic ventricles, and the midline shift their mass effect causes.
    """
    prev = _prevalences(prevalence)
    scen = [k for k in prev if rng.random() < prev[k]]
    side = float(rng.choice([-1.0, 1.0]))
    want = _wanted_lesions(rng, scen)
    draft = _Draft(rng, head)
    for kind in LESION_ORDER:
        if kind in want:
            draft.lesions.append(_draw_lesion(draft, kind, want[kind], side))
    hydro = "hydrocephalus" in want
    if hydro:
        head.ventricle_scale = float(rng.uniform(1.6, 2.5))
        head.atrophy = float(min(head.atrophy, 0.15))
        head.csf_gap = float(rng.uniform(0.5, 1.0))
    mass_effect = draft.mass_effect
    shift_mag = 0.26 * abs(mass_effect) ** 0.7 * rng.uniform(0.75, 1.3) if mass_effect else 0.0
    shift = -float(np.sign(mass_effect)) * float(shift_mag)
    centre_y = draft.centre_y
    for les in draft.lesions:
        if "centre" in les.p and les.kind in ("iph", "mass", "edema"):
            centre_y = float(np.clip(les.p["centre"][1], -40, 40))
    return Plan(lesions=draft.lesions, scenarios=scen, hydrocephalus=hydro, shift=shift, shift_y=centre_y)


def _prevalences(prevalence: dict[str, float] | None) -> dict[str, float]:
    """:data:`DEFAULT_PREVALENCE` updated with ``prevalence`` (unknown scenario names raise)."""
    prev = dict(DEFAULT_PREVALENCE)
    if prevalence:
        unknown = set(prevalence) - set(prev)
        if unknown:
            raise ValueError(f"unknown prevalence keys {sorted(unknown)}; known: {sorted(prev)}")
        prev.update(prevalence)
    return prev


def _wanted_lesions(rng: np.random.Generator, scen: list[str]) -> dict[str, dict]:
    """``{finding: options}`` the scenarios ``scen`` call for, correlated as in life (e.g. an EDH usually
    lies under a fracture, a tumour brings vasogenic edema, IVH may block CSF outflow)."""
    want: dict[str, dict] = {}

    def add(kind: str, **kw) -> None:
        want.setdefault(kind, {}).update(kw)

    if "trauma" in scen:
        picks = [k for k, pr in TRAUMA_MIX.items() if rng.random() < pr]
        if not picks:
            picks = [str(rng.choice(["sdh", "fracture", "sah"]))]
        for k in picks:
            add(k, trauma=True)
        if "edh" in want and rng.random() < 0.85:
            add("fracture", trauma=True)
    if "spontaneous_iph" in scen:
        add("iph", deep=True)
        if rng.random() < 0.45:
            add("ivh")
    if "aneurysmal_sah" in scen:
        add("sah", basal=True)
        if rng.random() < 0.3:
            add("ivh")
        if rng.random() < 0.3:
            add("hydrocephalus")
    if "primary_ivh" in scen:
        add("ivh")
    if "chronic_sdh" in scen:
        add("sdh", chronic=True)
    if "mass" in scen:
        add("mass")
        if rng.random() < 0.8:
            add("edema", around_mass=True)
    for kind in ("edema", "infarct", "hydrocephalus"):
        if kind in scen:
            add(kind)
    if "ivh" in want and rng.random() < 0.2:
        add("hydrocephalus")
    return want


@dataclass
class _Draft:
    """A plan being drawn: the lesions so far, their summed mass effect (mL, signed by side: + = right) and
    the y (mm) of the last extra-axial collection (where the midline shifts most)."""

    rng: np.random.Generator
    head: HeadParams
    lesions: list[Lesion] = field(default_factory=list)
    mass_effect: float = 0.0
    centre_y: float = 0.0


def _draw_lesion(draft: _Draft, kind: str, opts: dict, side: float) -> Lesion:
    """One lesion of ``kind``: its conspicuity ``u`` (0 subtle .. 1 obvious), side and parameters."""
    rng = draft.rng
    u = rng.uniform()
    s = side if kind != "infarct" else float(rng.choice([-1.0, 1.0]))
    les = Lesion(kind, {"conspicuity": float(u), "side": s})
    _LESION_DRAWERS[kind](draft, les.p, opts, s, u)
    return les


def _draw_iph(draft: _Draft, p: dict, opts: dict, s: float, u: float) -> None:
    """Intraparenchymal haemorrhage: deep (hypertensive) or lobar blob, 50-85 HU."""
    rng, head = draft.rng, draft.head
    if opts.get("deep"):
        c = np.array([s * (8.0 + 5.0 * head.ventricle_scale + 13.0), 4.0, -2.0]) + rng.normal(0, 4, 3)
    else:
        c = _parenchyma_point(rng, head, (12.0, 30.0))
        c[0] = s * abs(c[0])
    rad = 3.5 + 17.0 * u**1.4
    p.update(centre=c, radii=rad * rng.uniform(0.75, 1.25, 3), hu=50.0 + 35.0 * rng.uniform() ** 0.8)
    draft.mass_effect += s * 4.19 * np.prod(p["radii"]) / 1000.0


def _draw_mass(draft: _Draft, p: dict, opts: dict, s: float, u: float) -> None:
    """Tumour: a 32-50 HU blob in the parenchyma, necrotic centre when large."""
    rng = draft.rng
    c = _parenchyma_point(rng, draft.head, (15.0, 38.0))
    c[0] = s * abs(c[0])
    rad = 5.0 + 17.0 * u
    p.update(
        centre=c,
        radii=rad * rng.uniform(0.8, 1.2, 3),
        hu=rng.uniform(32.0, 50.0),
        necrotic=bool(rad > 14 and rng.random() < 0.5),
    )
    draft.mass_effect += s * 4.19 * np.prod(p["radii"]) / 1000.0


def _draw_edema(draft: _Draft, p: dict, opts: dict, s: float, u: float) -> None:
    """Vasogenic edema (14-24 HU): around the mass drawn just before, or on its own."""
    rng, lesions = draft.rng, draft.lesions
    if opts.get("around_mass") and lesions and lesions[-1].kind == "mass":
        m = lesions[-1].p
        p.update(
            centre=m["centre"],
            radii=m["radii"] + rng.uniform(6.0, 24.0) * (0.4 + u),
            hu=rng.uniform(14, 24),
        )
    else:
        c = _parenchyma_point(rng, draft.head, (15.0, 35.0))
        c[0] = s * abs(c[0])
        p.update(centre=c, radii=(8.0 + 20.0 * u) * rng.uniform(0.7, 1.3, 3), hu=rng.uniform(14, 24))
    draft.mass_effect += s * 0.5 * 4.19 * np.prod(p["radii"]) / 1000.0


def _draw_sdh(draft: _Draft, p: dict, opts: dict, s: float, u: float) -> None:
    """Subdural crescent along the inner table: acute 50-90 HU or subacute 25-45 HU (often when chronic)."""
    rng = draft.rng
    d = _unit([s * 0.9, rng.uniform(-0.5, 0.4), rng.uniform(0.0, 0.55)])
    theta = np.deg2rad(rng.uniform(40, 75))
    thick = 2.0 + 17.0 * u**1.3
    sub = bool(opts.get("chronic") and rng.random() < 0.6) or rng.random() < 0.15
    hu = rng.uniform(25, 45) if sub else rng.uniform(50, 90)
    _extra_axial(draft, p, s, d, theta, thick, hu, sub, frac=0.4)


def _draw_edh(draft: _Draft, p: dict, opts: dict, s: float, u: float) -> None:
    """Epidural lens (55-90 HU), smaller and thicker than a subdural."""
    rng = draft.rng
    d = _unit([s * 0.85, rng.uniform(-0.4, 0.4), rng.uniform(-0.05, 0.45)])
    theta = np.deg2rad(rng.uniform(16, 30))
    thick = 4.0 + 22.0 * u
    hu, sub = rng.uniform(55, 90), False
    _extra_axial(draft, p, s, d, theta, thick, hu, sub, frac=0.6)


def _extra_axial(
    draft: _Draft,
    p: dict,
    s: float,
    d: np.ndarray,
    theta: float,
    thick: float,
    hu: float,
    sub: bool,
    frac: float,
) -> None:
    """Parameters of an SDH / EDH cap (direction ``d``, half-angle ``theta`` rad, ``thick`` mm) and its mass
    effect: ``frac`` × the cap's area × thickness."""
    p.update(direction=d, theta=float(theta), thickness=float(thick), hu=float(hu), subacute=sub)
    radius = _r_in(draft.head, d)
    area = 2 * np.pi * radius**2 * (1 - np.cos(theta))
    draft.mass_effect += s * frac * area * thick / 1000.0
    draft.centre_y = float(d[1] * radius)


def _draw_ivh(draft: _Draft, p: dict, opts: dict, s: float, u: float) -> None:
    """Intraventricular blood (45-80 HU) layering up to ``level`` mm (y), or a cast filling the ventricles."""
    rng = draft.rng
    p.update(level=float(-40.0 + 55.0 * u), hu=rng.uniform(45, 80), cast=bool(rng.random() < 0.25))


def _draw_sah(draft: _Draft, p: dict, opts: dict, s: float, u: float) -> None:
    """Subarachnoid blood (42-75 HU) in the CSF of a sphere: basal cisterns, or convexity sulci (trauma)."""
    rng = draft.rng
    if opts.get("basal") or (not opts.get("trauma") and rng.random() < 0.5):
        p.update(centre=np.array([rng.normal(0, 6), 10.0 + rng.normal(0, 5), -18.0]), radius=22 + 35 * u)
    else:
        d = _unit([s * 0.8, rng.uniform(-0.6, 0.6), rng.uniform(0.1, 0.7)])
        p.update(centre=d * (_r_in(draft.head, d) - 8.0), radius=18.0 + 30.0 * u)
    p["hu"] = 42.0 + 33.0 * rng.uniform() ** 0.8


def _draw_infarct(draft: _Draft, p: dict, opts: dict, s: float, u: float) -> None:
    """Infarct: a 15-25 HU wedge in a vascular territory (MCA twice as likely as ACA or PCA)."""
    rng = draft.rng
    terr = str(rng.choice(["mca", "mca", "aca", "pca"]))
    d = {"mca": [s, 0.1, 0.2], "aca": [s * 0.25, 0.55, 0.8], "pca": [s * 0.35, -0.95, 0.05]}[terr]
    p.update(
        territory=terr,
        direction=_unit(d) + rng.normal(0, 0.12, 3),
        apex=np.array([s * 12.0, 0.0, 2.0]) + rng.normal(0, 3, 3),
        theta=float(np.deg2rad(10.0 + 22.0 * u)),
        hu=rng.uniform(15, 25),
    )


def _draw_fracture(draft: _Draft, p: dict, opts: dict, s: float, u: float) -> None:
    """Skull fracture: a line through the vault (under the EDH when there is one), often with scalp swelling."""
    rng = draft.rng
    edh = [x for x in draft.lesions if x.kind == "edh"]
    if edh:
        d = edh[0].p["direction"]
    else:
        d = _unit([s * rng.uniform(0.3, 1.0), rng.uniform(-0.9, 0.9), rng.uniform(0.0, 0.8)])
    t = np.cross(d, rng.normal(size=3))
    p.update(
        direction=_unit(d),
        normal=_unit(t),
        length=15.0 + 45.0 * u,
        width=0.9 + 1.6 * u,
        swelling=bool(rng.random() < 0.7),
        hu=rng.uniform(30, 55),
        swell_mm=rng.uniform(9.0, 18.0),
        swell_hu=rng.uniform(40, 60),
    )


_LESION_DRAWERS = {
    "sdh": _draw_sdh,
    "edh": _draw_edh,
    "iph": _draw_iph,
    "mass": _draw_mass,
    "edema": _draw_edema,
    "ivh": _draw_ivh,
    "sah": _draw_sah,
    "infarct": _draw_infarct,
    "fracture": _draw_fracture,
}


def _ell_box(anat: Anatomy, centre, radii, pad: float = 0.0):
    grid = anat.grid
    box = grid.index_box(
        np.asarray(centre) - np.asarray(radii) - pad, np.asarray(centre) + np.asarray(radii) + pad
    )
    x, y, z = grid.sub_axes(box)
    return box, x, y, z


def _blob(rng: np.random.Generator, x, y, z, centre, radii) -> np.ndarray:
    """Normalised radius (< 1 inside) of an irregular blob (ellipsoid with a lumpy boundary)."""
    e = np.sqrt(
        ((x - centre[0]) / radii[0]) ** 2
        + ((y - centre[1]) / radii[1]) ** 2
        + ((z - centre[2]) / radii[2]) ** 2
    )
    k = rng.normal(0, 1, (2, 3)) / np.mean(radii) * 1.8
    ph = rng.uniform(0, 2 * np.pi, 2)
    lump = 0.12 * (
        np.cos(k[0, 0] * x + k[0, 1] * y + k[0, 2] * z + ph[0])
        + np.cos(k[1, 0] * x + k[1, 1] * y + k[1, 2] * z + ph[1])
    )
    return e * (1.0 + lump)


def _cap_profile(anat: Anatomy, box, x, y, z, direction, theta) -> np.ndarray:
    """Angle fraction ``angle / theta`` between each voxel's ray and ``direction`` (>= 1 outside the cap)."""
    r = np.sqrt(x * x + y * y + z * z) + 1e-3
    cosang = (x * direction[0] + y * direction[1] + z * direction[2]) / r
    return np.arccos(np.clip(cosang, -1.0, 1.0)) / theta


def paint(
    anat: Anatomy, plan: Plan, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, int], dict[str, float]]:
    """Paint ``plan`` into ``anat.hu`` (in place).

    Returns:
        mask: ``(X, Y, Z)`` uint8 label map on the internal grid (:data:`MASK_VALUES`).
        labels: ``{finding: 0|1}`` for all :data:`FINDINGS` (``ich`` = OR of subtypes).
        sizes: ``{finding: size}`` in :data:`SIZE_UNITS` (0 when absent; ``ich`` = total bleed volume mL).
    """
    mask = np.zeros(anat.grid.shape, dtype=np.uint8)
    labels = {f: 0 for f in FINDINGS}
    sizes = {f: 0.0 for f in FINDINGS}
    # the parenchyma is evaluated per lesion box; only the fracture's scalp swelling, painted last,
    # changes ``tissue``, so every lesion sees the parenchyma of the unpainted head
    if any(les.kind == "fracture" for les in plan.lesions[:-1]):
        raise ValueError("fracture must be the last lesion of a plan")
    for les in plan.lesions:
        _PAINTERS[les.kind](anat, les.kind, les.p, mask, sizes, rng)
    if plan.hydrocephalus:
        _paint_hydrocephalus(anat, mask)
        labels["hydrocephalus"] = 1
    for les in plan.lesions:
        labels[les.kind] = 1
    _measure(anat, mask, labels, sizes)
    if abs(plan.shift) > SHIFT_THRESHOLD_MM:
        _paint_midline_shift(anat, plan, mask)
        labels["midline_shift"], sizes["midline_shift"] = 1, float(abs(plan.shift))
    labels["ich"] = int(any(labels[f] for f in ICH_SUBTYPES))
    vox_ml = anat.grid.h**3 / 1000.0
    sizes["ich"] = (
        float(sum(float(np.count_nonzero(mask == MASK_VALUES[f])) for f in ICH_SUBTYPES) * vox_ml)
        if labels["ich"]
        else 0.0
    )
    return mask, labels, sizes


def _paint_blob(
    anat: Anatomy, k: str, p: dict, mask: np.ndarray, sizes: dict, rng: np.random.Generator
) -> None:
    """IPH, mass or edema: an irregular blob of parenchyma (edema: of white matter and deep grey, around the
    mass already painted); a large IPH gets a darker perihaematomal rim, a necrotic mass a darker core."""
    hu, tissue = anat.hu, anat.tissue
    pad = 2.0
    box, x, y, z = _ell_box(anat, p["centre"], np.asarray(p["radii"]) * 1.3, pad)
    e = _blob(rng, x, y, z, p["centre"], p["radii"])
    if k == "edema":
        m = (e < 1.0) & ((tissue[box] == WHITE) | (tissue[box] == DEEP_GREY)) & (mask[box] == 0)
    else:
        m = (e < 1.0) & (
            _parenchyma(tissue[box]) | (tissue[box] == CSF) & anat.cavity[box] & (anat.d_in[box] > 4.0)
        )
    sub = hu[box]
    if k == "mass" and p.get("necrotic"):
        sub[m] = np.where(e[m] < 0.5, p["hu"] - 18.0, p["hu"])
    elif k == "iph" and p["radii"].mean() > 8:
        ring = (e >= 1.0) & (e < 1.25) & _parenchyma(tissue[box])
        sub[ring] -= 6.0
        sub[m] = p["hu"]
    else:
        sub[m] = p["hu"]
    mask[box][m] = MASK_VALUES[k]


def _paint_extra_axial(
    anat: Anatomy, k: str, p: dict, mask: np.ndarray, sizes: dict, rng: np.random.Generator
) -> None:
    """SDH (crescent) or EDH (lens): a cap under the inner table, ``thickness`` mm at its centre."""
    grid = anat.grid
    r = _ray_radius(anat, p["direction"])
    box = grid.index_box(
        np.asarray(p["direction"]) * r - r * np.sin(min(p["theta"] * 1.2, np.pi / 2)) - 25,
        np.asarray(p["direction"]) * r + r * np.sin(min(p["theta"] * 1.2, np.pi / 2)) + 25,
    )
    x, y, z = grid.sub_axes(box)
    a = _cap_profile(anat, box, x, y, z, p["direction"], p["theta"])
    if k == "sdh":
        t = p["thickness"] * np.clip(1.0 - a**2, 0.0, 1.0) ** 0.8
    else:
        t = p["thickness"] * np.sqrt(np.clip(1.0 - a**2, 0.0, 1.0))
    m = anat.cavity[box] & (anat.d_in[box] < t) & (t > 0.3)
    anat.hu[box][m] = p["hu"]
    mask[box][m] = MASK_VALUES[k]
    if m.any():
        sizes[k] = max(sizes[k], float(p["thickness"]))


def _paint_ivh(
    anat: Anatomy, k: str, p: dict, mask: np.ndarray, sizes: dict, rng: np.random.Generator
) -> None:
    """IVH: the ventricles below ``level`` (dependent, posterior), or all of them for a cast."""
    m = anat.tissue == VENTRICLE
    if not p["cast"]:
        yy = anat.grid.axes()[1]
        m = m & (yy < p["level"])
        if not m.any():
            m = anat.tissue == VENTRICLE
    anat.hu[m] = p["hu"]
    mask[m] = MASK_VALUES[k]


def _paint_sah(
    anat: Anatomy, k: str, p: dict, mask: np.ndarray, sizes: dict, rng: np.random.Generator
) -> None:
    """SAH: the free intracranial CSF within ``radius`` mm of ``centre``."""
    rad = p["radius"]
    box, x, y, z = _ell_box(anat, p["centre"], (rad, rad, rad))
    d2 = (x - p["centre"][0]) ** 2 + (y - p["centre"][1]) ** 2 + (z - p["centre"][2]) ** 2
    m = (d2 < rad * rad) & (anat.tissue[box] == CSF) & anat.cavity[box] & (mask[box] == 0)
    anat.hu[box][m] = p["hu"]
    mask[box][m] = MASK_VALUES[k]


def _paint_infarct(
    anat: Anatomy, k: str, p: dict, mask: np.ndarray, sizes: dict, rng: np.random.Generator
) -> None:
    """Infarct: the parenchyma inside a cone (half-angle ``theta``) from ``apex`` along ``direction``."""
    grid, apex = anat.grid, p["apex"]
    reach = 95.0
    box = grid.index_box(
        np.minimum(apex, apex + p["direction"] * reach) - 45,
        np.maximum(apex, apex + p["direction"] * reach) + 45,
    )
    x, y, z = grid.sub_axes(box)
    vx, vy, vz = x - apex[0], y - apex[1], z - apex[2]
    dn = np.sqrt(vx * vx + vy * vy + vz * vz) + 1e-3
    dirv = _unit(p["direction"])
    ang = np.arccos(np.clip((vx * dirv[0] + vy * dirv[1] + vz * dirv[2]) / dn, -1, 1))
    m = (ang < p["theta"]) & (dn > 10.0) & _parenchyma(anat.tissue[box]) & (mask[box] == 0)
    anat.hu[box][m] = p["hu"] + rng.normal(0, 1.0)
    mask[box][m] = MASK_VALUES[k]


def _paint_fracture(
    anat: Anatomy, k: str, p: dict, mask: np.ndarray, sizes: dict, rng: np.random.Generator
) -> None:
    """Fracture: a ``width`` mm break through the vault bone along ``length`` mm, and the scalp swelling over
    it (which turns the scalp tissue there to soft tissue)."""
    grid, tissue = anat.grid, anat.tissue
    d = np.asarray(p["direction"])
    r = _ray_radius(anat, d)
    p0 = d * r
    half = p["length"] / 2 + 12.0
    box = grid.index_box(p0 - half - 15, p0 + half + 15)
    x, y, z = grid.sub_axes(box)
    vx, vy, vz = x - p0[0], y - p0[1], z - p0[2]
    nrm = p["normal"]
    dist = np.abs(vx * nrm[0] + vy * nrm[1] + vz * nrm[2])
    along = np.sqrt(np.maximum(vx * vx + vy * vy + vz * vz - dist * dist, 0.0))
    bone = (tissue[box] == BONE) & (anat.d_in[box] <= 0.5) & (anat.d_in[box] > -anat.bone_total[box] - 0.5)
    f = np.clip(0.5 + (p["width"] / 2 - dist) / grid.h, 0.0, 1.0) * (along < p["length"] / 2)
    f = np.where(bone, f, 0.0).astype(np.float32)
    sub = anat.hu[box]
    sub[...] = sub * (1 - f) + p["hu"] * f
    m = f >= 0.25
    mask[box][m] = MASK_VALUES[k]
    if p["swelling"]:
        near = (vx * vx + vy * vy + vz * vz) < (p["length"] / 2 + 8.0) ** 2
        outer = -anat.bone_total[box]
        sw = (
            near & (anat.d_in[box] < outer) & (anat.d_in[box] > outer - p["swell_mm"]) & (tissue[box] != BONE)
        )
        sub[sw & (mask[box] == 0)] = p["swell_hu"]
        tissue[box][sw] = SOFT
    if m.any():
        sizes[k] = float(p["length"])


_PAINTERS = {
    "iph": _paint_blob,
    "mass": _paint_blob,
    "edema": _paint_blob,
    "sdh": _paint_extra_axial,
    "edh": _paint_extra_axial,
    "ivh": _paint_ivh,
    "sah": _paint_sah,
    "infarct": _paint_infarct,
    "fracture": _paint_fracture,
}


def _paint_hydrocephalus(anat: Anatomy, mask: np.ndarray) -> None:
    """Label the enlarged ventricles (blood in them keeps its IVH label; when all of them hold blood, their
    upper fifth is labelled)."""
    grid = anat.grid
    vent = anat.tissue == VENTRICLE
    m = vent & (mask == 0)
    if not m.any():
        zz = np.broadcast_to(grid.axes()[2], grid.shape)
        m = vent & (zz >= np.percentile(zz[vent], 80))
    mask[m] = MASK_VALUES["hydrocephalus"]


def _measure(anat: Anatomy, mask: np.ndarray, labels: dict[str, int], sizes: dict[str, float]) -> None:
    """Volumes (mL) of the painted findings; a planned finding that found no room (e.g. SAH with no CSF
    nearby) is not present: label and size 0."""
    vox_ml = anat.grid.h**3 / 1000.0
    for f in ("iph", "ivh", "sah", "mass", "edema", "infarct", "hydrocephalus"):
        n = int(np.count_nonzero(mask == MASK_VALUES[f]))
        if labels[f] and n == 0:
            labels[f] = 0
        sizes[f] = float(n * vox_ml) if labels[f] else 0.0
    if labels["hydrocephalus"]:
        sizes["hydrocephalus"] = float(np.count_nonzero(anat.tissue == VENTRICLE) * vox_ml)
    for f in ("sdh", "edh", "fracture"):
        if labels[f] and not (mask == MASK_VALUES[f]).any():
            labels[f], sizes[f] = 0, 0.0


def _paint_midline_shift(anat: Anatomy, plan: Plan, mask: np.ndarray) -> None:
    """Label the displaced midline: a band from the midline to ``|shift|`` mm towards the shift, 20 mm on each
    side of ``shift_y``, from 10 mm below to 25 mm above the head-frame origin (unpainted cavity only)."""
    grid, mag = anat.grid, abs(plan.shift)
    x, y, z = grid.axes()
    sgn = np.sign(plan.shift)
    band = (
        (x * sgn >= -grid.h / 2)
        & (x * sgn <= mag)
        & (z > -10.0)
        & (z < 25.0)
        & (np.abs(y - plan.shift_y) < 20.0)
    )
    m = np.broadcast_to(band, grid.shape) & anat.cavity & (mask == 0)
    mask[m] = MASK_VALUES["midline_shift"]


def _parenchyma(tissue: np.ndarray) -> np.ndarray:
    """Brain parenchyma (grey, white, deep grey) of a tissue-class array."""
    return (tissue == GREY) | (tissue == WHITE) | (tissue == DEEP_GREY)


def _ray_radius(anat: Anatomy, direction) -> float:
    """Distance (mm) from the head-frame origin to the inner table along ``direction``."""
    grid = anat.grid
    t = np.arange(20.0, 130.0, grid.h / 2)
    pts = np.asarray(direction)[None, :] * t[:, None]
    idx = np.rint((pts - np.asarray(grid.origin)) / grid.h).astype(int)
    ok = np.all((idx >= 0) & (idx < np.asarray(grid.shape)), axis=1)
    d = np.full(len(t), -1.0)
    d[ok] = anat.d_in[idx[ok, 0], idx[ok, 1], idx[ok, 2]]
    out = np.nonzero(d <= 0)[0]
    return float(t[out[0]]) if len(out) else 70.0
