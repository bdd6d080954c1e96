"""The report's saliency table: numbers computed from maps and masks, the same in Markdown and HTML."""

import html
import re

import numpy as np

from fmct.evaluate.report import to_html, to_markdown
from fmct.infer.saliency_metrics import score_maps, summarise_scores


def _minimal_report(saliency):
    meta = {"findings": ["ich"], "test_sets": {"id": 10}, "n_train": 20, "n_val": 5, "config": {"n_boot": 10},
            "headline_setting": "1", "models": ["ssl"]}  # fmt: skip
    return {"meta": meta, "results": [], "comparisons": [], "saliency": saliency}


def _scored_cases():
    """Two hand-built cases: grad_rollout peaks inside the lesion both times, attention outside both times."""
    mask_aff, grid_aff = np.diag([2.0, 2.0, 2.0, 1.0]), np.diag([4.0, 4.0, 4.0, 1.0])
    mask = np.zeros((32, 32, 32), bool)
    mask[20:24, 20:24, 20:24] = True
    head = np.zeros((16, 16, 16), bool)
    head[2:14, 2:14, 2:14] = True
    inside, outside = np.zeros((16, 16, 16)), np.zeros((16, 16, 16))
    inside[11, 11, 11] = 1.0
    outside[3, 3, 3] = 1.0
    one = score_maps({"attention": outside, "grad_rollout": inside}, grid_aff, mask, mask_aff, head)
    return [one, one]


def test_saliency_table_in_markdown_and_html_from_maps_and_masks():
    scores = _scored_cases()
    sal = {"scans": 2, "tol_mm": 10.0, **summarise_scores(scores), "per_case": [], "example": "../s/ich.png"}
    md = to_markdown(_minimal_report(sal))
    page = html.unescape(to_html(_minimal_report(sal)))
    text = re.sub(r"<[^>]+>", " ", page)
    assert "## Saliency against the synthetic lesion masks" in md
    rows = {ln.split("|")[1].strip().split(":")[0]: [c.strip() for c in ln.strip("|").split("|")]
            for ln in md.splitlines() if ln.startswith("| ") and not ln.startswith("| map")}  # fmt: skip
    assert rows["grad_rollout"][1:4] == ["2 / 2", "1.00 [0.34, 1.00]", "above chance"]  # hit: scores 1
    assert rows["attention"][1:4] == ["0 / 2", "0.00 [0.00, 0.66]", "not above chance"]  # miss: scores 0
    chance = scores[0]["chance"]["hit_rate"]
    assert rows["chance"][2] == f"{chance:.2f}" and 0 < chance < 0.34
    assert (
        rows["grad_rollout"][4]
        == f"{np.mean([s['methods']['grad_rollout']['mass_share'] for s in scores]):.3f}"
    )
    for row in rows.values():  # the HTML says the same
        for cell in row:
            assert cell in text, cell
    assert "Saliency against the synthetic lesion masks" in text and "2 (scan, finding) cases" in text
    assert "![saliency montage" in md and "src='../s/ich.png'" in page


def test_no_saliency_section_without_scored_cases():
    sal = {"scans": 0, "tol_mm": 10.0, **summarise_scores([]), "per_case": []}
    assert "Saliency" not in to_markdown(_minimal_report(sal))
    assert "Saliency" not in to_markdown(_minimal_report(None))
