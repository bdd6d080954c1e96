"""`fmct demo`: synthetic cohort → ingest → pretrain → evaluate → report, in minutes on a CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

# The options, one per name (kept out of the signature so that the command reads as what it does).
OUT_OPTION = typer.Option(Path("demo_out"), "--out", "-o", help="folder for every stage's output")
SEED_OPTION = typer.Option(0, "--seed", help="any seed gives a fresh cohort (and pretraining seed)")
WORKERS_OPTION = typer.Option(2, "--workers", "-j", help="processes for synth and ingest")
QUICK_OPTION = typer.Option(False, "--quick", help="a much smaller run (a few minutes) to try the chain")
CONFIG_OPTION = typer.Option(
    None,
    "--config",
    help="pretraining config (default: configs/demo-cpu.yaml, DINO + iBOT + KoLeo); e.g. "
    "configs/mae-demo-cpu.yaml for MAE",
    exists=True,
    dir_okay=False,
)
OVERRIDES_OPTION = typer.Option(
    None,
    "--set",
    metavar="KEY=VALUE",
    help="pretraining config override KEY=VALUE (repeatable), e.g. --set max_steps=1200",
)
BACKBONE_OPTION = typer.Option(
    None,
    "--backbone",
    "-m",
    exists=True,
    file_okay=False,
    help="a pretrained backbone (model directory) to evaluate instead of pretraining one; its preprocessing "
    "must match the demo's stores (2 mm, defaced)",
)
PRETRAIN_OPTION = typer.Option(
    False,
    "--pretrain",
    help="pretrain a backbone in the demo's budget instead of evaluating the shipped one "
    "(weights/demo-vit, made by `make weights`); implied by --config and --set",
)
FEATURE_OPTION = typer.Option(
    "brain_max",
    "--feature",
    help="frozen-feature readout of the SSL and random-init probes and of the saved classifier: brain_max "
    "(max over the intracranial patch tokens), brain_stats (their mean, std and max), cls, mean_patch, cls+mean",
)


def demo(
    out: Path = OUT_OPTION,
    seed: int = SEED_OPTION,
    workers: int = WORKERS_OPTION,
    quick: bool = QUICK_OPTION,
    config: Path = CONFIG_OPTION,
    overrides: list[str] = OVERRIDES_OPTION,
    backbone: Path = BACKBONE_OPTION,
    pretrain: bool = PRETRAIN_OPTION,
    feature: str = FEATURE_OPTION,
) -> None:
    """Run the whole FM-CT idea on the built-in synthetic cohort and print the headline table.

    Stages: synth (site a labelled; sites b, c external) → ingest → the shipped pretrained backbone
    (weights/demo-vit, made by `make weights` from a synthetic pool the demo never evaluates on), or with
    --pretrain a site-a pool and pretraining in the demo's budget (configs/demo-cpu.yaml) → evaluate (SSL
    linear probe vs the same ViT at random init vs a 3D ResNet trained from scratch vs a logistic
    regression on the intracranial HU histogram, at 10 % and 100 % labels; ID vs OOD; bootstrap 95 % CIs;
    paired differences SSL − each other model) → models → saliency (the classifier's maps of a few ID test
    scans scored against their synthetic lesion masks: pointing game per method, in the report).

    MAE instead of DINO (1200 steps; about 9 min on 2 cores):
    fmct demo --out demo_mae --config configs/mae-demo-cpu.yaml --set max_steps=1200

    Re-running reuses finished stages; a changed --config or --set reruns pretraining and what follows.
    Leaves DIR/report/report.html, DIR/report/report.json and DIR/models/{backbone,classifier} (model
    directories for `fmct predict`).
    """
    from rich.console import Console

    from fmct.demo import DemoConfigError, run_demo

    console = Console(width=max(Console().width, 110))
    cfg = _demo_config(seed, workers, quick, feature, config, overrides or [], backbone, pretrain, console)
    try:
        summary = run_demo(out, cfg, log=console.print)
    except DemoConfigError as e:  # a bad --config / --set, found before any stage ran
        console.print(f"[red]fmct demo: {e}[/]")
        raise typer.Exit(2) from None
    except (RuntimeError, ValueError, FileNotFoundError) as e:
        console.print(f"[red]fmct demo: {e}[/]")
        raise typer.Exit(1) from None
    console.print(_headline_table(summary["rows"]))
    console.print(_differences_table(summary["differences"]))
    sal = summary.get("saliency") or {}
    if sal.get("cases"):
        hits = ", ".join(f"{r['method']} {r['hits']}/{r['cases']}" for r in sal["methods"])
        console.print(f"saliency vs lesion masks (pointing game, {sal['tol_mm']:g} mm): {hits}; chance "
                      f"{sal['chance']['hit_rate']:.2f} (details in the report)")  # fmt: skip
    console.print(f"models: {summary['models']['backbone']}  {summary['models']['classifier']}")
    console.print(f"report: [bold]{summary['report_html']}[/]  (numbers: {summary['report_json']})")
    console.print(f"demo finished in {summary['seconds']:.0f} s")


def _demo_config(
    seed: int,
    workers: int,
    quick: bool,
    feature: str,
    config: Path | None,
    overrides: list[str],
    backbone: Path | None,
    pretrain: bool,
    console: Any,
) -> Any:
    """The :class:`fmct.demo.DemoConfig` of the options: ``--quick`` sizes, the pretraining config and
    overrides, and the backbone (given, else the shipped one unless pretraining is asked for or implied)."""
    from fmct.demo import SHIPPED_BACKBONE, DemoConfig

    cfg = DemoConfig(seed=seed, workers=workers)
    if quick:
        cfg = DemoConfig(
            seed=seed, workers=workers, n_pool=24, n_labelled=60, n_ood=16, size=64, seeds=[0],
            pretrain_overrides=["max_steps=6", "batch_size=4"], scratch_epochs=1, scratch_fractions=[1.0],
            n_boot=200,
        )  # fmt: skip
    cfg.feature = feature
    if config is not None:
        cfg.pretrain_config = str(config)
    cfg.pretrain_overrides = [*cfg.pretrain_overrides, *overrides]
    if backbone is not None:
        cfg.backbone = str(backbone)
    elif not (pretrain or config is not None or overrides):
        if (SHIPPED_BACKBONE / "model.safetensors").is_file():
            cfg.backbone = str(SHIPPED_BACKBONE)
        else:
            console.print(
                f"no backbone at {SHIPPED_BACKBONE} (`make weights` makes one): pretraining in the demo"
            )
    return cfg


def _differences_table(rows: list[dict]):  # noqa: ANN202 - rich Table, imported lazily
    """Paired differences SSL − other model (macro AUROC), with a word for whether the CI excludes 0."""
    from rich.table import Table

    table = Table(title="SSL minus each other model (paired: same test scans and bootstrap replicates)")
    for col in ("vs", "labels", "test set", "difference [95 % CI]", "resolved?"):
        table.add_column(col, no_wrap=True)
    for r in sorted(rows, key=lambda r: (r["vs"], r["test"], float(r["labels"]))):
        lo, hi = r["ci"]
        verdict = "SSL better" if lo > 0 else ("SSL worse" if hi < 0 else "not resolved")
        table.add_row(
            r["vs"],
            f"{float(r['labels']):.0%}",
            r["test"],
            f"{r['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]",
            verdict,
        )
    return table


def _headline_table(rows: list[dict]):  # noqa: ANN202 - rich Table, imported lazily
    """Macro AUROC (mean over seeds, 95 % CI) per model × label fraction × test set."""
    from rich.table import Table

    table = Table(title="Macro AUROC over findings (mean over seeds, bootstrap 95 % CI)")
    for col in ("model", "method", "labels", "test set", "macro AUROC [95 % CI]", "seeds"):
        table.add_column(col, no_wrap=True)
    for r in sorted(rows, key=lambda r: (r["test"], float(r["labels"]), r["model"])):
        lo, hi = r["ci"]
        share = f"{float(r['labels']):.0%}"
        table.add_row(
            r["model"],
            r["method"],
            share,
            r["test"],
            f"{r['auroc']:.3f} [{lo:.3f}, {hi:.3f}]",
            str(r["n_seeds"]),
        )
    return table
