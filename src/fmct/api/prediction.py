"""``fmct.predict``: finding probabilities (and saliency maps, DICOM objects) for scans (``fmct predict``), as a
DataFrame. The command calls :func:`predict` and only parses options and prints."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmct.api.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

#: What a folder holding several usable CT series gives: an error listing them, or the thinnest one.
SERIES_CHOICES = ("error", "thinnest")

Progress = bool | Callable[[dict[str, Any]], None]


def load_classifier(model: Any, hint: str = "fine-tune or probe it first") -> Any:
    """A loaded ClassifierModel as given, or loaded from a directory / Hub repo id.

    Raises:
        FileNotFoundError: no such model (``"cannot load model M: ..."``).  UsageError: a model that cannot be
            loaded (pickle weights, an invalid directory), or a backbone without a head (``hint`` says what to do).
    """
    from fmct.infer.predict import resolve_model

    try:
        clf = resolve_model(model)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"cannot load model {model}: {e}") from None
    except ValueError as e:
        raise UsageError(f"cannot load model {model}: {e}") from None
    if not hasattr(clf, "labels"):
        raise UsageError(f"{model} is a backbone without a classifier head; {hint}")
    return clf


def _check_options(clf: Any, methods: Sequence[str], findings: Sequence[str] | None, series: str) -> None:
    from fmct.infer.saliency import METHODS

    bad = sorted(set(methods) - set(METHODS))
    if bad:
        raise UsageError(f"unknown saliency methods {bad}; choose from {list(METHODS)}")
    if series not in SERIES_CHOICES:
        raise UsageError(f"series must be error or thinnest, got {series!r}", param="series")
    bad = sorted(set(findings or []) - set(clf.labels))
    if bad:
        raise UsageError(f"unknown findings {bad}; the model predicts {list(clf.labels)}")


def expand_batches(inputs: Sequence[str], salt: str | None = None) -> list[str]:
    """Every input of the batch inputs (folders of series, stores, list files: :mod:`fmct.infer.batch`), in
    order. Raises UsageError naming (by its own name or salted hash) a batch that is missing or holds nothing."""
    from fmct.infer.batch import BatchInputError, batch_inputs
    from fmct.infer.predict import input_name

    specs: list[str] = []
    for spec in inputs:
        try:
            specs += batch_inputs(spec, name=input_name(spec, salt))
        except BatchInputError as e:
            raise UsageError(f"batch {e}", param="batch") from None
    return specs


def _dicom_thresholds(
    clf: Any, model: Any, specs: list[str], dicom_out: Any, salt: str | None
) -> dict[str, float] | None:
    """The operating thresholds of a model directory's config.json for ``dicom_out`` (None: the model's own,
    else 0.5 each); UsageError before any work when the inputs cannot give DICOM objects (NIfTI or store
    scans) or a threshold is outside [0, 1]."""
    if dicom_out is None:
        return None
    from fmct.infer.dicom_out import dicom_out_problem
    from fmct.models.hub import read_config

    local = isinstance(model, str | os.PathLike) and Path(model).is_dir()
    thresholds = read_config(model).get("thresholds") if local else None
    if problem := dicom_out_problem(specs, clf, thresholds, salt):
        raise UsageError(problem)
    return thresholds


@contextlib.contextmanager
def _progress(what: str, total: int, progress: Progress, count_failed: bool) -> Iterator[Any]:
    """The callback each finished entry goes to: the caller's, none, or one advancing a progress bar on stderr
    (rich on a terminal, plain lines in a log; nothing drawn for a single input) with the failures so far."""
    if callable(progress) or not progress:
        yield progress or None
        return
    from fmct.progress import progress as make_bar

    def cols() -> list[Any]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        middle = [TextColumn("{task.fields[failed]} failed")] if count_failed else []
        tail = [TimeRemainingColumn()] if count_failed else []
        return [TextColumn(what), BarColumn(), MofNCompleteColumn(), *middle, TimeElapsedColumn(), *tail]

    fields = (lambda f: f"{f['failed']} failed") if count_failed else None
    failed = 0
    with make_bar(cols, fields=fields, enabled=total > 1, stream=sys.stderr) as bar:
        task = bar.add_task(what, total=total, failed=0)

        def done(entry: dict[str, Any]) -> None:
            nonlocal failed
            failed += entry.get("status") != "ok"
            bar.update(task, advance=1, failed=failed)

        yield done


def result_paths(out: str | os.PathLike, batch: bool) -> tuple[Path, Path | None]:
    """``(JSON path, CSV path or None)``: a ``.csv`` ``out``, or a batch, gives both, with one name."""
    out = Path(out)
    if out.suffix.lower() == ".csv":
        return out.with_suffix(".json"), out
    return out, (out.with_suffix(".csv") if batch else None)


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


def _write_results(doc: dict[str, Any], json_path: Path, csv_path: Path | None) -> None:
    """result.json (model, preprocessing, labels, one entry per input) and the CSV table, each atomically."""
    import json

    from fmct.atomic import write_text_atomic
    from fmct.infer.batch import results_csv

    write_text_atomic(json_path, json.dumps(doc, indent=2))
    if csv_path is not None:
        write_text_atomic(csv_path, results_csv(doc["results"], doc["labels"]))


def predict(
    model: Any,
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    out: str | Path | None = None,
    saliency: str | Path | None = None,
    findings: Sequence[str] | None = None,
    methods: Sequence[str] = ("attention", "grad_rollout", "grad_x_input"),
    series: str = "error",
    batch: bool = False,
    hash_sources: bool = False,
    positive_at: float = 0.5,
    masks: str | Path | None = None,
    dicom_out: str | Path | None = None,
    device: Any = None,
    progress: Progress = True,
) -> pd.DataFrame:
    """Predict findings for each input with a classifier, preprocessing each scan as the model was trained.

    Args:
        model: a classifier directory, a Hugging Face Hub repo id, or a loaded ``ClassifierModel``.
        inputs: DICOM folders, NIfTI files or ``STORE::scan_id`` (one, or a list).
        out: also write the result document ``fmct predict`` writes (result.json) here; a ``.csv`` name (or
            ``batch``) also writes the table, one row per input: both files share the name (.json, .csv).
        saliency: write saliency maps here (PNG montages + NIfTI heat maps on the source grid), for
            ``findings`` (default: the positive ones) with ``methods``.
        series: a folder with several usable CT series: ``"error"`` or ``"thinnest"``.
        batch: each input is a batch: a folder whose every subfolder and NIfTI file is one scan, a store (its
            ok scans) or a list file (one input per line); see :mod:`fmct.infer.batch`.
        hash_sources: name inputs by a salted hash (the salt is kept in ``.salt`` beside ``out``; needs ``out``).
        positive_at: the probability from which a finding is positive (explained by default).
        masks: a folder of lesion masks ``<scan_id>.nii.gz`` (``fmct synth --masks``) to outline and score.
        dicom_out: DICOM inputs only: write ``DIR/<scan_id>/sr.dcm`` (a DICOM SR) and, with ``saliency``,
            ``seg.dcm``; findings are positive at the model's operating thresholds (its config.json).
        device: where the model runs (``"auto"``, ``"cpu"``, ``"cuda[:N]"``); None: where the model is.
        progress: a progress bar on stderr for several inputs (True), a callback receiving each input's
            entry, or nothing (False).

    Returns:
        A DataFrame with one row per input (:func:`results_frame`); ``df.attrs`` holds ``model`` (name,
        version), ``preprocessing``, ``labels``, ``results`` (the full entries: timings, saliency files,
        DICOM objects) and ``files`` (the JSON and CSV paths written, or None).
        An input that cannot be used gets status failed/skipped and its ``error``; the others still run.

    Raises:
        FileNotFoundError / UsageError: the model cannot be loaded, or is a backbone without a head.
        UsageError: unknown findings, methods or series, hash_sources without out, a missing or empty batch,
            inputs that cannot give DICOM objects.
    """
    from fmct.infer.predict import model_info, model_preprocessing, predict_paths

    clf = load_classifier(model)
    raw = [inputs] if isinstance(inputs, str | os.PathLike) else list(inputs)
    methods, findings = list(methods), (list(findings or []) or None)
    _check_options(clf, methods, findings, series)
    salt = None
    if hash_sources:
        if out is None:
            raise UsageError("hash_sources needs out (the salt is kept beside the result file)")
        from fmct.io.sources import store_salt

        salt = store_salt(Path(out).parent)
    specs = expand_batches([str(i) for i in raw], salt) if batch else [str(i) for i in raw]
    thresholds = _dicom_thresholds(clf, model, specs, dicom_out, salt)
    options = dict(saliency_dir=saliency, saliency_findings=findings, methods=methods, series=series,
                   positive_at=thresholds or positive_at, mask_dir=masks)  # fmt: skip
    with _progress("predict", len(specs), progress, count_failed=True) as on_done:
        results = predict_paths(clf, specs, on_done=on_done, salt=salt, device=device, **options)
    if dicom_out is not None:
        from fmct.infer.dicom_out import write_dicom_outputs

        with _progress("dicom", len(specs), progress, count_failed=False) as on_done:
            write_dicom_outputs(clf, specs, results, dicom_out, thresholds, on_done, salt)
    doc = {
        "model": {**model_info(clf), **({"dir": str(model)} if isinstance(model, str | os.PathLike) else {})},
        "preprocessing": model_preprocessing(clf),
        "labels": list(clf.labels),
        "results": results,
    }
    files = result_paths(out, batch) if out is not None else (None, None)
    if out is not None:
        _write_results(doc, *files)
    df = results_frame(results, clf.labels)
    df.attrs.update({**doc, "files": files})
    return df
