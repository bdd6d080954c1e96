"""Retrieval mAP per finding for every evaluated model (a default hook of :func:`run_protocol`).

Queries and the searched collection are the scans of one test set (ID test, or OOD): nothing is fitted,
so the training split is not involved. Chance level is about the prevalence of the finding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fmct.evaluate.protocol import TEST_SETS, Context
from fmct.infer.retrieval import retrieval_map
from fmct.labels.table import label_matrix


def retrieval_report(ctx: Context) -> dict[str, Any]:
    """``{model: {test_set: {"n": scans, "map": {finding: mAP | None}, "macro": mAP | None}}}``."""

    out: dict[str, Any] = {}
    for name, emb in ctx.embeddings.items():
        have = set(emb.scan_ids)
        per_set: dict[str, Any] = {}
        for tname, split in TEST_SETS.items():
            ids = [s for s in ctx.splits.loc[ctx.splits["split"] == split, "scan_id"] if s in have]
            if len(ids) < 3:
                continue
            x = emb.select(ids).feature(ctx.config.feature)
            y = label_matrix(ctx.labels, ids, ctx.findings)
            maps = retrieval_map(x, y, ctx.findings)
            vals = {
                f: (None if v is None or not np.isfinite(v) else round(float(v), 4)) for f, v in maps.items()
            }
            usable = [v for v in vals.values() if v is not None]
            per_set[tname] = {
                "n": len(ids),
                "map": vals,
                "macro": round(float(np.mean(usable)), 4) if usable else None,
            }
        out[name] = per_set
    return out


def retrieval_table(retrieval: dict[str, Any], findings: list[str]) -> tuple[list[str], list[list[str]]]:
    """``(header, rows)``: one row per model × test set, macro and per-finding mAP."""
    header = ["model", "test set", "n", "macro mAP", *findings]
    rows = []
    for name, per_set in retrieval.items():
        for tname, r in per_set.items():
            rows.append(
                [name, tname, str(r["n"]), _fmt(r["macro"]), *(_fmt(r["map"].get(f)) for f in findings)]
            )
    return header, rows


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
