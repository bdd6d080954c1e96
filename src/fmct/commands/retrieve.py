"""`fmct retrieve`: nearest scans in an embedding index."""

from __future__ import annotations

from pathlib import Path

import typer


def retrieve(
    index: Path = typer.Option(..., "--index", "-i", help="Embedding table (parquet from `fmct embed`)."),
    query: str = typer.Option(
        ..., "--query", "-q", help="A scan_id of the index, or a scan path / STORE::scan_id (needs --model)."
    ),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="Model directory used to embed a query path."
    ),
    k: int = typer.Option(10, "-k", min=1, help="Number of neighbours."),
    pooling: str = typer.Option(
        "brain_max",
        "--feature",
        "--pooling",
        help="Readout compared: brain_max (max over the intracranial patch tokens; the demo's readout), "
        "brain_stats (their mean, std and max), cls, mean_patch or cls+mean. --pooling is the older name.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Find the k scans most similar to a query scan (cosine similarity of embeddings).

    The query is either a scan_id already in the index (it is left out of its own results) or a scan
    (DICOM folder, NIfTI file, STORE::scan_id) embedded with --model, preprocessed as recorded in the model.
    """
    import json

    from rich.console import Console
    from rich.table import Table

    from fmct.infer.retrieval import retrieve as run_retrieve

    if not index.is_file():
        typer.echo(f"fmct retrieve: {index}: no such embedding file", err=True)
        raise typer.Exit(2)
    try:
        hits = run_retrieve(index, query, model=model, k=k, pooling=pooling)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"fmct retrieve: {exc}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:  # e.g. a scan the reader rejects
        typer.echo(f"fmct retrieve: {query}: {getattr(exc, 'reason', None) or exc}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps({"query": query, "index": str(index), "neighbours": hits}, indent=2))
        return
    table = Table(title=f"nearest to {query}")
    table.add_column("rank", justify="right")
    table.add_column("scan_id")
    table.add_column("cosine", justify="right")
    for h in hits:
        table.add_row(str(h["rank"]), h["scan_id"], f"{h['similarity']:.4f}")
    Console().print(table)
