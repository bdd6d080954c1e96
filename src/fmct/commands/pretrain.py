"""`fmct pretrain`: self-supervised pretraining (DINO + iBOT + KoLeo, MAE or SimCLR) on a store."""

from __future__ import annotations

import os
from pathlib import Path

import typer


def _require_scans(data: Path, fail) -> None:
    """``fail`` (before any run folder is made) when the store has no scan stored ``ok``."""
    from fmct.store import ScanStore

    store = ScanStore(data)
    if not store.scan_ids:
        n = len(store.manifest)
        fail(
            f"no usable scans in {data}: 0 of {n} input(s) were stored ok "
            f"(the reasons are in {data / 'manifest.parquet'})"
        )


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
    import json

    from fmct.train.config import check_keys, override, resolve_config

    overrides = list(overrides or [])

    def fail(msg: str) -> None:
        typer.echo(f"fmct pretrain: {msg}", err=True)
        raise typer.Exit(2)

    if resume is not None:
        import yaml

        cfg_path = resume / "config.yaml"
        if not cfg_path.exists():
            fail(f"{cfg_path}: not found; --resume needs a run folder written by fmct pretrain")
        try:
            cfg = yaml.safe_load(cfg_path.read_text())
            check_keys(cfg)
            cfg = override(cfg, overrides)
        except ValueError as e:
            fail(f"{cfg_path}: {e}")
        if data is None:
            try:
                data = Path(json.loads((resume / "run.json").read_text())["data"])
            except (OSError, KeyError, ValueError):
                fail(f"{resume / 'run.json'}: unreadable; pass --data STORE")
        if not (resume / "checkpoint.pt").exists() and not (resume / "checkpoint-prev.pt").exists():
            fail(f"{resume / 'checkpoint.pt'}: not found; nothing to resume")
        run = resume
    else:
        if export_only:
            fail("--export-only needs --resume RUN")
        if data is None or out is None:
            fail("a new run needs --data STORE and --out RUN (or --resume RUN)")
        if config is not None and not config.exists():
            fail(f"{config}: config file not found")
        if (out / "checkpoint.pt").exists():
            fail(f"{out}: already holds a run; use --resume {out} to continue it")
        try:
            cfg = resolve_config(config, overrides)
        except ValueError as e:
            fail(f"{config or 'config'}: {e}")
        run = out
    if not (Path(data) / "manifest.parquet").exists():
        fail(f"{data}: not a store (no manifest.parquet); create one with `fmct ingest`")
    if not export_only:
        _require_scans(Path(data), fail)

    from fmct.diskspace import NoSpaceError
    from fmct.store import StoreReadError
    from fmct.train.distributed import cleanup
    from fmct.train.loop import NonFiniteLoss, export_run, train

    if export_only:
        path = export_run(run, data)
        typer.echo(f"exported {path}")
        return
    try:
        res = train(cfg, data, run, resume=resume is not None, progress=progress)
    except NonFiniteLoss as e:
        typer.echo(f"fmct pretrain: stopped: {e}", err=True)
        raise typer.Exit(3) from None
    except NoSpaceError as e:  # checkpoint / export write: the last complete checkpoint is kept
        typer.echo(f"fmct pretrain: {e}; free some space and continue with --resume {run}", err=True)
        raise typer.Exit(1) from None
    except StoreReadError as e:  # a damaged scan file: name it (resume continues once it is re-ingested)
        typer.echo(f"fmct pretrain: {e.one_line()}", err=True)
        raise typer.Exit(1) from None
    finally:
        cleanup()
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports for all
        return
    last = res.get("last") or {}
    if "loss" in last:
        typer.echo(f"done: step {res['step']}, loss {last['loss']:.4f}; model in {run / 'model'}")
    else:  # resumed at max_steps: nothing left to train
        typer.echo(
            f"nothing to train: {run} is already at step {res['step']} (raise max_steps=... to go on); "
            f"model in {run / 'model'}"
        )
    from fmct.train.keeper import describe_best, read_best

    best = read_best(run)
    if best is not None and cfg.get("best_by") == best.get("key"):
        typer.echo(describe_best(best, int(res["step"])))
