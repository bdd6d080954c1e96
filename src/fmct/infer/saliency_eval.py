"""Which saliency map to trust: score every method against known lesion masks over a set of scans.

For each scan and each finding to score, ``fmct predict``'s own path runs (read, preprocess, classify, maps,
montage with the lesion outline) and every map is scored against the finding's mask
(:func:`fmct.infer.saliency_metrics.score_maps`); the cases are then summarised per method (pointing-game hit
rate with its 95 % CI, mean mass share) next to the chance levels of a map uniform over the head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fmct.infer.predict import predict_one
from fmct.infer.saliency_metrics import POINTING_TOL_MM, summarise_scores


def score_saliency(
    model: Any,
    scans: Sequence[tuple[str, Sequence[str]]],
    out_dir: str | Path,
    mask_dir: str | Path,
    methods: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write the maps of ``scans`` and score them against their masks.

    Args:
        model: a loaded classifier (``fmct.load_model``).
        scans: ``(input, findings)`` pairs: an input as ``fmct predict`` takes it (a DICOM folder, a NIfTI
            file, ``STORE::scan_id``) and the findings present in it (mapped whatever the model says).
        out_dir: the saliency folder (one sub-folder per scan, as ``fmct predict --saliency``).
        mask_dir: ``<scan_id>.nii.gz`` finding masks (``fmct synth --masks``).

    Returns:
        ``{"scans", "tol_mm", **summarise_scores(), "per_case": [{"scan_id", "finding", "png", "scores"}]}``;
        a scan that fails or has no mask is left out (and logged).
    """

    log = log or (lambda _m: None)
    cases: list[dict[str, Any]] = []
    for spec, findings in scans:
        entry = predict_one(model, spec, out_dir, list(findings), methods, mask_dir=mask_dir)
        if entry.get("status") != "ok" or "saliency" not in entry:
            log(f"saliency: {spec} left out ({entry.get('error') or '; '.join(entry.get('warnings', []))})")
            continue
        for finding, info in entry["saliency"]["findings"].items():
            if info.get("lesion") is None:
                log(f"saliency: {entry['scan_id']} has no {finding} voxels in its mask: not scored")
                continue
            cases.append(
                {
                    "scan_id": entry["scan_id"],
                    "finding": finding,
                    "png": info["png"],
                    "scores": info["lesion"],
                }
            )
    summary = summarise_scores([c["scores"] for c in cases])
    scans_scored = len({c["scan_id"] for c in cases})
    return {"scans": scans_scored, "tol_mm": POINTING_TOL_MM, **summary, "per_case": cases}
