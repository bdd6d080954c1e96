"""`fmct evaluate`: the full evaluation protocol for one or several models, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
    from fmct.commands._common import run_or_fail
    from fmct.evaluate.protocol import ProtocolConfig, run_protocol

    cfg = _load_config(config, set_ or [])
    _apply_inputs(cfg, model or [], labels, data or [], splits, out)
    proto = _protocol_settings(cfg, fractions, seeds, method, n_boot, feature, device)
    stores = _checked_stores(cfg)
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
    _print_results(report, Path(cfg["out"]))


def _load_config(config: Path | None, sets: list[str]) -> dict[str, Any]:
    """The eval.yaml dict (defaults filled in) with each ``--set a.b=value`` applied (values parsed as YAML)."""
    import yaml

    from fmct.commands._common import usage
    from fmct.config import load_config

    defaults = {"models": {}, "labels": None, "data": [], "splits": None, "out": "eval_out", "protocol": {}}
    try:
        cfg = load_config(config, [], defaults)
    except (OSError, ValueError, yaml.YAMLError) as e:
        usage(f"{config}: {e}")
    for item in sets:
        key, _, value = item.partition("=")
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(value)
    return cfg


def _apply_inputs(
    cfg: dict[str, Any],
    models: list[str],
    labels: Path | None,
    data: list[Path],
    splits: Path | None,
    out: Path | None,
) -> None:
    """Put the models, labels, stores, splits and output folder given as flags into ``cfg`` (flags win)."""
    from fmct.commands._common import usage

    for item in models:
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


def _protocol_settings(
    cfg: dict[str, Any],
    fractions: str | None,
    seeds: str | None,
    method: str | None,
    n_boot: int | None,
    feature: str | None,
    device: str,
) -> dict[str, Any]:
    """The ``protocol:`` section with the flags given applied; the device resolved (exit 2 when absent)."""
    from fmct.commands._common import parse_list, resolve_device_option, seeds_option

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
    asked = device if device != "auto" else proto.get("device", "auto")
    proto["device"] = str(resolve_device_option(str(asked)))
    return proto


def _checked_stores(cfg: dict[str, Any]) -> list[str]:
    """The store folders of ``cfg``; exit 2 when no model, no labels or a folder that is not a store."""
    from fmct.commands._common import usage

    if not cfg["models"]:
        usage("no model to evaluate: give --model NAME=PATH or a models: section in --config")
    if not cfg["labels"]:
        usage("no labels: give --labels or labels: in --config")
    stores = cfg["data"] if isinstance(cfg["data"], list) else [cfg["data"]]
    for s in stores:
        if not (Path(s) / "manifest.parquet").exists():
            usage(f"{s}: not an fmct store (no manifest.parquet)")
    return stores


def _print_results(report: dict[str, Any], out: Path) -> None:
    """One line per result (model, method, label setting, test set: macro AUROC [95 % CI]), then the report."""
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
    typer.echo(f"wrote {out / 'report.html'}")


evaluate.__doc__ = (evaluate.__doc__ or "") + EXAMPLE
