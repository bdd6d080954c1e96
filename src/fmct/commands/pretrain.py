"""`fmct pretrain`: self-supervised pretraining (DINO + iBOT + KoLeo, MAE or SimCLR) on a store."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def pretrain(
    overrides: list[str] = typer.Argument(
        None, metavar="[KEY=VALUE]...", help="config overrides key=value, e.g. max_steps=30 optim.lr=1e-4"
    ),
    config: Path = typer.Option(None, "--config", "-c", help="YAML config (e.g. configs/demo-cpu.yaml)"),
    data: Path = typer.Option(None, "--data", "-d", help="store folder written by `fmct ingest`"),
    out: Path = typer.Option(None, "--out", "-o", help="run folder to create (checkpoints, logs, model/)"),
    resume: Path = typer.Option(None, "--resume", help="continue the run in this folder from its checkpoint"),
    export_only: bool = typer.Option(False, "--export-only", help="with --resume: only export RUN/model"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Pretrain a 3D ViT (method: dino, mae or simclr) or, with SimCLR, MONAI's SegResEncoder (CT-FM's recipe:
    configs/simclr-demo-cpu.yaml) on the scans of a store and export the (teacher) backbone to RUN/model.

    New run:  fmct pretrain --config configs/demo-cpu.yaml --data STORE --out RUN key=value ...

    Resume:   fmct pretrain --resume RUN max_steps=2000 ...  (continues exactly where it stopped)

    Export:   fmct pretrain --resume RUN --export-only

    Multi-GPU / multi-process: torchrun --nproc_per_node K -m fmct.cli pretrain ... (DDP; FSDP2 with
    distributed.strategy=fsdp). Writes RUN/config.yaml, RUN/checkpoint.pt, RUN/metrics.jsonl, RUN/tb/.

    Choosing a step: snapshot_every=N also exports the teacher every N steps to RUN/snapshots/step-NNNNNN;
    labels=LABELS.csv best_by=knn_auroc_brain_max keeps RUN/model-best, the teacher at the best kNN
    monitor so far (RUN/best.json says which step; evaluate it on scans other than the monitor's).
    """
    from fmct.api import UsageError
    from fmct.api import pretrain as run_pretrain
    from fmct.diskspace import NoSpaceError
    from fmct.store import StoreReadError
    from fmct.train.loop import NonFiniteLoss

    try:
        summary = run_pretrain(
            config,
            data,
            out,
            list(overrides or []),
            resume=resume,
            export_only=export_only,
            progress=progress,
        )
    except (UsageError, FileNotFoundError) as e:  # checked before any run folder is made
        typer.echo(f"fmct pretrain: {e}", err=True)
        raise typer.Exit(2) from None
    except NonFiniteLoss as e:
        typer.echo(f"fmct pretrain: stopped: {e}", err=True)
        raise typer.Exit(3) from None
    except NoSpaceError as e:  # checkpoint / export write: the last complete checkpoint is kept
        typer.echo(
            f"fmct pretrain: {e}; free some space and continue with --resume {resume or out}", err=True
        )
        raise typer.Exit(1) from None
    except StoreReadError as e:  # a damaged scan file: name it (resume continues once it is re-ingested)
        typer.echo(f"fmct pretrain: {e.one_line()}", err=True)
        raise typer.Exit(1) from None
    if export_only:
        typer.echo(f"exported {summary.model}")
    elif int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 reports for all
        typer.echo(summary.line())
