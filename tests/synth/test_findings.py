"""Finding prevalences and correlations of the scenario sampler (no rendering)."""

from __future__ import annotations

import numpy as np

from fmct.labels import FINDINGS
from fmct.synth.anatomy import sample_head
from fmct.synth.findings import SHIFT_THRESHOLD_MM, sample_plan
from fmct.synth.scan import scan_rng


def _draw(n: int, prevalence=None):
    rows = []
    for i in range(n):
        rng = scan_rng(i, "a", 123)
        head = sample_head(rng)
        plan = sample_plan(rng, head, prevalence)
        kinds = {les.kind for les in plan.lesions}
        if plan.hydrocephalus:
            kinds.add("hydrocephalus")
        if abs(plan.shift) > SHIFT_THRESHOLD_MM:
            kinds.add("midline_shift")
        rows.append(kinds)
    return rows


def test_default_prevalences_are_plausible():
    rows = _draw(3000)
    rate = {
        f: np.mean([f in r for r in rows])
        for f in FINDINGS
        if f != "ich"  # the OR of the subtypes, not drawn itself
    }
    ich = np.mean([bool(r & {"iph", "ivh", "sdh", "edh", "sah"}) for r in rows])
    assert 0.18 <= ich <= 0.34, ich
    for f, p in rate.items():
        assert 0.02 <= p <= 0.18, (f, p)


def test_correlations_as_in_life():
    rows = _draw(3000)
    edh = [r for r in rows if "edh" in r]
    assert np.mean(["fracture" in r for r in edh]) > 0.7
    no_edh = [r for r in rows if "edh" not in r]
    assert np.mean(["fracture" in r for r in no_edh]) < 0.15
    mass = [r for r in rows if "mass" in r]
    assert np.mean(["edema" in r for r in mass]) > 0.6


def test_prevalence_is_configurable():
    none = _draw(
        200,
        {
            k: 0.0
            for k in (
                "trauma",
                "spontaneous_iph",
                "aneurysmal_sah",
                "primary_ivh",
                "chronic_sdh",
                "mass",
                "edema",
                "infarct",
                "hydrocephalus",
            )
        },
    )
    assert all(not r for r in none)
    many = _draw(200, {"infarct": 1.0})
    assert all("infarct" in r for r in many)
