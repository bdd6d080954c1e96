"""The ``fmct`` command line: a thin typer app.

Each subcommand lives in ``fmct/commands/<name>.py`` as one function that parses its options and
calls the library; heavy imports (torch, pydicom …) happen inside those functions so that
``fmct --help`` stays fast.
"""

from __future__ import annotations

import os

import typer

from fmct.commands import (
    demo,
    embed,
    evaluate,
    export,
    finetune,
    import_model,
    ingest,
    labels,
    predict,
    pretrain,
    probe,
    retrieve,
    synth,
)
from fmct.commands._common import DEBUG, named

app = typer.Typer(
    name="fmct",
    help="3D self-supervised foundation models for head CT: ingest, synth, pretrain, evaluate, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",
)


def _print_version(value: bool) -> None:
    if value:
        from fmct import __version__

        typer.echo(f"fmct {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print fmct's version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of an unexpected error (otherwise one line)."
    ),
) -> None:
    """3D self-supervised foundation models for head CT: ingest, synth, pretrain, evaluate, predict."""
    DEBUG.set(debug or bool(os.environ.get("FMCT_DEBUG")))  # set on every call: no leak between calls


app.command("ingest")(named("ingest")(ingest.ingest))
app.command("synth")(named("synth")(synth.synth))
app.command("pretrain")(named("pretrain")(pretrain.pretrain))
app.command("embed")(named("embed")(embed.embed))
app.command("probe")(named("probe")(probe.probe))
app.command("finetune")(named("finetune")(finetune.finetune))
app.command("evaluate")(named("evaluate")(evaluate.evaluate))
app.add_typer(labels.app, name="labels", help="Import labels from public head-CT datasets (RSNA, CQ500).")
app.command("predict")(named("predict")(predict.predict))
app.command("retrieve")(named("retrieve")(retrieve.retrieve))
app.command("export")(named("export")(export.export))
app.command("import-model")(named("import-model")(import_model.import_model))
app.command("demo")(named("demo")(demo.demo))


def main() -> None:  # pragma: no cover - entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
