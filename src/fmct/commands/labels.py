"""`fmct labels import`: RSNA ICH / CQ500 labels -> fmct labels.csv."""

from __future__ import annotations

from pathlib import Path

import typer

from fmct.commands._common import named

app = typer.Typer(no_args_is_help=True)


@app.command("import")
@named("labels import")
def import_labels(
    files: list[Path] = typer.Argument(
        ..., metavar="FILE...", help="RSNA stage_2_train.csv or CQ500 reads.csv."
    ),
    fmt: str = typer.Option(..., "--format", help="rsna or cq500."),
    out: Path = typer.Option(..., "--out", "-o", help="Output labels.csv."),
    dicom: list[Path] = typer.Option(
        None, "--dicom", metavar="DIR", help="DICOM folder(s) mapping images to scan ids."
    ),
    site: str | None = typer.Option(
        None, "--site", help="Value of the site column (default: the format name)."
    ),
) -> None:
    """Import public-dataset labels, mapped to fmct scan/patient ids through the DICOM headers.

    RSNA: slice labels are aggregated to series (positive if any slice is); --dicom is required.
    CQ500: majority vote of the readers per finding, each reader kept as r1_ich ...; without --dicom the
    CQ500 name is kept as scan id.
    """
    import pandas as pd

    from fmct.commands._common import run_or_fail, usage
    from fmct.labels.importers import import_cq500, import_rsna, write_labels

    fmt = fmt.lower()
    if fmt not in ("rsna", "cq500"):
        usage(f"--format must be rsna or cq500, got {fmt!r}")
    for f in files:
        if not f.exists():
            usage(f"{f}: no such file")
    for d in dicom or []:
        if not d.exists():
            usage(f"{d}: no such DICOM folder")
    if fmt == "rsna" and not dicom:
        usage("RSNA labels are per slice: give --dicom DIR so slices can be grouped into series")
    frames = []
    for f in files:
        if fmt == "rsna":
            frames.append(run_or_fail(import_rsna, f, dicom))
        else:
            frames.append(run_or_fail(import_cq500, f, dicom or None))
    df = pd.concat(frames, ignore_index=True).drop_duplicates("scan_id", keep="last")
    if "site" not in df:
        df.insert(min(2, len(df.columns)), "site", site or fmt)
    write_labels(df, out)
    typer.echo(f"wrote {out}: {len(df)} scans")
