"""Disk full: recognise it behind the many shapes a failed write takes, and say so in one line.

A full disk shows up as ``OSError(ENOSPC)`` from Python's ``write``, as numpy's "N requested and M written"
(no errno), or as torch's "enforce fail at inline_container.cc" (a ``RuntimeError``). :func:`no_space`
tells them apart from other write errors by the errno along the exception chain or, when there is none,
by the free space left where the write went (measured before the partial file is removed).
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

#: Below this many free bytes a failed write is put down to a full disk.
NEARLY_FULL_BYTES = 16 << 20


class NoSpaceError(OSError):
    """A write failed because the file system is full (or the quota is used up)."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        super().__init__(errno.ENOSPC, f"no space left on {path.parent} (writing {path.name})")
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)

    def __reduce__(self):  # pickles across process pools by its path (OSError's default would not)
        return (NoSpaceError, (self.path,))


def _errnos(exc: BaseException | None):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield getattr(exc, "errno", None)
        exc = exc.__cause__ or exc.__context__


def no_space(exc: BaseException, path: Path) -> bool:
    """Whether the failed write of ``path`` that raised ``exc`` ran out of disk space."""
    if isinstance(exc, NoSpaceError):
        return True
    if not isinstance(exc, (OSError, RuntimeError)):
        return False
    codes = {c for c in _errnos(exc) if c is not None}
    if codes & {errno.ENOSPC, errno.EDQUOT}:
        return True
    if codes:  # another errno: a different failure (permissions, I/O error ...)
        return False
    try:
        return shutil.disk_usage(Path(path).parent).free < NEARLY_FULL_BYTES
    except OSError:
        return False
