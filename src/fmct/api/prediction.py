"""``fmct.predict``: finding probabilities (and saliency maps) for scans (``fmct predict``), as a DataFrame."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmct.api.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd


def load_classifier(model: Any) -> Any:
    """A loaded ClassifierModel as given, or loaded from a directory / Hub repo id.

    Raises:
        FileNotFoundError / ValueError: see :func:`fmct.load_model`.  UsageError: a backbone without a head.
    """
    from fmct.infer.predict import resolve_model

    clf = resolve_model(model)
    if not hasattr(clf, "labels"):
        raise UsageError(f"{model} is a backbone without a classifier head; fine-tune or probe it first")
    return clf


def _check_options(clf: Any, methods: Sequence[str], findings: Sequence[str] | None, series: str) -> None:
    from fmct.infer.saliency import METHODS

    bad = sorted(set(methods) - set(METHODS))
    if bad:
        raise UsageError(f"unknown saliency methods {bad}; choose from {list(METHODS)}")
    if series not in ("error", "thinnest"):
        raise UsageError(f"series must be error or thinnest, got {series!r}")
    bad = sorted(set(findings or []) - set(clf.labels))
    if bad:
        raise UsageError(f"unknown findings {bad}; the model predicts {list(clf.labels)}")


def results_frame(results: list[dict[str, Any]], labels: Sequence[str]) -> pd.DataFrame:
    """One row per input: ``input``, ``scan_id``, ``status``, one probability column per finding (NaN when
    the input failed), ``warnings`` (list) and ``error`` (None when it worked)."""
    import pandas as pd

    rows = []
    for r in results:
        probs = r.get("probabilities") or {}
        rows.append(
            {
                "input": r.get("input"),
                "scan_id": r.get("scan_id"),
                "status": r.get("status", "failed"),
                **{f: probs.get(f, float("nan")) for f in labels},
                "warnings": list(r.get("warnings") or []),
                "error": r.get("error"),
            }
        )
    columns = ["input", "scan_id", "status", *labels, "warnings", "error"]
    return pd.DataFrame(rows, columns=columns)


def write_result_json(doc: dict[str, Any], out: Path) -> Path:
    """Write the result document atomically (a temporary file in the same folder, then ``os.replace``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, out)
    return out


def _bar(total: int, progress: bool | Callable[[dict[str, Any]], None]) -> Any:
    """``(context manager, on_done)`` for a rich progress bar on stderr, a caller's callback, or nothing."""
    import contextlib

    if callable(progress):
        return contextlib.nullcontext(), progress
    if not progress:
        return contextlib.nullcontext(), None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("predict"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("predict", total=total)
    return bar, lambda _entry: bar.advance(task)


def predict(
    model: Any,
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    out: str | Path | None = None,
    saliency: str | Path | None = None,
    findings: Sequence[str] | None = None,
    methods: Sequence[str] = ("attention", "grad_rollout", "grad_x_input"),
    series: str = "error",
    hash_sources: bool = False,
    progress: bool | Callable[[dict[str, Any]], None] = True,
) -> pd.DataFrame:
    """Predict findings for each input with a classifier, preprocessing each scan as the model was trained.

    Args:
        model: a classifier directory, a Hugging Face Hub repo id, or a loaded ``ClassifierModel``.
        inputs: DICOM folders, NIfTI files or ``STORE::scan_id`` (one, or a list).
        out: also write the result document ``fmct predict`` writes (result.json) here.
        saliency: write saliency maps here (PNG montages + NIfTI heat maps on the source grid), for
            ``findings`` (default: all) with ``methods``.
        series: a folder with several usable CT series: ``"error"`` or ``"thinnest"``.
        hash_sources: name inputs by a salted hash (the salt is kept in ``.salt`` beside ``out``; needs ``out``).
        progress: a progress bar (True), a callback receiving each input's entry, or nothing (False).

    Returns:
        A DataFrame with one row per input (:func:`results_frame`); ``df.attrs`` holds ``model`` (name,
        version), ``preprocessing``, ``labels`` and ``results`` (the full entries: timings, saliency files).
        An input that cannot be used gets status failed/skipped and its ``error``; the others still run.

    Raises:
        FileNotFoundError / ValueError: the model cannot be loaded.  UsageError: a backbone without a head,
        unknown findings or methods, hash_sources without out.
    """
    from fmct.infer.predict import model_info, model_preprocessing, predict_paths

    clf = load_classifier(model)
    specs = [str(inputs)] if isinstance(inputs, str | os.PathLike) else [str(i) for i in inputs]
    methods = list(methods)
    _check_options(clf, methods, findings, series)
    salt = None
    if hash_sources:
        if out is None:
            raise UsageError("hash_sources needs out (the salt is kept beside the result file)")
        from fmct.io.sources import store_salt

        salt = store_salt(Path(out).parent)
    bar, on_done = _bar(len(specs), progress)
    with bar:
        results = predict_paths(
            clf,
            specs,
            saliency_dir=saliency,
            saliency_findings=list(findings or []) or None,
            methods=methods,
            on_done=on_done,
            series=series,
            salt=salt,
        )
    doc = {
        "model": {**model_info(clf), **({"dir": str(model)} if isinstance(model, str | Path) else {})},
        "preprocessing": model_preprocessing(clf),
        "labels": list(clf.labels),
        "results": results,
    }
    if out is not None:
        write_result_json(doc, Path(out))
    df = results_frame(results, clf.labels)
    df.attrs.update({k: doc[k] for k in ("model", "preprocessing", "labels", "results")})
    return df
