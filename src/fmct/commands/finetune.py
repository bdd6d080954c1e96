"""`fmct finetune`: supervised fine-tuning (full / LoRA / linear) or training from scratch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from fmct.commands._common import device_option


def finetune(
    data: Path = typer.Option(..., "--data", "-d", help="Store directory written by `fmct ingest`."),
    labels: Path = typer.Option(..., "--labels", help="labels.csv (scan_id, patient_id, site, findings)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output classifier model directory (usable by `fmct predict`)."
    ),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="Pretrained model directory to start from."
    ),
    splits: Path | None = typer.Option(None, "--splits", help="splits.csv; default: patient-level splits."),
    mode: str = typer.Option("full", "--mode", help="full, lora (ViT only) or linear (frozen backbone)."),
    epochs: int = typer.Option(
        10, "--epochs", min=1, help="Passes over the training scans (early stopping may end sooner)."
    ),
    lr: float = typer.Option(3e-4, "--lr", help="Peak learning rate of the last backbone layer."),
    layer_decay: float = typer.Option(0.75, "--layer-decay", help="Layer-wise lr decay (1 = none)."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Scans per optimiser step."),
    fraction: float = typer.Option(1.0, "--fraction", help="Fraction of the training labels to use."),
    seed: int = typer.Option(
        0,
        "--seed",
        help="Seed of the label subset, the random init (the head; the backbone with --scratch or --arch) and the batch order.",
    ),
    scratch: bool = typer.Option(
        False, "--scratch", help="Random init of --model's architecture (baseline)."
    ),
    arch: str | None = typer.Option(None, "--arch", help="Without --model: vit3d, resnet3d or a ViT preset."),
    input_size: int = typer.Option(64, "--input-size", help="Input cube size without --model (voxels)."),
    train_site: str | None = typer.Option(
        None, "--train-site", help="In-distribution site (default: largest)."
    ),
    device: str = device_option("Where the network trains (fp32)"),
) -> None:
    """Fine-tune on the training split with early stopping on the validation split's macro AUROC.

    Multi-label BCE with pos_weight; findings with a single class in the training labels are masked.
    LoRA adapters (ViT qkv/proj/fc layers) are merged into the weights before saving.
    """
    from fmct.commands._common import resolve_device_option, run_or_fail, usage
    from fmct.store import ScanStore
    from fmct.train.finetune import FinetuneConfig, build_model
    from fmct.train.finetune import finetune as run_finetune

    dev = resolve_device_option(device)  # first: a GPU asked for and missing is said before anything else
    if model is None and arch is None:
        usage("give --model (pretrained) or --arch (train from scratch)")
    if not (data / "manifest.parquet").exists():
        usage(f"{data}: not an fmct store (no manifest.parquet)")
    cfg = run_or_fail(
        FinetuneConfig,
        mode=mode,
        epochs=epochs,
        lr=lr,
        layer_decay=layer_decay,
        batch_size=batch_size,
        fraction=fraction,
        seed=seed,
    )
    store = ScanStore(data)
    scans = _training_scans(labels, splits, store, train_site, fraction, seed)
    clf = run_or_fail(
        build_model,
        model,
        scans.findings,
        scratch=scratch,
        arch=arch,
        input_size=input_size,
        preprocessing=store.preprocess_config,
        seed=seed,
    )
    typer.echo(f"fine-tuning ({mode}) on {len(scans.train)} scans, validating on {len(scans.val)}", err=True)
    _, info = run_or_fail(
        run_finetune,
        clf,
        store,
        scans.train,
        scans.y_train,
        scans.val,
        scans.y_val,
        scans.findings,
        cfg,
        out_dir=out,
        progress=True,
        device=dev,
    )
    _print_outcome(info, out)


@dataclass
class _Scans:
    """The training and validation scans of the store, with their ``(n, F)`` labels."""

    findings: list[str]
    train: list[str]
    y_train: Any
    val: list[str]
    y_val: Any


def _training_scans(
    labels: Path, splits: Path | None, store: Any, train_site: str | None, fraction: float, seed: int
) -> _Scans:
    """Train / val scans of the labels that are in the store (train subsampled to ``fraction`` with
    ``seed``); exit 1 when no training scan is in the store, a warning for labelled scans that are not."""
    from fmct.commands._common import fail, run_or_fail
    from fmct.evaluate.splits import load_splits, make_splits, subsample_fraction
    from fmct.labels.table import label_columns, label_matrix, read_labels, unmatched_note

    df = run_or_fail(read_labels, labels)
    sp = run_or_fail(load_splits, splits) if splits else run_or_fail(make_splits, df, train_site)
    have = set(store.scan_ids)
    findings = label_columns(df)
    train_ids = list(sp.loc[sp["split"] == "train", "scan_id"])
    val_ids = list(sp.loc[sp["split"] == "val", "scan_id"])
    tr = [s for s in train_ids if s in have]
    va = [s for s in val_ids if s in have]
    if not tr:
        fail(f"{labels}: no training scan of the labels is in the store {store.root}")
    note = unmatched_note(train_ids + val_ids, have, "scan in the store")
    if note:
        typer.echo(f"fmct finetune: warning: {note} ({labels})", err=True)
    y_tr = label_matrix(df, tr, findings)
    rows = run_or_fail(subsample_fraction, y_tr, fraction, seed)
    return _Scans(findings, [tr[i] for i in rows], y_tr[rows], va, label_matrix(df, va, findings))


def _print_outcome(info: dict[str, Any], out: Path) -> None:
    """The best epoch and its validation macro AUROC, the findings not trained, the output directory."""
    best = info["best_val_macro_auroc"]
    typer.echo(
        f"best epoch {info['best_epoch']}: val macro AUROC {best:.3f}"
        if best is not None
        else "no usable validation AUROC (kept the first epoch)"
    )
    if info["na_findings"]:
        typer.echo(f"not trained (one class in train): {', '.join(info['na_findings'])}")
    typer.echo(f"wrote {out}")
