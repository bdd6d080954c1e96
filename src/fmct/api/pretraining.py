"""``fmct.pretrain``: self-supervised pretraining on a store (``fmct pretrain``), returning a summary."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fmct.api.errors import UsageError

Overrides = Mapping[str, Any] | Sequence[str] | None


@dataclass
class PretrainSummary:
    """What a pretraining call left behind.

    Attributes:
        run: the run folder (config.yaml, checkpoint.pt, metrics.jsonl, tb/).
        model: the exported teacher backbone directory (``RUN/model``).
        step: the step the run is at.
        loss: the loss of the last step trained in this call; None when nothing was left to train (or
            ``export_only``).
        best: ``RUN/best.json`` (``key``, ``value``, ``step``, ``path``) when the config keeps a best model
            (``best_by``), else None.
    """

    run: Path
    model: Path
    step: int
    loss: float | None = None
    best: dict[str, Any] | None = None

    def load_model(self, best: bool = False) -> Any:
        """The exported backbone (``best=True``: the kept best one) as a ``BackboneModel``."""
        from fmct.models.hub import load_model

        if best and self.best is None:
            raise UsageError(f"{self.run}: this run keeps no best model (set best_by= and labels=)")
        return load_model(self.best["path"] if best and self.best else self.model)

    def line(self) -> str:
        """The line ``fmct pretrain`` ends with (two or three with a best model)."""
        if self.loss is not None:
            text = f"done: step {self.step}, loss {self.loss:.4f}; model in {self.model}"
        else:
            text = (
                f"nothing to train: {self.run} is already at step {self.step} (raise max_steps=... to go on); "
                f"model in {self.model}"
            )
        if self.best is not None:
            from fmct.train.keeper import describe_best

            text += "\n" + describe_best(self.best, self.step)
        return text


def override_list(overrides: Overrides) -> list[str]:
    """``{"max_steps": 30, "optim": {"lr": 1e-4}}`` or ``["max_steps=30"]`` -> ``["max_steps=30", "optim.lr=0.0001"]``."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        return [overrides]
    if not isinstance(overrides, Mapping):
        return [str(o) for o in overrides]
    out: list[str] = []
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            out += [f"{key}.{item}" for item in override_list(value)]
        else:
            out.append(f"{key}={json.dumps(value)}")  # JSON is YAML: numbers, lists, quoted strings, null
    return out


def _resume_config(resume: Path, data: Path | None, overrides: list[str]) -> tuple[dict[str, Any], Path]:
    import yaml

    from fmct.train.config import check_keys, override

    cfg_path = resume / "config.yaml"
    if not cfg_path.exists():
        raise FileNotFoundError(
            f"{cfg_path}: not found; resuming needs a run folder written by fmct pretrain"
        )
    try:
        cfg = yaml.safe_load(cfg_path.read_text())
        check_keys(cfg)
        cfg = override(cfg, overrides)
    except (ValueError, yaml.YAMLError) as e:
        raise UsageError(f"{cfg_path}: {e}") from None
    if data is None:
        try:
            data = Path(json.loads((resume / "run.json").read_text())["data"])
        except (OSError, KeyError, ValueError):
            raise UsageError(f"{resume / 'run.json'}: unreadable; give the store (--data STORE)") from None
    if not (resume / "checkpoint.pt").exists() and not (resume / "checkpoint-prev.pt").exists():
        raise FileNotFoundError(f"{resume / 'checkpoint.pt'}: not found; nothing to resume")
    return cfg, data


def _new_config(
    config: Path | None, data: Path | None, out: Path | None, overrides: list[str]
) -> dict[str, Any]:
    from fmct.train.config import resolve_config

    if data is None or out is None:
        raise UsageError("a new run needs a store (--data STORE) and a run folder (--out RUN), or resume RUN")
    if config is not None and not config.exists():
        raise FileNotFoundError(f"{config}: config file not found")
    if (out / "checkpoint.pt").exists():
        raise UsageError(f"{out}: already holds a run; resume it (--resume {out}) to continue")
    try:
        return resolve_config(config, overrides)
    except ValueError as e:
        raise UsageError(f"{config or 'config'}: {e}") from None


