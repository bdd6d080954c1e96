"""One writer per store (or per shard of it): ``STORE/.lock`` / ``STORE/.lock-shard-K-of-N``.

A writing run (``fmct ingest``) holds an exclusive ``flock`` on the lock file of what it writes (the
whole store, or shard K of N) for as long as it runs; the file holds ``{"pid", "host", "started"}`` of
the holder so that a refused run can name it. The kernel drops the lock when the holder dies however it
dies, so a lock file left by a killed run is stale by construction: the next run takes it over (and
says so). A released lock file is left in place, empty. Runs conflict when what they write overlaps: the whole store overlaps everything; shard K/N and
K'/N' overlap unless ``N == N'`` and ``K != K'`` (an array job of N shards runs side by side).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOCK = ".lock"


class StoreBusy(RuntimeError):
    """Another live run is writing the store (or an overlapping shard of it)."""


def lock_name(shard: tuple[int, int] | None) -> str:
    """``.lock`` for the whole store, ``.lock-shard-K-of-N`` for shard K of N."""
    return LOCK if shard is None else f"{LOCK}-shard-{shard[0]}-of-{shard[1]}"


def _shard_of(name: str) -> tuple[int, int] | None:
    """Inverse of :func:`lock_name` (``ValueError`` for other names)."""
    if name == LOCK:
        return None
    prefix = f"{LOCK}-shard-"
    if not name.startswith(prefix):
        raise ValueError(name)
    k, _, n = name[len(prefix) :].partition("-of-")
    return int(k), int(n)


def _lock_files(root: Path) -> list[tuple[Path, tuple[int, int] | None]]:
    """Every lock file of the store with what it covers."""
    out = []
    for p in sorted(Path(root).glob(f"{LOCK}*")):
        try:
            out.append((p, _shard_of(p.name)))
        except ValueError:
            continue
    return out


def overlaps(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    """Whether two runs (whole store = ``None``, or shard ``(K, N)``) may write the same scan."""
    if a is None or b is None:
        return True
    return a[1] != b[1] or a[0] == b[0]


def _holder(path: Path) -> str:
    """``pid N on host H since T`` from a lock file (``?`` for what it does not say)."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    pid, host, since = info.get("pid", "?"), info.get("host", "?"), info.get("started", "?")
    return f"pid {pid} on host {host} since {since}"


def _holder_text(path: Path) -> str:
    shard = _shard_of(path.name)
    what = "store" if shard is None else f"shard {shard[0]}/{shard[1]} of store"
    return (
        f"{what} {path.parent} is being written by {_holder(path)}; "
        f"wait for it to finish, or remove the stale lock {path} if that process is gone"
    )


def _held_by_other(path: Path) -> bool:
    """Whether a live process holds ``path`` (probe: take and drop the lock without blocking)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # no locks on this file system: nothing can be held
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


@dataclass
class StoreLock:
    """Hold the write lock of ``root`` (or of shard ``shard`` of it); use as a context manager.

    ``took_over`` is ``"pid N on host H since T"`` of the former holder when a stale lock file (its
    process gone, the lock never released) was found and reused. ``unlocked`` says why the store could
    not be locked at all (a file system without ``flock``); the run then goes on unlocked.
    """

    root: Path
    shard: tuple[int, int] | None = None
    took_over: str | None = None
    unlocked: str | None = None
    _fd: int | None = field(default=None, repr=False)

    @property
    def path(self) -> Path:
        return Path(self.root) / lock_name(self.shard)

    def acquire(self) -> StoreLock:
        """Take the lock or raise :class:`StoreBusy` naming the holder."""
        Path(self.root).mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreBusy(_holder_text(self.path)) from None
        except OSError as exc:  # e.g. ENOLCK: a network file system without locks
            os.close(fd)
            self.unlocked = (
                f"cannot lock {self.path} ({exc.strerror}): run one ingest at a time on this store"
            )
            return self
        try:
            for other, covers in _lock_files(self.root):
                if other.name != self.path.name and overlaps(self.shard, covers):
                    if _held_by_other(other):
                        raise StoreBusy(_holder_text(other))
            old = os.read(fd, 4096).decode(errors="replace").strip()
            if old:
                self.took_over = _holder(self.path)
            info: dict[str, Any] = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Empty the lock file and drop the lock. The file stays (removing it would let a run waiting
        on the old file and a run creating a new one both hold "the" lock); empty means released."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
