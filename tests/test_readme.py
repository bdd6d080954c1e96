"""The README's commands exist: each `fmct …` line names a real subcommand and only options it has."""

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fmct.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


def _fmct_lines() -> list[str]:
    lines, in_code = [], False
    for raw in README.read_text().splitlines():
        if raw.startswith("```"):
            in_code = not in_code
            continue
        text = raw.split("#", 1)[0].strip()
        if in_code and text.startswith("fmct "):
            lines.append(text.rstrip("\\").strip())
        m = re.search(r"-m fmct\.cli (\w+.*)", raw)
        if in_code and m:
            lines.append("fmct " + m.group(1).split("#", 1)[0].rstrip("\\").strip())
    return lines


def test_readme_has_commands():
    assert len(_fmct_lines()) >= 10


@pytest.mark.parametrize("line", _fmct_lines())
def test_readme_command_parses(line):
    words = shlex.split(line)[1:]
    sub = words[:2] if words[0] == "labels" else words[:1]
    result = CliRunner().invoke(app, [*sub, "--help"], terminal_width=200)
    assert result.exit_code == 0, f"{line}: {result.output}"
    help_text = result.output
    for opt in (w.split("=")[0] for w in words if w.startswith("--")):
        assert opt in help_text, f"{line}: option {opt} not in `fmct {' '.join(sub)} --help`"
