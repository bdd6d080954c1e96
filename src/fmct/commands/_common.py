"""Small helpers shared by the subcommands (option parsing, model loading, clean errors)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, NoReturn, TypeVar

import typer

T = TypeVar("T")


#: Exit codes of every command: a usage error (an option missing, out of range, or naming no such file) and a
#: data error (the files given are there but their content cannot be used).
USAGE_ERROR, DATA_ERROR = 2, 1


#: Whether unexpected errors show their traceback (``fmct --debug``, or the FMCT_DEBUG environment variable).
DEBUG: ContextVar[bool] = ContextVar("fmct_debug", default=bool(os.environ.get("FMCT_DEBUG")))

#: The subcommand running now (``"probe"``, ``"labels import"``), set by :func:`named`.
CURRENT_COMMAND: ContextVar[str] = ContextVar("fmct_command", default="")


def named(name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator for a subcommand function: while it runs, :func:`command_name` is ``"fmct <name>"``."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)  # typer reads the signature through __wrapped__
        def run(*args: Any, **kwargs: Any) -> T:
            token = CURRENT_COMMAND.set(name)
            try:
                return fn(*args, **kwargs)
            except Exception as e:  # a bug, not a user error: one line unless --debug
                if DEBUG.get() or type(e).__module__.split(".")[0] in ("typer", "click"):
                    raise
                fail(f"internal error: {type(e).__name__}: {e} (run `fmct --debug ...` for the traceback)")
            finally:
                CURRENT_COMMAND.reset(token)

        return run

    return wrap


def command_name() -> str:
    """``"fmct <command>"`` of the subcommand running now (see :func:`named`); ``"fmct"`` outside one."""
    name = CURRENT_COMMAND.get()
    return f"fmct {name}" if name else "fmct"


def fail(message: str, code: int = DATA_ERROR) -> NoReturn:
    """Print ``fmct <command>: message`` to stderr and exit with ``code`` (no traceback)."""
    typer.echo(f"{command_name()}: {message}", err=True)
    raise typer.Exit(code)


def usage(message: str) -> NoReturn:
    """:func:`fail` with the usage-error code (2)."""
    fail(message, USAGE_ERROR)


def parse_list(text: str | None, cast: Callable[[str], T], what: str) -> list[T]:
    """``"0.01,0.1,1"`` -> ``[0.01, 0.1, 1.0]``; a clear error naming the option otherwise."""
    if text is None or not str(text).strip():
        return []
    try:
        return [cast(v.strip()) for v in str(text).split(",") if v.strip()]
    except ValueError:
        usage(f"{what}: expected a comma-separated list, got {text!r}")


def seeds_option(seeds: str) -> list[int]:
    """``"3"`` -> ``[0, 1, 2]``; ``"1,5,7"`` -> ``[1, 5, 7]``."""
    vals = parse_list(seeds, int, "--seeds")
    if len(vals) == 1 and "," not in seeds:
        return list(range(vals[0]))
    return vals


def run_or_fail(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` (an :mod:`fmct.api` function, mostly); turn expected input errors into one-line messages: a
    missing file or arguments that do not fit exit 2 (usage; an argument the API names is written as its
    option: ``series`` -> ``--series``), a file whose content cannot be used exits 1 (data)."""
    from fmct.api.errors import UsageError
    from fmct.store.reader import StoreReadError

    try:
        return fn(*args, **kwargs)
    except StoreReadError as e:  # a damaged scan file (possibly re-raised from a DataLoader worker)
        fail(e.one_line())
    except UsageError as e:  # options that do not fit
        usage(e.cli_message())
    except FileNotFoundError as e:  # a path that is not there
        usage(str(e).strip("'\""))
    except (ValueError, KeyError) as e:
        fail(str(e).strip("'\""))


def device_option(what: str = "Where the model runs") -> Any:
    """The ``--device`` option of the commands that run a network (resolve it with
    :func:`resolve_device_option`); ``what`` starts its help."""
    from fmct.device import DEVICE_CHOICES

    return typer.Option("auto", "--device", help=f"{what}: {DEVICE_CHOICES}.")


def resolve_device_option(spec: str) -> Any:
    """The ``torch.device`` of a ``--device`` value, or exit 2 with one sentence (a GPU asked for that this
    machine does not have, or an unknown name)."""
    from fmct.device import resolve_device

    try:
        return resolve_device(spec)
    except ValueError as e:
        usage(f"--device: {e}")
