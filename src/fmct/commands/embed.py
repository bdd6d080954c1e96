"""`fmct embed`: frozen embeddings of every scan of a store."""

from __future__ import annotations

from pathlib import Path

import typer

from fmct.commands._common import device_option


def embed(
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="Model directory or Hugging Face Hub repo id owner/name (backbone or classifier, ViT or ResNet).",
    ),
    data: Path = typer.Option(..., "--data", "-d", help="Store directory written by `fmct ingest`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output embeddings file (.parquet)."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Scans per forward pass."),
    workers: int = typer.Option(
        1,
        "--workers",
        "-j",
        min=0,
        help="Processes loading scans (0 or 1: this process; N >= 2: N loader processes).",
    ),
    no_patch: bool = typer.Option(
        False, "--no-patch", help="Do not keep patch tokens (attentive probe needs them)."
    ),
    device: str = device_option(),
) -> None:
    """Embed every usable scan of a store with a model: one row per scan (scan_id, cls, mean_patch).

    Patch tokens are saved beside the output as `<name>.patch.npy` (float16). The run is resumable:
    scans already in the output (or in its part files from an interrupted run) are skipped.
    """
    from fmct.api import embed as run_embed
    from fmct.commands._common import resolve_device_option, run_or_fail

    dev = resolve_device_option(device)  # first: a GPU asked for and missing is said before anything else
    emb = run_or_fail(
        run_embed,
        model,
        data,
        out,
        batch_size=batch_size,
        workers=workers,
        keep_patch=not no_patch,
        device=dev,
    )
    dim = len(emb["cls"].iloc[0]) if len(emb) else 0
    typer.echo(f"wrote {out}: {len(emb)} scans, dim {dim}")
