"""`fmct export`: a classifier as TorchScript (or ONNX)."""

from __future__ import annotations

from pathlib import Path

import typer


def export(
    model: Path = typer.Option(..., "--model", "-m", help="Classifier model directory."),
    fmt: str = typer.Option("torchscript", "--format", "-f", help="torchscript | onnx"),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (e.g. model.pt / model.onnx)."),
) -> None:
    """Export backbone + classifier head as one graph: (B, C, S, S, S) model input -> (B, L) probabilities.

    TorchScript uses torch.jit.trace and is checked against the eager model before it is written; label
    names and preprocessing are stored inside the file (extra/fmct.json). ONNX needs the 'onnx' package.
    Preprocessing (reading, resampling, head crop, windows, cube resize) stays outside the exported graph.
    """
    from fmct.api.prediction import load_classifier
    from fmct.commands._common import run_or_fail
    from fmct.infer.export import FORMATS, export_model, onnx_available

    if fmt not in FORMATS:
        typer.echo(f"fmct export: unknown format {fmt!r}; choose one of {list(FORMATS)}", err=True)
        raise typer.Exit(2)
    if fmt == "onnx" and not onnx_available():
        typer.echo(
            "fmct export: ONNX export needs the 'onnx' package, which is not installed; "
            "use --format torchscript",
            err=True,
        )
        raise typer.Exit(2)
    clf = run_or_fail(load_classifier, model, "export needs a classifier")
    try:
        path = export_model(clf, out, fmt)
    except (RuntimeError, ValueError) as exc:  # ValueError: a classifier that cannot be traced
        typer.echo(f"fmct export: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {path} ({fmt}, {len(clf.labels)} outputs, input (B, C, {clf.input_size}^3))")
