"""`fmct predict`: finding probabilities (and optional saliency maps) for scans, one at a time or in batches.

The work is :func:`fmct.api.predict`; this module parses the options and prints the results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from fmct.commands._common import device_option

# The options, one per name (kept out of the signature so that the command reads as what it does).
INPUTS_OPTION = typer.Argument(
    ...,
    metavar="INPUT...",
    help="DICOM folders, NIfTI files, or STORE::scan_id (a scan of an ingest store). With --batch: "
    "folders of series / NIfTI files, stores, or list files (one input per line).",
)
MODEL_OPTION = typer.Option(
    ..., "--model", "-m", help="Classifier model directory (config.json + safetensors)."
)
OUT_OPTION = typer.Option(
    Path("result.json"),
    "--out",
    "-o",
    help="Result JSON file. A .csv name, or --batch, also writes the table (one row per series) as "
    "CSV: both files share the name, with .json and .csv.",
)
SALIENCY_OPTION = typer.Option(
    None,
    "--saliency",
    help="Write saliency maps here (a folder per scan): a PNG montage and a 4D NIfTI per positive finding.",
)
FINDINGS_OPTION = typer.Option(
    None,
    "--findings",
    help="Comma-separated findings to explain with --saliency (default: the positive ones).",
)
POSITIVE_AT_OPTION = typer.Option(0.5, "--positive-at", help="Probability from which a finding is positive.")
MASKS_OPTION = typer.Option(
    None, "--masks", help="Folder of lesion masks <scan_id>.nii.gz (fmct synth --masks) to outline and score."
)
SALIENCY_METHODS_OPTION = typer.Option(
    "attention,grad_rollout,grad_x_input", "--methods", help="Comma-separated saliency methods."
)
SERIES_OPTION = typer.Option(
    "error",
    "--series",
    help="A folder with several usable CT series: error (default; the error lists them and their "
    "folders) or thinnest (use the one with the thinnest slices; noted in the warnings).",
)
DICOM_OUT_OPTION = typer.Option(
    None,
    "--dicom-out",
    help="DICOM inputs only: write DIR/<scan_id>/sr.dcm (findings as a DICOM SR) and, with --saliency, "
    "seg.dcm (positive findings' saliency as a fractional DICOM SEG) for the PACS; these copy the "
    "patient and study of the source series (the one output with patient identifiers).",
)
HASH_SOURCES_OPTION = typer.Option(
    False,
    "--hash-sources",
    help="Name inputs in result.json and on the console by a salted hash instead of their own "
    "file/folder name (the salt is kept in .salt beside the result file).",
)
BATCH_OPTION = typer.Option(
    False,
    "--batch",
    help="Each INPUT is a batch: a folder whose every subfolder (a DICOM series or study) and NIfTI file "
    "is one scan, a store (its ok scans), or a text file listing one input per line (paths relative "
    "to the list's folder; # comments). One model load, progress, one CSV row per series; a series "
    "that fails gets a row saying why and the others go on; exit code 1 if any failed.",
)


def predict(
    inputs: list[str] = INPUTS_OPTION,
    model: Path = MODEL_OPTION,
    out: Path = OUT_OPTION,
    saliency: Path | None = SALIENCY_OPTION,
    findings: str | None = FINDINGS_OPTION,
    positive_at: float = POSITIVE_AT_OPTION,
    masks: Path | None = MASKS_OPTION,
    methods: str = SALIENCY_METHODS_OPTION,
    series: str = SERIES_OPTION,
    dicom_out: Path | None = DICOM_OUT_OPTION,
    hash_sources: bool = HASH_SOURCES_OPTION,
    batch: bool = BATCH_OPTION,
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
    from fmct.api import predict as run_predict
    from fmct.commands._common import parse_list, resolve_device_option, run_or_fail

    dev = resolve_device_option(device)  # first: a GPU asked for and missing is said before anything else
    df = run_or_fail(
        run_predict,
        model,
        inputs,
        out=out,
        saliency=saliency,
        findings=parse_list(findings, str, "--findings") or None,
        methods=parse_list(methods, str, "--methods"),
        series=series,
        batch=batch,
        hash_sources=hash_sources,
        positive_at=positive_at,
        masks=masks,
        dicom_out=dicom_out,
        device=dev,
    )
    results, (json_path, csv_path) = df.attrs["results"], df.attrs["files"]
    if batch:
        _report_batch(results, json_path, csv_path)
    else:
        _print_table(results, json_path)
        if all(r.get("status") != "ok" for r in results):
            raise typer.Exit(1)


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
