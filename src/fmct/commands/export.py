"""`fmct export` (placeholder until implemented)."""

from __future__ import annotations

import typer


def export() -> None:
    """Not implemented yet."""
    typer.echo("fmct export: not implemented yet", err=True)
    raise typer.Exit(2)
