"""The error the API raises for arguments that do not fit together (the CLI exits 2 on it)."""

from __future__ import annotations


class UsageError(ValueError):
    """Arguments that cannot work (an option missing, out of range, or contradicting another); the message
    is one sentence. Data that cannot be used raises a plain ``ValueError``, a missing path
    ``FileNotFoundError``."""
