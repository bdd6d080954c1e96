"""`fmct finetune` (placeholder until implemented)."""

from __future__ import annotations

import typer


def finetune() -> None:
    """Not implemented yet."""
    typer.echo("fmct finetune: not implemented yet", err=True)
    raise typer.Exit(2)
