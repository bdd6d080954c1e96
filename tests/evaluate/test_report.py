"""The report: a verdict computed from the comparisons, HTML with the Markdown's content, positives per
finding, provenance and the summary figure."""

import html
import re

import pytest
from evalkit import FINDINGS3, make_labels, separable_embeddings

from fmct.evaluate.protocol import run_protocol
from fmct.evaluate.report import to_html, to_markdown, verdict


@pytest.fixture(scope="module")
def report(tmp_path_factory):  # type: ignore[no-untyped-def]
    labels = make_labels(160, seed=2)
    out = tmp_path_factory.mktemp("rep")
    good = separable_embeddings(labels, FINDINGS3, signal=3.0, seed=0)
    same = separable_embeddings(labels, FINDINGS3, signal=3.0, seed=0)
    weak = separable_embeddings(labels, FINDINGS3, signal=0.0, seed=1)
    rep = run_protocol({"good": good, "twin": same, "weak": weak}, labels, out,
                       config={"fractions": [0.1, 1.0], "seeds": [0, 1], "n_boot": 200})  # fmt: skip
    return rep, out


def test_verdict_is_computed_from_the_comparisons(report) -> None:  # type: ignore[no-untyped-def]
    rep, _ = report
    lines = verdict(rep)
    weak_id = next(ln for ln in lines if ln.startswith("good − weak, id test"))
    assert "labels 1 (linear): +" in weak_id and "good better" in weak_id
    twin_id = next(ln for ln in lines if ln.startswith("good − twin, id test"))
    assert "+0.000 [+0.000, +0.000], not resolved" in twin_id  # identical features: a difference of 0
    comp = next(c for c in rep["comparisons"] if (c["a"], c["b"], c["setting"], c["test_set"], c["metric"])
                == ("good", "weak", "1", "id", "auroc"))  # fmt: skip
    assert f"{comp['value']:+.3f}" in weak_id


def test_html_says_what_the_markdown_says(report) -> None:  # type: ignore[no-untyped-def]
    rep, out = report
    md, page = to_markdown(rep), html.unescape(to_html(rep))
    text = re.sub(r"<[^>]+>", " ", page)
    for line in md.splitlines():
        if line.startswith("#"):
            assert line.lstrip("# ") in text, line
        elif line.startswith("|") and not line.startswith("|-"):
            for cell in (c.strip().replace("**", "") for c in line.strip("|").split("|")):
                assert cell in text, cell
        elif line.startswith("- "):
            assert line[2:] in text, line
    for needle in ("train ", " / val ", "Bootstrap: 200 resamples", "Retrieval mAP", "Provenance", "Verdict"):
        assert needle in md and needle in text, needle
    assert (out / rep["meta"]["summary_plot"]).is_file() and rep["meta"]["summary_plot"] in page


def test_positives_per_finding_and_provenance(report) -> None:  # type: ignore[no-untyped-def]
    rep, _ = report
    meta = rep["meta"]
    for t, n in meta["test_sets"].items():
        assert set(meta["positives"][t]) == set(FINDINGS3) and all(
            0 <= v <= n for v in meta["positives"][t].values()
        )
    assert f"{meta['positives']['id']['ich']} / {meta['test_sets']['id']}" in to_markdown(rep)
    prov = meta["provenance"]
    assert prov["fmct_version"] and prov["date"].endswith("UTC")
