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


def test_help_text_reflows_to_the_terminal_and_keeps_examples():
    """Docstrings are wrapped in the source at ~110 columns; --help re-flows them (markdown mode) instead of
    breaking each source line again at the terminal's width, and keeps the example YAML line by line."""
    runner = CliRunner()
    predict = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "80"}, terminal_width=80).output
    assert any("with the parameters recorded in the model" in line for line in predict.splitlines()), predict
    assert all(len(line) <= 80 for line in predict.splitlines())
    evaluate = runner.invoke(app, ["evaluate", "--help"], env={"COLUMNS": "100"}, terminal_width=100).output
    lines = [line.strip() for line in evaluate.splitlines()]
    assert "ssl: runs/pretrain/model" in lines and "labels: data/labels.csv" in lines
    embed = runner.invoke(app, ["embed", "--help"]).output
    assert "<name>.patch.npy" in embed  # not swallowed as an HTML tag


def test_version():
    from fmct import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"fmct {__version__}"


HEAVY = ("torch", "scipy", "pydicom", "pandas", "sklearn", "matplotlib", "nibabel", "pyarrow", "numpy")


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["ingest", "--help"],
        ["labels", "import", "--help"],
        ["pretrain", "--bogus"],
        ["ingest"],
    ],
)
def test_help_and_argument_errors_import_no_heavy_library(argv):
    """`fmct --help`, each `--help` and argument errors answer without importing torch (seconds of start-up)
    or any other heavy library: only the command that runs imports what it needs."""
    import json
    import subprocess
    import sys

    code = (
        "import sys, json\nfrom fmct.cli import app\n"
        f"try:\n    app({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
        f"print(json.dumps([rc, [m for m in {HEAVY!r} if m in sys.modules]]), file=sys.stderr)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    rc, heavy = json.loads(out.stderr.strip().splitlines()[-1])
    assert rc in (0, 2) and heavy == [], (argv, rc, heavy)


def test_an_unexpected_error_is_one_line_unless_debug(monkeypatch, tmp_path):
    """A bug inside a command prints `fmct <command>: internal error: ...` and exits 1; `fmct --debug` shows the
    traceback instead."""
    import fmct.commands.embed as embed_cmd

    def boom(*_a, **_k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("fmct.evaluate.embed.embed_store", boom)
    (tmp_path / "m").mkdir()
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "manifest.parquet").write_text("")
    args = [
        "embed",
        "--model",
        str(tmp_path / "m"),
        "--data",
        str(tmp_path / "s"),
        "--out",
        str(tmp_path / "e.parquet"),
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and "fmct embed: internal error: ZeroDivisionError" in r.output, r.output
    assert "Traceback" not in r.output
    r = CliRunner().invoke(app, ["--debug", *args])
    assert isinstance(r.exception, ZeroDivisionError)
    assert embed_cmd is not None


def test_every_option_has_help_and_a_readable_type_label():
    """Every option of every subcommand explains itself, and no option's type label reads like Python
    (<list[Path]>; typer labels positional arguments by their annotation whatever their metavar)."""
    import typer.main

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    for path, cmd in walk(typer.main.get_command(app), []):
        for p in cmd.params:
            if p.param_type_name == "option":
                assert p.help, f"fmct {' '.join(path)} {p.opts[0]} has no help"
        out = CliRunner().invoke(app, [*path, "--help"], terminal_width=200).output
        options = [ln for ln in out.splitlines() if ln.lstrip("│ *").startswith("-")]
        assert not [ln for ln in options if "list[" in ln], f"fmct {' '.join(path)} --help: {out}"
