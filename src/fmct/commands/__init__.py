"""One module per ``fmct`` subcommand (see :mod:`fmct.cli`)."""
