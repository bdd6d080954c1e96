"""File modes that follow the user's umask for files written through temporary files.

``tempfile.mkstemp`` / ``mkdtemp`` create 0600 files and 0700 folders whatever the umask, so model directories
and saliency maps written atomically through them were readable by their owner only, not by the group
that shares a project folder. :func:`as_umask` gives them the mode a plain ``open`` / ``mkdir`` would.
"""

from __future__ import annotations

import os
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def as_umask(path: str | os.PathLike) -> None:
    """chmod ``path`` (a file, or a folder and the files directly in it) to 0666 / 0777 minus the umask."""
    p, mask = Path(path), _umask()
    if p.is_dir():
        os.chmod(p, 0o777 & ~mask)
        for f in p.iterdir():
            if f.is_file():
                os.chmod(f, 0o666 & ~mask)
    else:
        os.chmod(p, 0o666 & ~mask)
