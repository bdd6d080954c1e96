"""`fmct retrieve` (placeholder until implemented)."""

from __future__ import annotations

import typer


def retrieve() -> None:
    """Not implemented yet."""
    typer.echo("fmct retrieve: not implemented yet", err=True)
    raise typer.Exit(2)
