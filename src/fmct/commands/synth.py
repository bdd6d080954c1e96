"""`fmct synth`: write a synthetic head-CT cohort (DICOM or NIfTI) with labels.csv."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Argument(..., help="Output folder (created). Re-running into it merges labels.csv."),
    n: int = typer.Option(20, "--n", min=1, help="Number of scans."),
    site: str = typer.Option("a", "--site", help="Acquisition site: a (training), b or c (external)."),
    seed: int = typer.Option(0, "--seed", help="Cohort seed: same arguments give the same bytes."),
    fmt: str = typer.Option("dicom", "--format", help="dicom (one series per scan) or nifti (.nii.gz)."),
    masks: bool = typer.Option(
        False, "--masks", help="Also write a label-map NIfTI of the findings per scan."
    ),
    preview: bool = typer.Option(False, "--preview", help="Also write a PNG montage per scan."),
    workers: int = typer.Option(
        1, "--workers", "-j", min=0, help="Processes (0 or 1: this process; N >= 2: N worker processes)."
    ),
    size: int = typer.Option(256, "--size", min=16, help="In-plane matrix (pixel spacing = FOV / size)."),
    start: int = typer.Option(0, "--start", min=0, help="First scan index (to extend a cohort)."),
) -> None:
    """Generate N procedural head CTs with findings (ICH subtypes, mass, edema, infarct, hydrocephalus,
    fracture, midline shift) as real DICOM series or NIfTI, plus OUT/labels.csv
    (scan_id, patient_id, site, one 0/1 column per finding, `<finding>_size`). Ids join with `fmct ingest`.

    Example: fmct synth data/synth --n 50 --site a --seed 0 --size 128 --workers 2 --masks --preview
    """
    from fmct.synth import generate_cohort
    from fmct.synth.sites import SITES

    if site.lower() not in SITES:
        typer.echo(f"fmct synth: unknown site {site!r} (choose from {', '.join(sorted(SITES))})", err=True)
        raise typer.Exit(2)
    if fmt not in ("dicom", "nifti"):
        typer.echo(f"fmct synth: unknown --format {fmt!r} (choose dicom or nifti)", err=True)
        raise typer.Exit(2)
    if out.exists() and not out.is_dir():
        typer.echo(f"fmct synth: {out}: exists and is not a folder", err=True)
        raise typer.Exit(2)
    labels = generate_cohort(
        out,
        n,
        site.lower(),
        seed,
        fmt=fmt,
        masks=masks,
        preview=preview,
        workers=workers,
        size=size,
        start=start,
    )
    typer.echo(f"wrote {n} scans (site {site.lower()}, {fmt}) to {out}; labels: {labels}")
