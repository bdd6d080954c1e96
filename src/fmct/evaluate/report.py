"""Writing the evaluation report: ``report.json`` (machine), ``report.md`` and ``report.html`` (people)."""

from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path
from typing import Any

from fmct.evaluate.report_saliency import saliency_blocks


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _clean(x: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, str):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def fmt_ci(entry: dict[str, Any] | None, key: str = "mean", sd: bool = True) -> str:
    """``0.812 ± 0.010 [0.770, 0.850]`` (or ``n/a``) from a result entry."""
    if not entry:
        return "n/a"
    v = entry.get(key, entry.get("value"))
    if v is None:
        return "n/a"
    s = f"{v:.3f}"
    if sd and entry.get("sd") is not None and entry.get("seeds") and len(entry["seeds"]) > 1:
        s += f" ± {entry['sd']:.3f}"
    lo, hi = (entry.get("ci") or [None, None])[:2]
    if lo is not None and hi is not None:
        s += f" [{lo:.3f}, {hi:.3f}]"
    return s


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _settings(report: dict[str, Any]) -> list[str]:
    seen: list[str] = []
    for r in report["results"]:
        if r["setting"] not in seen:
            seen.append(r["setting"])
    return seen


def markdown_sections(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table in the report (shared by Markdown and HTML)."""
    res = report["results"]
    meta = report["meta"]
    test_sets = list(meta["test_sets"])
    settings = _settings(report)
    sections = []
    for metric, label in (("auroc", "macro AUROC"), ("ap", "macro AP")):
        header = ["model", "method"] + [f"{t} @ {s}" for s in settings for t in test_sets]
        rows = []
        for model, method in dict.fromkeys((r["model"], r["method"]) for r in res):
            row = [model, method]
            for s in settings:
                for t in test_sets:
                    e = next(
                        (
                            r
                            for r in res
                            if (r["model"], r["method"], r["setting"], r["test_set"]) == (model, method, s, t)
                        ),
                        None,
                    )
                    row.append(fmt_ci(e[metric]["macro"]) if e else "—")
            rows.append(row)
        sections.append(
            (f"{label} (mean ± sd over seeds [95% bootstrap CI]) by label fraction", header, rows)
        )
    head = meta["headline_setting"]
    for t in test_sets:
        entries = [r for r in res if r["setting"] == head and r["test_set"] == t]
        if not entries:
            continue
        header = ["finding", "positives / n"] + [f"{r['model']} ({r['method']})" for r in entries]
        pos = (meta.get("positives") or {}).get(t, {})
        n_t = meta["test_sets"][t]
        rows = [
            [f, f"{pos.get(f, 'n/a')} / {n_t}"] + [fmt_ci(r["auroc"][f]) for r in entries]
            for f in meta["findings"]
        ]
        rows.append(["**macro**", ""] + [fmt_ci(r["auroc"]["macro"]) for r in entries])
        sections.append((f"Per-finding AUROC, {t} test, labels {head}", header, rows))
    comps = [c for c in report.get("comparisons", []) if c["metric"] == "auroc"]
    if comps:
        rows = [
            [
                f"{c['a']} − {c['b']}",
                c["method"],
                c["setting"],
                c["test_set"],
                fmt_ci(c, key="value", sd=False),
                f"{c['p_le_0']:.3f}" if c.get("p_le_0") is not None else "n/a",
            ]
            for c in comps
        ]
        sections.append(
            (
                "Paired differences of macro AUROC (same bootstrap resamples)",
                ["comparison", "method", "labels", "test set", "Δ [95% CI]", "P(Δ ≤ 0)"],
                rows,
            )
        )
    cal = report.get("calibration", {})
    if cal:
        rows = [
            [k, v["setting"], f"{v['ece_pooled']:.3f}" if v["ece_pooled"] is not None else "n/a"]
            for k, v in cal.items()
        ]
        sections.append(
            (
                "Calibration (expected calibration error, 10 bins, pooled over findings)",
                ["model/method/test set", "labels", "ECE"],
                rows,
            )
        )
    return sections


#: A report block: ("h1" | "h2" | "h3" | "p", text), ("ul", [items]), ("table", (header, rows)),
#: ("figure", (path, alt text)) or ("pre", text). Markdown and HTML render the same blocks.
ReportBlock = tuple[str, Any]


def _intro(report: dict[str, Any]) -> str:
    meta = report["meta"]
    return (
        f"Findings: {', '.join(meta['findings'])}. Training site: {meta.get('train_site')}; "
        f"train {meta['n_train']} / val {meta['n_val']} scans; test sets: "
        + ", ".join(f"{k} {v} scans" for k, v in meta["test_sets"].items())
        + f". Bootstrap: {meta['config']['n_boot']} resamples"
        + (" of patients" if meta.get("patients_resampled") else " of scans")
        + f" (readout: {meta['config'].get('feature')}). Model selection used the validation split only. A "
        "linear or kNN probe on all training labels is deterministic, so it runs with one seed."
    )


def verdict(report: dict[str, Any]) -> list[str]:
    """One sentence per (other model, test set): the first model minus it, at each label setting, with the
    95 % CI and whether it excludes 0 — computed from ``report["comparisons"]``, never written by hand."""
    names = list(report["meta"].get("models") or [])
    comps = [c for c in report.get("comparisons", []) if c["metric"] == "auroc"]
    if not names or not comps:
        return []
    ref, out = names[0], []
    for other in names[1:]:
        for tname in report["meta"]["test_sets"]:
            parts = []
            for c in comps:
                if c["test_set"] != tname or {c["a"], c["b"]} != {ref, other}:
                    continue
                sign = 1.0 if c["a"] == ref else -1.0
                v, (lo, hi) = sign * c["value"], sorted(sign * x for x in c["ci"])
                word = f"{ref} better" if lo > 0 else (f"{other} better" if hi < 0 else "not resolved")
                parts.append(
                    f"labels {c['setting']} ({c['method']}): {v:+.3f} [{lo:+.3f}, {hi:+.3f}], {word}"
                )
            if parts:
                out.append(f"{ref} − {other}, {tname} test: " + "; ".join(parts))
    return out


def provenance_lines(meta: dict[str, Any]) -> list[str]:
    prov = meta.get("provenance") or {}
    if not prov:
        return []
    stores = ", ".join(f"{k} (manifest sha256 {v})" for k, v in (prov.get("stores") or {}).items()) or "none"
    return [
        f"fmct {prov.get('fmct_version')}, git commit {prov.get('git_commit') or 'unknown'}, {prov.get('date')}",
        f"labels sha256 {prov.get('labels_sha256') or 'n/a'}; stores: {stores}",
    ]


def report_blocks(report: dict[str, Any]) -> list[ReportBlock]:
    """Every block of the report, in order (the one source of ``report.md`` and ``report.html``)."""
    meta = report["meta"]
    blocks: list[ReportBlock] = [("h1", "fmct evaluation report"), ("p", _intro(report))]
    lines = verdict(report)
    if lines:
        blocks += [
            ("h2", "Verdict (paired differences of macro AUROC; CI excluding 0 = resolved)"),
            ("ul", lines),
        ]
    if meta.get("summary_plot"):
        blocks += [
            ("h2", "Macro AUROC by label fraction"),
            ("figure", (meta["summary_plot"], "macro AUROC vs labels")),
        ]
    for title, header, rows in markdown_sections(report):
        blocks += [("h2", title), ("table", (header, rows))]
    for key, p in (report.get("plots") or {}).items():
        blocks += [("h3", f"Plots: {key}"), ("figure", (p["curves"], f"ROC and PR curves of {key}")),
                   ("figure", (p["reliability"], f"reliability diagram of {key}"))]  # fmt: skip
    if report.get("retrieval"):
        from fmct.evaluate.retrieval_eval import retrieval_table

        blocks.append(("h2", "Retrieval mAP (leave-one-out within each test set; chance ≈ prevalence)"))
        try:
            blocks.append(("table", retrieval_table(report["retrieval"], meta["findings"])))
        except (AttributeError, KeyError, TypeError):  # a user hook with its own structure
            blocks.append(("pre", json.dumps(report["retrieval"], indent=1)[:4000]))

    blocks += saliency_blocks(report.get("saliency"))
    prov = provenance_lines(meta)
    if prov:
        blocks += [("h2", "Provenance"), ("ul", prov)]
    return blocks


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: :func:`report_blocks` rendered (plots as image links)."""
    lines: list[str] = []
    for kind, x in report_blocks(report):
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + x, ""]
        elif kind == "p":
            lines += [x, ""]
        elif kind == "ul":
            lines += [f"- {item}" for item in x] + [""]
        elif kind == "table":
            lines += [*_table(*x), ""]
        elif kind == "figure":
            lines += [f"![{x[1]}]({x[0]})", ""]
        elif kind == "pre":
            lines += ["```json", x, "```", ""]
    return "\n".join(lines)


