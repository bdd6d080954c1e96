"""`fmct evaluate`: the full evaluation protocol for one or several models, with a report."""

from __future__ import annotations

from pathlib import Path

import typer

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
        "unless the config sets protocol.feature), cls, mean_patch or cls+mean.",
    ),
    set_: list[str] = typer.Option(
        None, "--set", metavar="KEY=VALUE", help="Override a config value: protocol.n_boot=200."
    ),
) -> None:
    """Run the evaluation protocol (probes × label fractions × seeds, ID vs OOD, bootstrap CIs,
    paired model comparisons, ROC/PR curves, calibration) and write report.json, report.md, report.html.

    Example eval.yaml:
    """
    import yaml

    from fmct.commands._common import parse_list, run_or_fail, seeds_option, usage
    from fmct.config import load_config
    from fmct.evaluate.protocol import ProtocolConfig, run_protocol

    defaults = {"models": {}, "labels": None, "data": [], "splits": None, "out": "eval_out", "protocol": {}}
    try:
        cfg = load_config(config, [], defaults)
    except (OSError, ValueError, yaml.YAMLError) as e:
        usage(f"{config}: {e}")
    for item in set_ or []:
        key, _, value = item.partition("=")
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    for item in model or []:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            usage(f"--model {item!r}: expected NAME=PATH")
        cfg["models"][name] = spec
    if labels:
        cfg["labels"] = str(labels)
    if data:
        cfg["data"] = [str(d) for d in data]
    if splits:
        cfg["splits"] = str(splits)
    if out:
        cfg["out"] = str(out)
    proto = dict(cfg.get("protocol") or {})
    if fractions:
        proto["fractions"] = parse_list(fractions, float, "--fractions")
    if seeds:
        proto["seeds"] = seeds_option(seeds)
    if method:
        proto["methods"] = parse_list(method, str, "--method")
    if n_boot:
        proto["n_boot"] = n_boot
    proto["feature"] = feature or proto.get("feature") or "brain_max"
    if not cfg["models"]:
        usage("no model to evaluate: give --model NAME=PATH or a models: section in --config")
    if not cfg["labels"]:
        usage("no labels: give --labels or labels: in --config")
    stores = cfg["data"] if isinstance(cfg["data"], list) else [cfg["data"]]
    for s in stores:
        if not (Path(s) / "manifest.parquet").exists():
            usage(f"{s}: not an fmct store (no manifest.parquet)")
    pcfg = run_or_fail(ProtocolConfig.from_dict, proto)
    store = None if not stores else (stores[0] if len(stores) == 1 else stores)
    report = run_or_fail(
        run_protocol,
        cfg["models"],
        cfg["labels"],
        cfg["out"],
        store=store,
        splits=cfg.get("splits"),
        config=pcfg,
        log=lambda m: typer.echo(m, err=True),
    )
    for r in report["results"]:
        mac = r["auroc"]["macro"]
        typer.echo(
            f"{r['model']:>10} {r['method']:>14} labels {r['setting']:>6} {r['test_set']:>3}: macro AUROC "
            + (
                f"{mac['mean']:.3f} [{mac['ci'][0]:.3f}, {mac['ci'][1]:.3f}]"
                if mac and mac["ci"][0] is not None
                else "n/a"
            )
        )
    typer.echo(f"wrote {Path(cfg['out']) / 'report.html'}")


evaluate.__doc__ = (evaluate.__doc__ or "") + EXAMPLE
