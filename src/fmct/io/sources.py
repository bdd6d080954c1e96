"""How input files and folders are named in outputs (manifest, records, errors, predict results).

Folder names of PACS exports often carry patient names and record numbers
(``in/DOE_JANE_MRN123456/STUDY_DOE^JANE/...``), so no output holds an absolute path: a path is written
relative to the input root it was found under, starting with that root's own name (``in/...``), or, with
a salt, as ``h-`` + 16 hex characters of a salted SHA-256 of its resolved path (unlinkable without the
salt, which is kept out of every output).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

SALT_FILE = ".salt"


class SourceNamer:
    """Names paths relative to the given input roots, or by salted hash.

    Args:
        roots: the inputs as the user gave them (folders and/or files).
        salt: when given, every name is ``h-<16 hex>`` (salted hash of the resolved absolute path).
    """

    def __init__(self, roots: Iterable[str | os.PathLike], salt: str | None = None):
        self.roots = [Path(os.path.abspath(r)) for r in roots]
        self.salt = salt

    @property
    def hashed(self) -> bool:
        return self.salt is not None

    def hash(self, path: str | os.PathLike) -> str:
        """``h-`` + 16 hex characters of the salted hash of ``path``'s resolved absolute path."""
        text = str(Path(path).resolve())
        return "h-" + hashlib.sha256(f"{self.salt}\0{text}".encode()).hexdigest()[:16]

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` relative to the parent of the deepest root holding it (so it starts with the root's
        own name); a path under no root gets its own name only."""
        p = Path(os.path.abspath(path))
        best: Path | None = None
        for r in self.roots:
            if (p == r or r in p.parents) and (best is None or len(r.parts) > len(best.parts)):
                best = r
        if best is None:
            return p.name or str(p)
        base = best.parent if best.name else best
        return p.relative_to(base).as_posix()

    def __call__(self, path: str | os.PathLike) -> str:
        """The name of ``path`` in outputs."""
        return self.hash(path) if self.hashed else self.relative(path)

    def scrub(self, text: str, paths: Iterable[str | os.PathLike]) -> str:
        """``text`` with each of ``paths`` (as given and absolute) replaced by its name."""
        pairs = []
        for p in paths:
            name = self(p)
            pairs += [(str(p), name), (os.path.abspath(p), name)]
        for raw, name in sorted(pairs, key=lambda kv: len(kv[0]), reverse=True):
            if raw and raw != ".":
                text = text.replace(raw, name)
        return text


def store_salt(root: str | os.PathLike) -> str:
    """The salt kept in ``root/.salt`` (created, owner-only, on first use); never printed or stored
    anywhere else."""
    path = Path(root) / SALT_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{SALT_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(16) + "\n")
    try:  # first writer wins: a concurrent run keeps the salt already there
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()
