"""`fmct synth` (placeholder until implemented)."""

from __future__ import annotations

import typer


def synth() -> None:
    """Not implemented yet."""
    typer.echo("fmct synth: not implemented yet", err=True)
    raise typer.Exit(2)
