"""Writing a store: atomic files, one ``.npy`` + one ``.json`` sidecar per scan.

Layout::

    STORE/store.json              {"format": 1, "preprocess": PreprocessConfig.to_dict()}
    STORE/scans/<scan_id>.npy     int16 (X, Y, Z) HU, RAS, isotropic
    STORE/scans/<scan_id>.json    {"scan_id", "shape", "affine", "preprocess", "meta"}  (written last:
                                  its presence marks the scan complete)
    STORE/records/<key>.json      one manifest row per input (crash-safe progress)
    STORE/manifest.parquet        rebuilt from records/ at the end of every ingest run

Every file is written to a temporary name in the same folder (``<name>.<token>.tmp``) and moved into
place with ``os.replace``, so a killed process leaves either the old file, the new file, or a ``.tmp``.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

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


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync it, then ``os.replace`` it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    data = json.dumps(obj, indent=1, sort_keys=True, default=_json_default).encode()
    atomic_write_bytes(path, lambda f: f.write(data))


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


def write_scan(root: Path, scan_id: str, volume: Volume, preprocess: dict[str, Any]) -> tuple[Path, Path]:
    """Store one preprocessed scan: the ``.npy`` first, then the ``.json`` sidecar that marks completion.

    Args:
        root: store folder.
        scan_id: pseudonymous id (file stem).
        volume: ``int16 (X, Y, Z)`` HU in RAS with its affine; ``meta`` must be de-identified.
        preprocess: the ``PreprocessConfig.to_dict()`` used.
    """
    npy, side = scan_paths(root, scan_id)
    arr = np.ascontiguousarray(volume.array, dtype=np.int16)
    atomic_write_bytes(npy, lambda f: np.save(f, arr, allow_pickle=False))
    sidecar = {
        "scan_id": scan_id,
        "shape": list(arr.shape),
        "dtype": "int16",
        "spacing_mm": [round(s, 6) for s in volume.spacing],
        "affine": np.asarray(volume.affine, dtype=np.float64).tolist(),
        "preprocess": preprocess,
        "meta": volume.meta,
    }
    atomic_write_json(side, sidecar)
    return npy, side


def scan_complete(root: Path, scan_id: str) -> bool:
    """Both files of a scan are in place."""
    npy, side = scan_paths(root, scan_id)
    return npy.is_file() and side.is_file()


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
