"""The progress of discovery's header reading during ``fmct ingest`` (files read / files found): a rich bar on
a terminal, a plain line every 30 s and at the end in a log (:mod:`fmct.progress`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from fmct.progress import progress as make_progress


def _columns() -> list[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    return [
        TextColumn("discover"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TimeRemainingColumn(),
    ]


@contextmanager
def discovery_progress(
    enabled: bool, stream: TextIO | None = None, every_s: float = 30.0
) -> Iterator[Callable[[int, int], None] | None]:
    """A ``progress(files read, files in all)`` callback for :func:`fmct.io.dicom_discover.discover` that
    shows a ``discover`` bar (written to ``stream``, default stdout, as lines every ``every_s`` seconds when
    it is not a terminal); ``None`` when not ``enabled``."""
    if not enabled:
        yield None
        return
    with make_progress(_columns, lambda f: "files", stream=stream, every_s=every_s) as bar:
        task: list[Any] = []

        def update(done: int, total: int) -> None:
            if not task:
                task.append(bar.add_task("discover", total=total))
            bar.update(task[0], completed=done)

        yield update
