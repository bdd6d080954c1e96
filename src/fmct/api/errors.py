"""The error the API raises for arguments that do not fit together (the CLI exits 2 on it)."""

from __future__ import annotations


class UsageError(ValueError):
    """Arguments that cannot work (an option missing, out of range, or contradicting another); the message
    is one sentence. Data that cannot be used raises a plain ``ValueError``, a missing path
    ``FileNotFoundError``.

    ``param``: the argument the message starts with (``"series"``), so that the CLI can name its option
    instead (``--series``); None when the message names no single argument.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def cli_message(self) -> str:
        """The message with its leading argument written as the command-line option (``batch`` -> ``--batch``)."""
        text = str(self)
        if self.param and text.startswith(self.param):
            return "--" + self.param.replace("_", "-") + text[len(self.param) :]
        return text
