"""`fmct predict`: finding probabilities (and optional saliency maps) for scans."""

from __future__ import annotations

from pathlib import Path

import typer


def predict(
    inputs: list[str] = typer.Argument(
        ...,
        metavar="INPUT...",
        help="DICOM folders, NIfTI files, or STORE::scan_id (a scan of an ingest store).",
    ),
    model: Path = typer.Option(
        ..., "--model", "-m", help="Classifier model directory (config.json + safetensors)."
    ),
    out: Path = typer.Option(Path("result.json"), "--out", "-o", help="Result JSON file."),
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
    hash_sources: bool = typer.Option(
        False,
        "--hash-sources",
        help="Name inputs in result.json and on the console by a salted hash instead of their own "
        "file/folder name (the salt is kept in .salt beside the result file).",
    ),
) -> None:
    """Predict findings for each INPUT with a classifier model directory.

    Each scan is read (DICOM series selection as in ingest), preprocessed in memory with the parameters
    recorded in the model directory and classified. result.json holds, per input, the probability of each
    finding, model name/version, the preprocessing used, timings (read / preprocess / model seconds) and
    warnings when the scan is outside what the model saw (thick slices, small field of view, coarse
    spacing). A scan that cannot be used gets an "error" entry; the others still run. Exit code 1 only when
    every input failed. Inputs are named by their own file/folder name (never the path above it), or by a
    salted hash with --hash-sources.
    """
    import json
    import os
    import tempfile

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from fmct.commands._common import load_classifier
    from fmct.fileperm import as_umask
    from fmct.infer.predict import model_info, model_preprocessing, predict_paths
    from fmct.infer.saliency import METHODS

    console = Console(stderr=True)
    clf = load_classifier(model, "predict", "fine-tune or probe it first")
    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    bad = sorted(set(method_list) - set(METHODS))
    if bad:
        typer.echo(f"fmct predict: unknown saliency methods {bad}; choose from {list(METHODS)}", err=True)
        raise typer.Exit(2)
    if series not in ("error", "thinnest"):
        typer.echo(f"fmct predict: --series must be error or thinnest, got {series!r}", err=True)
        raise typer.Exit(2)
    salt = None
    if hash_sources:
        from fmct.io.sources import store_salt

        salt = store_salt(out.parent)
    finding_list = [f.strip() for f in findings.split(",") if f.strip()] if findings else None
    bad = sorted(set(finding_list or []) - set(clf.labels))
    if bad:
        typer.echo(f"fmct predict: unknown findings {bad}; the model predicts {list(clf.labels)}", err=True)
        raise typer.Exit(2)

    with Progress(
        TextColumn("predict"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("predict", total=len(inputs))
        results = predict_paths(
            clf,
            inputs,
            saliency_dir=saliency,
            saliency_findings=finding_list,
            methods=method_list,
            on_done=lambda _e: progress.advance(task),
            series=series,
            salt=salt,
            positive_at=positive_at,
            mask_dir=masks,
        )

    doc = {
        "model": {**model_info(clf), "dir": str(model)},
        "preprocessing": model_preprocessing(clf),
        "labels": list(clf.labels),
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    as_umask(tmp)  # mkstemp makes 0600 files: the result is shared like the saliency maps
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=2)
    os.replace(tmp, out)

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
    if all(r.get("status") != "ok" for r in results):
        raise typer.Exit(1)
