"""Writing a store: atomic files, one ``.npy`` + one ``.json`` sidecar per scan.

Layout::

    STORE/store.json              {"format": 1, "preprocess": PreprocessConfig.to_dict()}
    STORE/scans/<scan_id>.npy     int16 (X, Y, Z) HU, RAS, isotropic
    STORE/scans/<scan_id>.json    {"scan_id", "shape", "affine", "preprocess", "meta", "file_bytes",
                                  "crc32"} (written last: its presence marks the scan complete;
                                  file_bytes / crc32 are the size and zlib CRC-32 of the .npy file)
    STORE/records/<key>.json      one manifest row per input (crash-safe progress)
    STORE/manifest.parquet        rebuilt from records/ at the end of every ingest run

Every file is written to a temporary name in the same folder (``<name>.<token>.tmp``) and moved into
place with ``os.replace``, so a killed process leaves either the old file, the new file, or a ``.tmp``.
"""

from __future__ import annotations

import io
import json
import os
import threading
import uuid
import zlib
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from fmct.diskspace import NoSpaceError, no_space
from fmct.io.volume import Volume

STORE_FORMAT = 1
TMP_SUFFIX = ".tmp"


def tmp_path(final: Path) -> Path:
    """A unique temporary sibling of ``final``: ``<final name>.<pid>-<random>.tmp``."""
    return final.with_name(f"{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


def target_of_tmp(tmp: Path) -> Path:
    """The final path a temporary file from :func:`tmp_path` was meant to become."""
    return tmp.with_name(tmp.name.rsplit(".", 2)[0])


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, write, before_replace=None) -> None:
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync it, then ``os.replace`` it into place
    (a :class:`_SyncingFile` waited for before the move).

    Args:
        before_replace: optional callable run after the fsync, just before the move (e.g. to wait until
            another file is on disk); what it raises aborts the write like a failed write.

    Raises:
        fmct.diskspace.NoSpaceError: the disk is full ("no space left on <folder> (writing <name>)", the
            name of ``path`` unless ``before_replace`` raised one naming its own file); the temp file is
            removed and any former ``path`` is untouched.
    """
    pending = _SyncingFile(path)
    try:
        pending.write(write, background=False)
        pending.wait()
        if before_replace is not None:
            before_replace()
        pending.place()
    except BaseException:
        pending.abandon()
        raise


class _SyncingFile:
    """A temporary file next to ``path`` whose fsync runs in a helper thread (the disk wait releases the GIL)
    once it is written, so that the caller goes on meanwhile (a checksum, the next file); :meth:`wait` joins
    it, :meth:`place` moves it into place, :meth:`abandon` cleans up after a failure. A full disk is raised
    as :class:`~fmct.diskspace.NoSpaceError` naming ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp_path(self.path)
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.placed = False
        try:
            self.file = open(self.tmp, "wb")  # noqa: SIM115 - closed by wait() or abandon()
        except BaseException as exc:
            self._reraise_named(exc)

    def write(self, write, background: bool = True) -> Any:
        """``write(fileobj)``, flushed, then the fsync starts (in the helper thread, or here without
        ``background``: a thread costs ~0.2 ms, more than a small file's fsync gains by it); returns what
        ``write`` returned."""

        try:
            out = write(self.file)
            self.file.flush()
        except BaseException as exc:
            self._reraise_named(exc)
        if not background:
            self._fsync()
            return out
        self.thread = threading.Thread(target=self._fsync, name="fmct-fsync", daemon=True)
        self.thread.start()
        return out

    def _fsync(self) -> None:
        try:
            os.fsync(self.file.fileno())
        except BaseException as exc:  # handed to the caller by wait()
            self.error = exc

    def place(self) -> None:
        """Move the file into place, its fsync maybe still running (mark it complete only after wait())."""
        try:
            os.replace(self.tmp, self.path)
        except BaseException as exc:
            self._reraise_named(exc)
        self.placed = True

    def wait(self) -> None:
        """Wait for the fsync and close the file; raise what the fsync raised."""
        if self.thread is not None:
            self.thread.join()
        self.file.close()
        if self.error is not None:
            self._reraise_named(self.error)

    def _reraise_named(self, exc: BaseException) -> NoReturn:
        """Raise ``exc``, or for a full disk (judged before the partial file frees its space) a
        :class:`~fmct.diskspace.NoSpaceError` naming ``path`` from it."""
        if not isinstance(exc, NoSpaceError) and no_space(exc, self.path):
            raise NoSpaceError(self.path) from exc
        raise exc

    def abandon(self) -> None:
        """After a failure: wait for the fsync, close and remove the file (temporary or placed)."""
        if self.thread is not None:
            self.thread.join()
        self.file.close()
        (self.path if self.placed else self.tmp).unlink(missing_ok=True)


def atomic_write_json(path: Path, obj: Any, before_replace=None) -> None:
    """Write ``obj`` as indented JSON, atomically (``before_replace``: see :func:`atomic_write_bytes`)."""
    data = json.dumps(obj, indent=1, sort_keys=True, default=_json_default).encode()
    atomic_write_bytes(path, lambda f: f.write(data), before_replace)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, frozenset)) or (hasattr(o, "__iter__") and not isinstance(o, (str, bytes))):
        return list(o)  # e.g. pydicom MultiValue
    return str(o)


def scan_paths(root: Path, scan_id: str) -> tuple[Path, Path]:
    """``(npy, json)`` paths of a scan in the store at ``root``."""
    folder = Path(root) / "scans"
    return folder / f"{scan_id}.npy", folder / f"{scan_id}.json"


