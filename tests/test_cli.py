"""Every subcommand answers --help (the README's commands at least parse)."""

import pytest
from typer.testing import CliRunner

from fmct.cli import app

SUBCOMMANDS = [
    ["ingest"],
    ["synth"],
    ["pretrain"],
    ["embed"],
    ["probe"],
    ["finetune"],
    ["evaluate"],
    ["labels", "import"],
    ["predict"],
    ["retrieve"],
    ["export"],
    ["demo"],
]


def test_top_level_help_lists_commands():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for cmd in SUBCOMMANDS:
        assert cmd[0] in result.output


@pytest.mark.parametrize("cmd", SUBCOMMANDS, ids=lambda c: "-".join(c))
def test_subcommand_help(cmd):
    result = CliRunner().invoke(app, [*cmd, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_python_dash_m_runs_the_same_cli():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "fmct", "pretrain", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "Usage: fmct pretrain" in out.stdout
