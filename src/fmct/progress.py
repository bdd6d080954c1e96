"""Progress for long work: a rich bar on a terminal, plain lines in a log (SLURM, CI, ``| tee``).

Rich draws nothing until the end when its output is not a terminal, so a 5-minute ``fmct pretrain`` in a SLURM
log showed one line. :func:`progress` returns a rich ``Progress`` on a terminal and a :class:`LineProgress`
otherwise; both are context managers with ``add_task(description, total=, completed=, **fields)`` and
``update(task, completed=, advance=, **fields)``, so callers do not care which they got.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO


class LineProgress:
    """Plain-text progress lines (to stdout by default): ``pretrain 120/1200 (10 %) loss 5.1 | 62 s elapsed, ~9 min left``.

    A line is written every ``every_n`` units of work when ``every_n > 0``, else when at least ``every_s``
    seconds have passed since the last line; and always when a task completes. ``fields`` formats the task's extra fields (e.g. ``lambda f: f"loss {f['loss']:.4f}"``).
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        every_s: float = 30.0,
        fields: Callable[[dict[str, Any]], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        every_n: int = 0,
    ) -> None:
        self.stream = stream or sys.stdout
        self.every_s = every_s
        self.every_n = every_n
        self.fields = fields
        self.clock = clock
        self.tasks: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(
        self, description: str, total: float | None = None, completed: float = 0, **fields: Any
    ) -> int:
        tid = len(self.tasks)
        now = self.clock()
        self.tasks[tid] = {"description": description, "total": total, "completed": completed, "fields": fields,
                           "start": now, "start_completed": completed, "last": now, "last_n": completed}  # fmt: skip
        return tid

    def update(self, task: int, completed: float | None = None, advance: float = 0, **fields: Any) -> None:
        t = self.tasks[task]
        t["completed"] = (t["completed"] if completed is None else completed) + advance
        t["fields"].update(fields)
        now = self.clock()
        done = t["total"] is not None and t["completed"] >= t["total"]
        due = (
            t["completed"] - t["last_n"] >= self.every_n
            if self.every_n > 0
            else now - t["last"] >= self.every_s
        )
        if done or due:
            t["last"], t["last_n"] = now, t["completed"]
            self.stream.write(self.line(task) + "\n")
            self.stream.flush()

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def line(self, task: int) -> str:
        """The progress line of ``task`` now."""
        t = self.tasks[task]
        n, total = t["completed"], t["total"]
        head = (
            f"{t['description']} {n:g}/{total:g} ({100 * n / max(total, 1):.0f} %)"
            if total
            else f"{t['description']} {n:g}"
        )
        extra = f" {self.fields(t['fields'])}" if self.fields else ""
        elapsed = self.clock() - t["start"]
        rate = (n - t["start_completed"]) / elapsed if elapsed > 0 else 0.0
        left = f", ~{_duration((total - n) / rate)} left" if total and rate > 0 and n < total else ""
        return f"{head}{extra} | {_duration(elapsed)} elapsed{left}"


class _LogStream:
    """A text stream that hands each complete line to ``log`` (a callable such as ``print`` or a list's
    ``append``)."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log

    def write(self, text: str) -> None:
        for line in text.splitlines():
            if line:
                self.log(line)

    def flush(self) -> None:
        return None


def log_progress(
    log: Callable[[str], None],
    description: str,
    every_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[int, int], None]:
    """A ``(done, total)`` progress callback that reports through ``log`` as :class:`LineProgress` lines
    (``embedding ssl 600/1200 (50 %) | 61 s elapsed, ~1 min left``): every ``every_s`` seconds and at the end.
    For long steps inside a function that only has a ``log`` (e.g. :func:`fmct.evaluate.protocol.run_protocol`).
    A call with another ``total``, or fewer ``done`` than before, starts a new count (one callback may serve
    several passes, e.g. loading scans then training on them)."""
    lines = LineProgress(_LogStream(log), every_s, clock=clock)  # type: ignore[arg-type]
    task: list[int] = []

    def report(done: int, total: int) -> None:
        t = lines.tasks[task[-1]] if task else None
        if t is None or t["total"] != total or done < t["completed"]:
            task.append(lines.add_task(description, total=total))
        lines.update(task[-1], completed=done)

    return report


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s} s" if s < 120 else (f"{s // 60} min" if s < 7200 else f"{s / 3600:.1f} h")


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default stdout, where rich draws) is an interactive terminal."""
    s = stream or sys.stdout
    return bool(getattr(s, "isatty", lambda: False)())


def progress(
    rich_columns: Callable[[], list[Any]],
    fields: Callable[[dict[str, Any]], str] | None = None,
    enabled: bool = True,
    stream: TextIO | None = None,
    every_s: float = 30.0,
    every_n: int = 0,
) -> Any:
    """A rich ``Progress`` with ``rich_columns()`` on a terminal, else a :class:`LineProgress` writing to
    ``stream`` (default stdout) every ``every_n`` units (``> 0``) or ``every_s`` seconds; disabled: a rich
    ``Progress`` that draws nothing."""
    if enabled and not is_terminal(stream):
        return LineProgress(stream, every_s, fields, every_n=every_n)
    from rich.progress import Progress

    return Progress(*rich_columns(), disable=not enabled)
