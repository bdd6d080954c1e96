"""`fmct predict`: finding probabilities (and optional saliency maps) for scans, one at a time or in batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from fmct.commands._common import device_option


def predict(
    inputs: list[str] = typer.Argument(
        ...,
        metavar="INPUT...",
        help="DICOM folders, NIfTI files, or STORE::scan_id (a scan of an ingest store). With --batch: "
        "folders of series / NIfTI files, stores, or list files (one input per line).",
    ),
    model: Path = typer.Option(
        ..., "--model", "-m", help="Classifier model directory (config.json + safetensors)."
    ),
    out: Path = typer.Option(
        Path("result.json"),
        "--out",
        "-o",
        help="Result JSON file. A .csv name, or --batch, also writes the table (one row per series) as "
        "CSV: both files share the name, with .json and .csv.",
    ),
    saliency: Path | None = typer.Option(
        None,
        "--saliency",
        help="Write saliency maps here (a folder per scan): a PNG montage and a 4D NIfTI per positive "
        "finding.",
    ),
    findings: str | None = typer.Option(
        None,
        "--findings",
        help="Comma-separated findings to explain with --saliency (default: the positive ones).",
    ),
    positive_at: float = typer.Option(
        0.5, "--positive-at", help="Probability from which a finding is positive."
    ),
    masks: Path | None = typer.Option(
        None,
        "--masks",
        help="Folder of lesion masks <scan_id>.nii.gz (fmct synth --masks) to outline and score.",
    ),
    methods: str = typer.Option(
        "attention,grad_rollout,grad_x_input", "--methods", help="Comma-separated saliency methods."
    ),
    series: str = typer.Option(
        "error",
        "--series",
        help="A folder with several usable CT series: error (default; the error lists them and their "
        "folders) or thinnest (use the one with the thinnest slices; noted in the warnings).",
    ),
    dicom_out: Path | None = typer.Option(
        None,
        "--dicom-out",
        help="DICOM inputs only: write DIR/<scan_id>/sr.dcm (findings as a DICOM SR) and, with --saliency, "
        "seg.dcm (positive findings' saliency as a fractional DICOM SEG) for the PACS; these copy the "
        "patient and study of the source series (the one output with patient identifiers).",
    ),
    hash_sources: bool = typer.Option(
        False,
        "--hash-sources",
        help="Name inputs in result.json and on the console by a salted hash instead of their own "
        "file/folder name (the salt is kept in .salt beside the result file).",
    ),
    batch: bool = typer.Option(
        False,
        "--batch",
        help="Each INPUT is a batch: a folder whose every subfolder (a DICOM series or study) and NIfTI file "
        "is one scan, a store (its ok scans), or a text file listing one input per line (paths relative "
        "to the list's folder; # comments). One model load, progress, one CSV row per series; a series "
        "that fails gets a row saying why and the others go on; exit code 1 if any failed.",
    ),
    device: str = device_option(),
) -> None:
    """Predict findings for each INPUT with a classifier model directory.

    Each scan is read (DICOM series selection as in ingest), preprocessed in memory with the parameters
    recorded in the model directory and classified. result.json holds, per input, the probability of each
    finding, model name/version, the preprocessing used, timings (read / preprocess / model seconds) and
    warnings when the scan is outside what the model saw (thick slices, small field of view, coarse
    spacing). A scan that cannot be used gets an "error" entry; the others still run. Exit code 1 when
    every input failed (with --batch: when any failed). Inputs are named by their own file/folder name
    (never the path above it), or by a salted hash with --hash-sources; scans by pseudonymous ids.
    """
    from fmct.commands._common import load_classifier, resolve_device_option

    dev = resolve_device_option(device)
    clf = load_classifier(model, "predict", "fine-tune or probe it first")
    method_list, finding_list = _checked_options(clf, methods, findings, series)
    salt = None
    if hash_sources:
        from fmct.io.sources import store_salt

        salt = store_salt(out.parent)
    specs = _expand_batches(inputs, salt) if batch else list(inputs)
    thresholds = _checked_dicom_out(clf, model, specs, dicom_out, salt)
    results = _predict_with_progress(
        clf,
        specs,
        dict(
            saliency_dir=saliency,
            saliency_findings=finding_list,
            methods=method_list,
            series=series,
            positive_at=thresholds or positive_at,  # --dicom-out: the model's operating thresholds
            mask_dir=masks,
        ),
        salt,
        dev,
    )
    if dicom_out is not None:
        _write_dicom_with_progress(clf, specs, results, dicom_out, thresholds, salt)
    json_path, csv_path = _result_paths(out, batch)
    _write_results(clf, model, results, json_path, csv_path)
    if batch:
        _report_batch(results, json_path, csv_path)
    else:
        _print_table(results, json_path)
        if all(r.get("status") != "ok" for r in results):
            raise typer.Exit(1)


def _checked_options(
    clf: Any, methods: str, findings: str | None, series: str
) -> tuple[list[str], list[str] | None]:
    """``(saliency methods, findings to explain or None for all)``; exit 2 for an unknown method, an unknown
    finding or a ``--series`` other than error / thinnest."""
    from fmct.commands._common import usage
    from fmct.infer.saliency import METHODS

    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    bad = sorted(set(method_list) - set(METHODS))
    if bad:
        usage(f"unknown saliency methods {bad}; choose from {list(METHODS)}")
    if series not in ("error", "thinnest"):
        usage(f"--series must be error or thinnest, got {series!r}")
    finding_list = [f.strip() for f in findings.split(",") if f.strip()] if findings else None
    bad = sorted(set(finding_list or []) - set(clf.labels))
    if bad:
        usage(f"unknown findings {bad}; the model predicts {list(clf.labels)}")
    return method_list, finding_list


def _checked_dicom_out(
    clf: Any, model: Path, specs: list[str], dicom_out: Path | None, salt: str | None
) -> dict[str, float] | None:
    """The model's operating thresholds for ``--dicom-out`` (None: 0.5 each); exit 2 before any work when
    the inputs cannot give DICOM objects (NIfTI or store scans) or a threshold is outside [0, 1]."""
    if dicom_out is None:
        return None
    from fmct.commands._common import usage
    from fmct.infer.dicom_out import dicom_out_problem
    from fmct.models.hub import read_config

    thresholds = read_config(model).get("thresholds")
    if problem := dicom_out_problem(specs, clf, thresholds, salt):
        usage(problem)
    return thresholds


def _write_dicom_with_progress(
    clf: Any,
    specs: list[str],
    results: list[dict[str, Any]],
    dicom_out: Path,
    thresholds: dict[str, float] | None,
    salt: str | None,
) -> None:
    """:func:`fmct.infer.dicom_out.write_dicom_outputs` (SR, and SEG with saliency) with progress."""
    import sys

    from fmct.infer.dicom_out import write_dicom_outputs
    from fmct.progress import progress

    def cols() -> list[Any]:
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

        return [TextColumn("dicom"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]

    with progress(cols, enabled=len(specs) > 1, stream=sys.stderr) as bar:
        task = bar.add_task("dicom", total=len(results))
        write_dicom_outputs(clf, specs, results, dicom_out, thresholds, lambda _: bar.advance(task), salt)


def _expand_batches(inputs: list[str], salt: str | None) -> list[str]:
    """Every input of the ``--batch`` INPUTs, in order; exit 2 naming (by its own name or salted hash) a
    batch that is missing or holds nothing to predict."""
    from fmct.commands._common import usage
    from fmct.infer.batch import BatchInputError, batch_inputs
    from fmct.infer.predict import input_name

    specs: list[str] = []
    for spec in inputs:
        try:
            specs += batch_inputs(spec, name=input_name(spec, salt))
        except BatchInputError as e:
            usage(f"--batch {e}")
    return specs


def _predict_with_progress(
    clf: Any, specs: list[str], options: dict[str, Any], salt: str | None, device: Any
) -> list[dict[str, Any]]:
    """:func:`fmct.infer.predict.predict_paths` with a progress bar on a terminal, progress lines in a log."""
    import sys

    from fmct.infer.predict import predict_paths
    from fmct.progress import progress

    def cols() -> list[Any]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        return [
            TextColumn("predict"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]

    failed = 0
    show = len(specs) > 1  # one scan: no progress line
    with progress(cols, fields=lambda f: f"{f['failed']} failed", enabled=show, stream=sys.stderr) as bar:
        task = bar.add_task("predict", total=len(specs), failed=0)

        def done(entry: dict[str, Any]) -> None:
            nonlocal failed
            failed += entry.get("status") != "ok"
            bar.update(task, advance=1, failed=failed)

        return predict_paths(clf, specs, on_done=done, salt=salt, device=device, **options)


def _result_paths(out: Path, batch: bool) -> tuple[Path, Path | None]:
    """``(JSON path, CSV path or None)``: a ``.csv`` ``--out`` or ``--batch`` gives both, with one name."""
    if out.suffix.lower() == ".csv":
        return out.with_suffix(".json"), out
    return out, (out.with_suffix(".csv") if batch else None)


def _write_results(
    clf: Any, model: Path, results: list[dict[str, Any]], json_path: Path, csv_path: Path | None
) -> None:
    """Write result.json (model, preprocessing, labels, one entry per input) and the CSV table, atomically."""
    import json

    from fmct.atomic import write_text_atomic
    from fmct.infer.batch import results_csv
    from fmct.infer.predict import model_info, model_preprocessing

    doc = {
        "model": {**model_info(clf), "dir": str(model)},
        "preprocessing": model_preprocessing(clf),
        "labels": list(clf.labels),
        "results": results,
    }
    write_text_atomic(json_path, json.dumps(doc, indent=2))
    if csv_path is not None:
        write_text_atomic(csv_path, results_csv(results, list(clf.labels)))


def _print_table(results: list[dict[str, Any]], out: Path) -> None:
    """One console row per input: its name, status, top-3 findings (or the error) and warning count."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"fmct predict -> {out}")
    for col in ("input", "status", "top findings", "warnings"):
        table.add_column(col)
    for r in results:
        if r.get("status") == "ok":
            top = sorted(r["probabilities"].items(), key=lambda kv: -kv[1])[:3]
            table.add_row(
                r["input"], "ok", ", ".join(f"{k} {v:.2f}" for k, v in top), str(len(r["warnings"]))
            )
        else:
            table.add_row(r["input"], r.get("status", "failed"), r.get("error", ""), "")
    Console().print(table)


def _report_batch(results: list[dict[str, Any]], json_path: Path, csv_path: Path | None) -> None:
    """The batch's summary line (and the first failures, each with its reason); exit 1 if any failed."""
    from fmct.commands._common import fail
    from fmct.infer.batch import failure_summary

    n_ok = sum(r.get("status") == "ok" for r in results)
    typer.echo(f"predicted {n_ok} of {len(results)} series -> {csv_path}, {json_path}")
    summary = failure_summary(results)
    if summary is None:
        return
    bad = [r for r in results if r.get("status") != "ok"]
    for r in bad[:10]:
        typer.echo(f"  {r.get('input')}: {r.get('status')}: {r.get('error')}", err=True)
    if len(bad) > 10:
        typer.echo(f"  ... and {len(bad) - 10} more", err=True)
    fail(f"{summary}; each has a row saying why in {csv_path}")
