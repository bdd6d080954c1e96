"""`fmct ingest` (placeholder until implemented)."""

from __future__ import annotations

import typer


def ingest() -> None:
    """Not implemented yet."""
    typer.echo("fmct ingest: not implemented yet", err=True)
    raise typer.Exit(2)
