"""`fmct pretrain` (placeholder until implemented)."""

from __future__ import annotations

import typer


def pretrain() -> None:
    """Not implemented yet."""
    typer.echo("fmct pretrain: not implemented yet", err=True)
    raise typer.Exit(2)
