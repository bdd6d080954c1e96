"""`fmct predict` (placeholder until implemented)."""

from __future__ import annotations

import typer


def predict() -> None:
    """Not implemented yet."""
    typer.echo("fmct predict: not implemented yet", err=True)
    raise typer.Exit(2)
