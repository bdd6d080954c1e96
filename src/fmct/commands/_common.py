"""Small helpers shared by the evaluation subcommands (option parsing, clean errors)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import typer

T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` to stderr and exit with ``code`` (no traceback)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def parse_list(text: str | None, cast: Callable[[str], T], what: str) -> list[T]:
    """``"0.01,0.1,1"`` -> ``[0.01, 0.1, 1.0]``; a clear error naming the option otherwise."""
    if text is None or not str(text).strip():
        return []
    try:
        return [cast(v.strip()) for v in str(text).split(",") if v.strip()]
    except ValueError:
        fail(f"{what}: expected a comma-separated list, got {text!r}")


def seeds_option(seeds: str) -> list[int]:
    """``"3"`` -> ``[0, 1, 2]``; ``"1,5,7"`` -> ``[1, 5, 7]``."""
    vals = parse_list(seeds, int, "--seeds")
    if len(vals) == 1 and "," not in seeds:
        return list(range(vals[0]))
    return vals


def run_or_fail(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn``; turn expected input errors into one-line messages."""
    try:
        return fn(*args, **kwargs)
    except (FileNotFoundError, ValueError, KeyError) as e:
        fail(str(e).strip("'\""))