def _check_store(data: Path, need_scans: bool) -> None:
    from fmct.store import ScanStore

    if not (data / "manifest.parquet").exists():
        raise FileNotFoundError(f"{data}: not a store (no manifest.parquet); create one with `fmct ingest`")
    store = ScanStore(data)
    if need_scans and not store.scan_ids:
        raise UsageError(
            f"no usable scans in {data}: 0 of {len(store.manifest)} input(s) were stored ok "
            f"(the reasons are in {data / 'manifest.parquet'})"
        )


def prepare_run(
    config: str | Path | None = None,
    data: str | Path | None = None,
    out: str | Path | None = None,
    overrides: Overrides = None,
    *,
    resume: str | Path | None = None,
    export_only: bool = False,
) -> tuple[dict[str, Any], Path, Path]:
    """Check the arguments of :func:`pretrain` before any run folder is made: ``(config dict, store, run)``.

    Raises:
        FileNotFoundError: a config, store, run config or checkpoint that is not there.
        UsageError: arguments that do not fit together, a bad config key or value, a store without usable scans.
    """
    items = override_list(overrides)
    if resume is not None:
        run = Path(resume)
        cfg, store = _resume_config(run, None if data is None else Path(data), items)
    else:
        if export_only:
            raise UsageError("export_only (--export-only) needs a run to resume (--resume RUN)")
        run = Path(out) if out is not None else None  # type: ignore[assignment]
        store = Path(data) if data is not None else None  # type: ignore[assignment]
        cfg = _new_config(None if config is None else Path(config), store, run, items)
    _check_store(store, need_scans=not export_only)
    return cfg, store, run


def pretrain(
    config: str | Path | None = None,
    data: str | Path | None = None,
    out: str | Path | None = None,
    overrides: Overrides = None,
    *,
    resume: str | Path | None = None,
    export_only: bool = False,
    progress: bool = True,
) -> PretrainSummary:
    """Pretrain a 3D ViT on the scans of a store (DINO + iBOT + KoLeo, or MAE) and export the teacher backbone.

    New run: ``pretrain("configs/demo-cpu.yaml", "store", "runs/ssl", {"max_steps": 30})``; resume exactly
    where a run stopped: ``pretrain(resume="runs/ssl", overrides={"max_steps": 60})``; only export
    ``RUN/model`` from its checkpoint: ``pretrain(resume="runs/ssl", export_only=True)``.

    Args:
        config: YAML config (None: the defaults of ``fmct.train.config``).
        data: store folder (a resumed run defaults to its own).  out: run folder to create.
        overrides: ``{"key": value}`` (nested dicts or dotted keys) or ``["key=value", ...]``; unknown keys raise.
        progress: show a progress bar.

    Returns:
        :class:`PretrainSummary` (``run``, ``model``, ``step``, ``loss``, ``best``; ``load_model()``).

    Raises:
        FileNotFoundError / UsageError: see :func:`prepare_run` (nothing is written then).
        fmct.train.loop.NonFiniteLoss: a NaN/Inf loss (the last good checkpoint is kept).
        fmct.diskspace.NoSpaceError: disk full.  fmct.store.StoreReadError: a damaged scan file.
    """
    from fmct.train.distributed import barrier, cleanup
    from fmct.train.keeper import read_best
    from fmct.train.loop import export_run, train

    cfg, store, run = prepare_run(config, data, out, overrides, resume=resume, export_only=export_only)
    if export_only:
        from fmct.models.hub import read_config

        model = Path(export_run(run, store))
        return PretrainSummary(run, model, int(read_config(model)["training"]["steps"]))
    try:
        res = train(cfg, store, run, resume=resume is not None, progress=progress)
        # every rank waits here until all are done (rank 0 exports the model last): tearing the process group
        # down while another rank still has gloo work in flight aborted a rank now and then (SIGABRT)
        barrier()
    finally:
        cleanup()
    last = res.get("last") or {}
    best = read_best(run)
    if best is not None and cfg.get("best_by") != best.get("key"):
        best = None
    loss = float(last["loss"]) if "loss" in last else None
    return PretrainSummary(run, run / "model", int(res["step"]), loss, best)
