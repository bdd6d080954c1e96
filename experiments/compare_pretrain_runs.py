"""Config A vs config B: which pretraining gives better frozen features, seeds averaged on both sides.

``pretrain_evidence.py`` compares one config's pretrained runs with random initialisations. This compares
the pretrained runs of two of its work folders (``--work`` of two ``pretrain_evidence.py`` calls on the
same held-out store): the embeddings ``WORK/emb_pretrained*.parquet`` they left are probed the same way
(the protocol's kNN and linear probes cross-fitted, 5 folds by patient, on ``--feature``:
:func:`fmct.evaluate.crossfit.cross_fit`), and the mean macro AUROC over A's runs minus the mean over B's gets
one paired bootstrap 95 % CI over patients (:func:`fmct.evaluate.bootstrap.mean_difference`). Result files
without a ``probe_protocol`` key were made with the former probes (fixed k = 10 and C = 0.05).

Usage::

    python experiments/compare_pretrain_runs.py WORK_A WORK_B --labels ev/labels.csv [--feature brain_max]

Prints the table and writes ``experiments/results/compare_pretrain_runs[_TAG].json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent


def pretrained_embeddings(work: Path) -> list[Path]:
    """``WORK/emb_pretrained.parquet``, ``emb_pretrained1.parquet``, ... in seed order."""
    found = sorted(work.glob("emb_pretrained*.parquet"), key=lambda p: (len(p.stem), p.stem))
    if not found:
        raise SystemExit(
            f"error: {work}: no emb_pretrained*.parquet (run pretrain_evidence.py --work {work})"
        )
    return found


def main(argv: list[str] | None = None) -> int:
    from fmct.evaluate.bootstrap import mean_difference
    from fmct.evaluate.crossfit import cross_fit
    from fmct.evaluate.embed import load_embeddings
    from fmct.labels import FINDINGS
    from fmct.labels.table import read_labels

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work_a", type=Path)
    ap.add_argument("work_b", type=Path)
    ap.add_argument("--labels", type=Path, required=True, help="labels.csv of the held-out store")
    ap.add_argument("--site", default="a")
    ap.add_argument("--feature", default="brain_max")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)

    lab = read_labels(args.labels)
    sides = {"a": pretrained_embeddings(args.work_a), "b": pretrained_embeddings(args.work_b)}
    embs = {s: [load_embeddings(p, with_patch=False) for p in paths] for s, paths in sides.items()}
    common = set.intersection(*(set(e.scan_ids) for es in embs.values() for e in es))
    rows = lab[(lab["site"] == args.site) & lab["scan_id"].isin(common)].sort_values("scan_id")
    if len(rows) < 20:
        raise SystemExit(f"error: only {len(rows)} site-{args.site} scans are embedded in both folders")
    fits = {s: [cross_fit(e, rows, args.feature, FINDINGS) for e in es] for s, es in embs.items()}
    y, groups = fits["a"][0].labels, fits["a"][0].groups
    res: dict = {"a": str(args.work_a), "b": str(args.work_b), "feature": args.feature, "n_scans": len(rows),
                 "probe_protocol": "cross-fitted (fmct.evaluate.crossfit), 5 folds by patient"}  # fmt: skip
    print(f"{len(rows)} site-{args.site} scans; feature {args.feature}; A = {args.work_a}, B = {args.work_b}")
    for kind in ("knn", "linear"):
        scores = {s: [f.scores[kind] for f in side] for s, side in fits.items()}
        d = mean_difference(y, scores["a"], scores["b"], FINDINGS, groups, args.n_boot)
        macro = d["macro"]
        res[kind] = {"a_minus_b": round(macro["value"], 3), "ci": [round(c, 3) for c in macro["ci"]],
                     "runs": {s: len(v) for s, v in scores.items()}}  # fmt: skip
        lo, hi = macro["ci"]
        print(f"  {kind:6s} mean of {len(scores['a'])} A - mean of {len(scores['b'])} B: "
              f"{macro['value']:+.3f} [{lo:+.3f}, {hi:+.3f}]")  # fmt: skip
    out = HERE / "results" / f"compare_pretrain_runs{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
