"""Labels: the finding names shared by every part of fmct (fixed by DESIGN.md), and label files.

- :data:`FINDINGS` / :data:`ICH_SUBTYPES` — here, importable without pandas.
- :mod:`~fmct.labels.table` — ``labels.csv`` read and checked (``read_labels``), label matrices aligned with scan ids.
- :mod:`~fmct.labels.importers` — RSNA ICH and CQ500 label files -> ``labels.csv`` (``fmct labels``).
"""

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
