"""`fmct embed` (placeholder until implemented)."""

from __future__ import annotations

import typer


def embed() -> None:
    """Not implemented yet."""
    typer.echo("fmct embed: not implemented yet", err=True)
    raise typer.Exit(2)
