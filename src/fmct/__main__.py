"""``python -m fmct ...``: the same command line as the ``fmct`` script."""

from fmct.cli import app

if __name__ == "__main__":
    app(prog_name="fmct")
