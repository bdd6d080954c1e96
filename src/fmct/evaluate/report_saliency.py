"""The report's saliency section: how well each saliency map points at known lesions (pointing game), from
``report["saliency"]`` (:func:`fmct.infer.saliency_eval.score_saliency`)."""

from __future__ import annotations

from typing import Any

#: What each method is, for readers of the report.
METHOD_NAMES: dict[str, str] = {
    "attention": "attention rollout (the same map for every finding)",
    "grad_rollout": "gradient-weighted attention rollout",
    "grad_x_input": "Grad × Input",
}


def saliency_rows(sal: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the table: one row per method, then the chance level of a map uniform over the
    head."""
    chance = sal.get("chance") or {}
    p0 = chance.get("hit_rate")
    header = ["map", "pointing game: hits / cases", "hit rate [95% CI]", "vs chance", "mean mass share"]
    rows = []
    for r in sal.get("methods", []):
        lo, hi = r["ci"]
        above = "n/a" if p0 is None else ("above chance" if lo > p0 else "not above chance")
        share = "n/a" if r.get("mass_share") is None else f"{r['mass_share']:.3f}"
        name = f"{r['method']}: {METHOD_NAMES[r['method']]}" if r["method"] in METHOD_NAMES else r["method"]
        rows.append(
            [name, f"{r['hits']} / {r['cases']}", f"{r['hit_rate']:.2f} [{lo:.2f}, {hi:.2f}]", above, share]
        )
    if p0 is not None:
        share = chance.get("mass_share")
        rows.append(["chance: a map uniform over the head", "—", f"{p0:.2f}", "—",
                     "n/a" if share is None else f"{share:.3f}"])  # fmt: skip
    return header, rows


def saliency_blocks(sal: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """Report blocks (see :data:`fmct.evaluate.report.ReportBlock`) of the saliency section; none without cases."""
    if not sal or not sal.get("cases"):
        return []
    selection = f" ({sal['selection']})" if sal.get("selection") else ""
    model = f" of {sal['model']}" if sal.get("model") else ""
    text = (
        f"{sal['cases']} (scan, finding) cases: every finding present in {sal.get('scans', '?')} ID test "
        f"scans{selection}, maps{model}. Pointing game: a hit when the map's maximum (within the head) lies "
        f"within {sal.get('tol_mm', 10):g} mm of the finding's synthetic lesion mask; mass share: the share of "
        "the map inside the mask. Chance: a map uniform over the head. Read a map only where its hit rate is "
        "above chance (the CI's lower end above the chance rate)."
    )
    blocks: list[tuple[str, Any]] = [
        ("h2", "Saliency against the synthetic lesion masks"),
        ("p", text),
        ("table", saliency_rows(sal)),
    ]
    if sal.get("example"):
        blocks.append(
            ("figure", (sal["example"], "saliency montage of one test scan with its lesion outline"))
        )
    return blocks
