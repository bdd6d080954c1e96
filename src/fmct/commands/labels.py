"""`fmct labels import` (placeholder until implemented)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


@app.command("import")
def import_labels() -> None:
    """Not implemented yet."""
    typer.echo("fmct labels import: not implemented yet", err=True)
    raise typer.Exit(2)
