"""`fmct ingest`: DICOM folders / NIfTI files -> a store of preprocessed scans + manifest.parquet."""

from __future__ import annotations

from pathlib import Path

import typer


def ingest(
    inputs: list[Path] = typer.Argument(
        ..., metavar="INPUT...", help="Folders (searched recursively) and/or NIfTI files, in any mix."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Store folder (created; re-runs resume)."),
    workers: int = typer.Option(
        1,
        "--workers",
        "-j",
        min=0,
        help="Processes, for reading DICOM headers and then the scans (0 or 1: this process; N >= 2: N "
        "worker processes).",
    ),
    shard: str | None = typer.Option(
        None, "--shard", help="Process only shard K of N (e.g. 1/4), by scan id."
    ),
    spacing: float = typer.Option(1.0, "--spacing", min=0.1, help="Isotropic output voxel size in mm."),
    deface: bool = typer.Option(False, "--deface", help="Set the face (in front of/below the brain) to air."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero when any input failed."),
    min_slices: int = typer.Option(10, "--min-slices", min=1, help="Skip volumes with fewer slices."),
    series_description: bool = typer.Option(
        False,
        "--series-description",
        help="Keep each series' SeriesDescription in the manifest (words found in the header's names, IDs "
        "and dates, and runs of 4+ digits, become *). Off by default: it is free text that may hold PHI.",
    ),
    hash_sources: bool = typer.Option(
        False,
        "--hash-sources",
        help="Name inputs in the manifest and records by a salted hash instead of their path relative to "
        "INPUT (folder names often hold patient names). The salt stays in STORE/.salt; a hashed store stays "
        "hashed.",
    ),
) -> None:
    """Ingest head CT scans into a store: find every DICOM series and NIfTI file under INPUT...,
    reorient to RAS, resample to isotropic spacing, crop to the head (optionally deface), and write
    STORE/scans/<scan_id>.npy (int16 HU) + .json and STORE/manifest.parquet (one row per input with
    status ok/skipped/failed and the reason; series in one folder are told apart by series_number and
    n_files).

    One run writes a store at a time (STORE/.lock; shards K/N of the same N run side by side): a second
    run exits 1 naming the first. Safe to interrupt and re-run: stored scans are kept, leftovers of a
    killed run are removed. One bad
    scan never stops the batch. Exits 0 when something was ingested (or everything was already present),
    1 when nothing was, or with --strict when any input failed.
    """
    from fmct.api import ingest as run_ingest
    from fmct.diskspace import NoSpaceError
    from fmct.store.lock import StoreBusy

    try:
        summary = run_ingest(
            inputs,
            out,
            spacing=spacing,
            deface=deface,
            workers=workers,
            shard=shard,
            min_slices=min_slices,
            progress=True,
            series_description=series_description,
            hash_sources=hash_sources,
        )
    except (FileNotFoundError, ValueError) as exc:  # a missing input, a bad shard, other preprocessing
        typer.echo(f"fmct ingest: {exc}", err=True)
        raise typer.Exit(2) from None
    except NoSpaceError as exc:  # stopped: what was stored before is kept, a re-run resumes
        typer.echo(
            f"fmct ingest: {exc}; free some space and re-run to resume (stored scans are kept)", err=True
        )
        raise typer.Exit(1) from None
    except StoreBusy as exc:  # another ingest writes the same store: nothing was touched
        typer.echo(f"fmct ingest: {exc}", err=True)
        raise typer.Exit(1) from None
    if summary.unlocked:
        typer.echo(f"fmct ingest: warning: {summary.unlocked}", err=True)
    if summary.took_over:
        typer.echo(
            f"took over the stale lock of an ingest that ended without releasing it ({summary.took_over})"
        )
    if summary.cleaned:
        typer.echo(f"removed {summary.cleaned} leftover file(s) of an interrupted run")
    if summary.damaged:
        shown = "; ".join(summary.damaged[:5]) + (" ..." if len(summary.damaged) > 5 else "")
        typer.echo(f"re-did {len(summary.damaged)} stored scan(s) whose file was damaged: {shown}")
    typer.echo(summary.line())
    code = summary.exit_code(strict)
    if code and not (summary.ok + summary.present):
        typer.echo("fmct ingest: nothing was ingested (see the manifest for the reasons)", err=True)
    raise typer.Exit(code)
