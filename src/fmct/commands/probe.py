"""`fmct probe` (placeholder until implemented)."""

from __future__ import annotations

import typer


def probe() -> None:
    """Not implemented yet."""
    typer.echo("fmct probe: not implemented yet", err=True)
    raise typer.Exit(2)
