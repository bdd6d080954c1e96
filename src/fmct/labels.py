"""Finding names shared by every part of fmct (fixed by DESIGN.md)."""

from __future__ import annotations

#: The five intracranial haemorrhage subtypes; ``ich`` is their logical OR.
ICH_SUBTYPES: tuple[str, ...] = ("iph", "ivh", "sdh", "edh", "sah")

#: All findings, in the fixed column order of ``labels.csv`` and of every classifier output.
FINDINGS: tuple[str, ...] = (
    "ich",
    "iph",
    "ivh",
    "sdh",
    "edh",
    "sah",
    "mass",
    "hydrocephalus",
    "edema",
    "infarct",
    "fracture",
    "midline_shift",
)
