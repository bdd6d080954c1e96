"""`fmct evaluate`: the full evaluation protocol for one or several models, with a report.

The work is :func:`fmct.api.evaluate`; this module parses the options and prints the results."""

from __future__ import annotations

from pathlib import Path

import typer

from fmct.commands._common import device_option

EXAMPLE = """

```yaml
models: (name -> a model directory, an embeddings .parquet, or a dict)
  ssl: runs/pretrain/model
  random: {model: runs/pretrain/model, random_init: true}
  scratch: {finetune: {arch: resnet3d, input_size: 64, epochs: 10}}
labels: data/labels.csv
data: store  (one store folder, or a YAML list of them)
out: eval_out
protocol: {n_boot: 1000, feature: cls+mean}  (also fractions, seeds, methods, shots as YAML lists)
```
"""


def evaluate(
    config: Path | None = typer.Option(None, "--config", help="eval.yaml (see below); flags override it."),
    model: list[str] = typer.Option(
        None, "--model", "-m", metavar="NAME=PATH", help="NAME=MODEL_DIR or NAME=EMB.parquet (repeatable)."
    ),
    labels: Path | None = typer.Option(None, "--labels", help="labels.csv."),
    data: list[Path] = typer.Option(
        None, "--data", "-d", metavar="STORE", help="Store folder(s) (repeatable)."
    ),
    splits: Path | None = typer.Option(None, "--splits", help="splits.csv (default: patient-level splits)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder for report.json/.md/.html."),
    fractions: str | None = typer.Option(None, "--fractions", help="e.g. 0.01,0.1,1.0"),
    seeds: str | None = typer.Option(None, "--seeds", help="Number of seeds or a list like 0,1,2."),
    method: str | None = typer.Option(None, "--method", help="linear, knn, attentive (comma-separated)."),
    n_boot: int | None = typer.Option(None, "--n-boot", min=10, help="Bootstrap resamples."),
    feature: str | None = typer.Option(
        None,
        "--feature",
        help="Readout of frozen embeddings: brain_max (max over the intracranial patch tokens; the default "
        "unless the config sets protocol.feature), brain_stats (their mean, std and max), cls, mean_patch or "
        "cls+mean.",
    ),
    set_: list[str] = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Override a config value: protocol.n_boot=200."
    ),
    device: str = device_option(
        "Where networks run (embedding, attentive probes, fine-tuning; default: protocol.device of the config "
        "or auto)"
    ),
) -> None:
    """Run the evaluation protocol (probes × label fractions × seeds, ID vs OOD, bootstrap CIs,
    paired model comparisons, ROC/PR curves, calibration) and write report.json, report.md, report.html.

    Example eval.yaml:
    """
    from fmct.api import evaluate as run_evaluate
    from fmct.commands._common import parse_list, run_or_fail, seeds_option

    report = run_or_fail(
        run_evaluate,
        _named_models(model or []),
        None if labels is None else str(labels),
        [str(d) for d in data] if data else None,
        None if out is None else str(out),
        config=config,
        splits=None if splits is None else str(splits),
        fractions=parse_list(fractions, float, "--fractions") or None,
        seeds=seeds_option(seeds) if seeds else None,
        methods=parse_list(method, str, "--method") or None,
        n_boot=n_boot,
        feature=feature,
        device=None if device == "auto" else device,  # auto: protocol.device of the config, else auto
        overrides=set_ or [],
        log=lambda m: typer.echo(m, err=True),
    )
    for line in report.lines():  # model, method, label setting, test set: macro AUROC [95 % CI]
        typer.echo(line)
    typer.echo(f"wrote {report.html}")


def _named_models(items: list[str]) -> dict[str, str] | None:
    """``--model NAME=PATH`` values -> ``{NAME: PATH}`` (None when none was given); exit 2 on another form."""
    from fmct.commands._common import usage

    models = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            usage(f"--model {item!r}: expected NAME=PATH")
        models[name] = spec
    return models or None


evaluate.__doc__ = (evaluate.__doc__ or "") + EXAMPLE