def write_npy(f, arr: np.ndarray) -> tuple[int, bytes]:
    """Write C-contiguous ``arr`` to the real file ``f`` as ``.npy`` (the bytes ``np.save`` writes); return
    ``(bytes written, the header's bytes)``."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(arr))
    head = header.getvalue()
    f.write(head)
    arr.tofile(f)
    return len(head) + arr.nbytes, head


def npy_crc32(head: bytes, arr: np.ndarray) -> int:
    """zlib CRC-32 of the ``.npy`` bytes that :func:`write_npy` wrote (``head`` then ``arr``), taken over the
    array in memory (about +5 ms on a 17 MB scan; benchmarks/store_checksum.py)."""
    return zlib.crc32(memoryview(arr).cast("B"), zlib.crc32(head))


def save_npy(f, arr: np.ndarray) -> tuple[int, int]:
    """:func:`write_npy` then :func:`npy_crc32`: ``(bytes written, zlib CRC-32 of them)``."""
    size, head = write_npy(f, arr)
    return size, npy_crc32(head, arr)


def file_crc32(path: Path, chunk: int = 1 << 22) -> str:
    """zlib CRC-32 of a file's bytes as 8 hex digits (what ``write_scan`` records as ``crc32``)."""
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            crc = zlib.crc32(block, crc)
    return f"{crc:08x}"


def npy_size_problem(npy: Path, expected: int | None = None) -> str | None:
    """Why ``npy`` is not a whole ``.npy`` file (missing, empty, truncated, too long), or ``None``.

    Cheap (a ``stat`` and, without ``expected``, its header): compares the size with ``expected`` (the
    sidecar's ``file_bytes``) or with what the header's shape and dtype need.
    """
    try:
        size = npy.stat().st_size
        if expected is None:
            with open(npy, "rb") as f:
                major, _ = np.lib.format.read_magic(f)
                read = (
                    np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read(f)
                expected = f.tell() + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    except FileNotFoundError:
        return "file missing"
    except (OSError, ValueError) as exc:
        return f"unreadable header ({exc})"
    if size < expected:
        return f"file truncated ({size} of {expected} bytes)"
    if size > expected:
        return f"file too long ({size} bytes, expected {expected})"
    return None


def write_scan(root: Path, scan_id: str, volume: Volume, preprocess: dict[str, Any]) -> tuple[Path, Path]:
    """Store one preprocessed scan: the ``.npy`` first, then the ``.json`` sidecar that marks completion.

    The ``.npy``'s fsync runs while its CRC is taken and the sidecar is written and fsynced (one wait on the
    disk instead of two). The ``.npy`` is moved into place first (without its sidecar it is no scan yet),
    the sidecar only once the ``.npy`` is on disk: a sidecar never marks a scan whose data could be lost.
    After a failure neither new file is left.

    Args:
        root: store folder.
        scan_id: pseudonymous id (file stem).
        volume: ``int16 (X, Y, Z)`` HU in RAS with its affine; ``meta`` must be de-identified.
        preprocess: the ``PreprocessConfig.to_dict()`` used.

    Raises:
        fmct.diskspace.NoSpaceError: the disk is full (naming the file being written).
    """
    npy, side = scan_paths(root, scan_id)
    arr = np.ascontiguousarray(volume.array, dtype=np.int16)
    pending = _SyncingFile(npy)
    try:
        size, head = pending.write(lambda f: write_npy(f, arr))
        crc = npy_crc32(head, arr)  # while the disk syncs
        pending.place()
        sidecar = {
            "scan_id": scan_id,
            "shape": list(arr.shape),
            "dtype": "int16",
            "spacing_mm": [round(s, 6) for s in volume.spacing],
            "affine": np.asarray(volume.affine, dtype=np.float64).tolist(),
            "preprocess": preprocess,
            "meta": volume.meta,
            "file_bytes": size,
            "crc32": f"{crc:08x}",
        }
        atomic_write_json(side, sidecar, before_replace=pending.wait)
    except BaseException:
        pending.abandon()
        raise
    return npy, side


def scan_complete(root: Path, scan_id: str) -> bool:
    """Both files of a scan are in place."""
    npy, side = scan_paths(root, scan_id)
    return npy.is_file() and side.is_file()


def scan_damage(root: Path, scan_id: str) -> str | None:
    """Why the stored scan is damaged (sidecar unreadable, ``.npy`` of the wrong size), or ``None``.

    Cheap: reads the sidecar and stats the ``.npy`` (no checksum; see :func:`file_crc32`)."""
    npy, side = scan_paths(root, scan_id)
    try:
        expected = json.loads(side.read_text()).get("file_bytes")
    except (OSError, ValueError) as exc:
        return f"{side.name}: unreadable ({exc})"
    problem = npy_size_problem(npy, expected)
    return f"{npy.name}: {problem}" if problem else None


def write_store_info(root: Path, preprocess: dict[str, Any]) -> None:
    """Create ``store.json`` or check that an existing store used the same preprocessing.

    Raises:
        ValueError: the store was built with different preprocessing (mixing would corrupt it).
    """
    info_path = Path(root) / "store.json"
    if info_path.is_file():
        old = json.loads(info_path.read_text())
        if old.get("preprocess") != preprocess:
            diff = sorted(
                k
                for k in set(old.get("preprocess", {})) | set(preprocess)
                if old.get("preprocess", {}).get(k) != preprocess.get(k)
            )
            raise ValueError(
                f"{root} was built with different preprocessing ({', '.join(diff)} differ); "
                "use another --out folder"
            )
        return
    atomic_write_json(info_path, {"format": STORE_FORMAT, "preprocess": preprocess})
    _fsync_dir(Path(root))