def to_html(report: dict[str, Any]) -> str:
    """The same blocks as :func:`to_markdown`, as a self-contained HTML page (plots as relative images)."""
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>fmct evaluation report</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;"
        "margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left}"
        "th{background:#f3f3f3}img{max-width:100%;margin:0.5em 0}</style></head><body>",
    ]
    for kind, x in report_blocks(report):
        if kind in ("h1", "h2", "h3", "p"):
            parts.append(f"<{kind}>{e(x)}</{kind}>")
        elif kind == "ul":
            parts.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in x) + "</ul>")
        elif kind == "table":
            header, rows = x
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
            for r in rows:
                parts.append("<tr>" + "".join(f"<td>{e(c.replace('**', ''))}</td>" for c in r) + "</tr>")
            parts.append("</table>")
        elif kind == "figure":
            parts.append(f"<img src='{e(x[0])}' alt='{e(x[1])}'>")
        elif kind == "pre":
            parts.append(f"<pre>{e(x)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.json, report.md and report.html atomically; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clean = _clean(report)
    paths = {"json": out / "report.json", "md": out / "report.md", "html": out / "report.html"}
    _atomic_write(paths["json"], json.dumps(clean, indent=1))
    _atomic_write(paths["md"], to_markdown(clean))
    _atomic_write(paths["html"], to_html(clean))
    return paths
