"""The pretraining loop behind ``fmct pretrain`` (DINO+iBOT+KoLeo, MAE or SimCLR), one process or torchrun.

Run directory: ``config.yaml`` (resolved), ``checkpoint.pt`` (+ ``checkpoint-prev.pt``), ``metrics.jsonl``
(one JSON per step), ``tb/`` (TensorBoard), ``model/`` (exported teacher backbone), ``rank_checks.json``.
A run resumed from its checkpoint reproduces the uninterrupted run exactly on CPU: data order and
augmentations derive from ``(seed, sample number)``, masks from ``(seed, step, rank)``, the global RNG
states are restored.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import yaml

from fmct.config import save_config
from fmct.cpu_heap import reuse_freed_memory
from fmct.labels import FINDINGS
from fmct.models.hub import save_pretrained
from fmct.preprocess.brain_mask import brain_max_tokens, input_patch_fractions
from fmct.preprocess.model_input import to_model_input
from fmct.preprocess.windows import DEFAULT_WINDOWS
from fmct.progress import progress
from fmct.ssl.augment import AugmentConfig
from fmct.ssl.data import SSLDataset, augment_batch, make_loader, sample_seed
from fmct.ssl.mae import MAEMetaArch
from fmct.ssl.meta_arch import DINOMetaArch
from fmct.ssl.simclr import SimCLRMetaArch
from fmct.store.reader import open_store
from fmct.train import monitors
from fmct.train.backbone import backbone_from_config
from fmct.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fmct.train.config import adamw_betas, check_keys, check_values, max_grad_norm
from fmct.train.distributed import DistInfo, all_reduce_mean, cleanup, init_distributed, wrap_student
from fmct.train.keeper import ModelKeeper
from fmct.train.optim import apply_schedules, build_optimizer, param_groups
from fmct.train.precision import autocast, resolve_precision
from fmct.train.schedules import SSLSchedules


class NonFiniteLoss(RuntimeError):
    """Raised when the loss or gradient norm is NaN/Inf; names the step and the scans of the batch."""


def aug_config(cfg: dict[str, Any], windows: Any) -> AugmentConfig:
    """Augmentation settings of a run (MAE uses one global view, SimCLR two, and no local views)."""
    d = dict(cfg["data"])
    d["windows"] = windows
    if cfg["method"] == "mae":
        d["n_global"], d["n_local"] = 1, 0
    elif cfg["method"] == "simclr":
        d["n_global"], d["n_local"] = 2, 0
    return AugmentConfig.from_dict(d)


def store_windows(store: Any, cfg: dict[str, Any]) -> list[list[float]]:
    """Windows from the config, else from the store's preprocessing, else the defaults."""
    w = cfg["data"].get("windows") or (store.preprocess_config or {}).get("windows") or DEFAULT_WINDOWS
    return [[float(a), float(b)] for a, b in w]


def build_arch(cfg: dict[str, Any], in_chans: int) -> DINOMetaArch | MAEMetaArch | SimCLRMetaArch:
    """Student/teacher (DINO), MAE or SimCLR model for a resolved config."""
    backbone = backbone_from_config(cfg, in_chans)
    if cfg["method"] == "mae":
        return MAEMetaArch(backbone, cfg["mae"])
    if cfg["method"] == "simclr":
        return SimCLRMetaArch(backbone, cfg["simclr"])
    return DINOMetaArch(backbone, cfg["dino"])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _trim_metrics(path: Path, start_step: int) -> None:
    """Drop lines at or after ``start_step`` (logged after the checkpoint we resume from), and a last
    line cut short by a crash or a full disk (it does not parse)."""
    if not path.exists():
        return
    keep = []
    for ln in path.read_text().splitlines():
        try:
            rec = json.loads(ln) if ln.strip() else None
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and rec.get("step", 0) < start_step:
            keep.append(ln)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)


def export_teacher(arch: Any, store: Any, cfg: dict[str, Any], windows: Any, out: Path, step: int) -> Path:
    """Export the teacher backbone (MAE: the encoder; SimCLR: the encoder without its projection head) to
    ``out`` in the model-directory format."""
    return save_backbone(arch.export_backbone(), store, cfg, windows, out, step)


def save_backbone(
    backbone: torch.nn.Module, store: Any, cfg: dict[str, Any], windows: Any, out: Path, step: int
) -> Path:
    """Write ``backbone`` (a ViT3D or a MONAI CNN) to ``out`` as a model directory with the store's
    preprocessing."""

    pp = dict(store.preprocess_config or {})
    pp["windows"] = windows
    pp["input_size"] = int(cfg["data"]["global_size"])
    training = {"method": cfg["method"], "steps": step, "seed": cfg["seed"], "batch_size": cfg["batch_size"]}
    n = len(store.scan_ids)
    where = getattr(store, "root", None)
    card = {
        "training_data": f"{n} unlabelled scans of the store `{Path(where).name if where else 'in memory'}`, "
        f"self-supervised ({cfg['method']}, {step} steps of {cfg['batch_size']} scans, seed {cfg['seed']}); "
        "the store's preprocessing is below. No labels were used."
    }
    return save_pretrained(
        backbone,
        out,
        kind="backbone",
        preprocessing=pp,
        name=f"fmct-{cfg['method']}",
        training=training,
        card=card,
    )


class KnnMonitor:
    """kNN AUROC of frozen teacher features on a small labelled subset of the store: of the CLS token
    (``knn_auroc_macro``) and of the max over the intracranial patch tokens (``knn_auroc_brain_max``, the
    ``fmct embed`` readout that ignores scalp, skull and head pose; docs/results.md "Reading the brain").
    The kNN is the evaluation protocol's, cross-fitted by patient (:func:`fmct.train.monitors.knn_auroc`)."""

    def __init__(self, store: Any, labels_csv: str, size: int, windows: Any, max_scans: int) -> None:
        df = pd.read_csv(labels_csv)
        df["scan_id"] = df["scan_id"].astype(str)
        ids = set(store.scan_ids)
        df = df[df["scan_id"].isin(ids)].sort_values("scan_id").head(max_scans)
        self.names = [f for f in FINDINGS if f in df.columns]
        self.labels = df[self.names].to_numpy(dtype=np.float64)
        self.groups = df["patient_id"].astype(str).tolist() if "patient_id" in df else df["scan_id"].tolist()
        self.ids = df["scan_id"].tolist()
        self.store, self.size, self.windows = store, size, windows
        self._x: torch.Tensor | None = None
        self._fractions: torch.Tensor | None = None

    def __call__(self, backbone: torch.nn.Module, device: torch.device) -> dict[str, float]:
        if len(self.ids) < 4:
            return {}
        if self._x is None:
            self._x = torch.stack(
                [to_model_input(self.store.load(s), self.size, self.windows)[0] for s in self.ids]
            )
            self._fractions = input_patch_fractions(self._x, self.windows, backbone.grid_size(self._x.shape))
        was = backbone.training
        backbone.eval()
        cls, brain = [], []
        with torch.no_grad():
            for xb, fb in zip(self._x.split(8), self._fractions.split(8), strict=True):
                out = backbone.forward_features(xb.to(device))
                cls.append(out["cls"].float().cpu())
                brain.append(brain_max_tokens(out["patch"].float(), fb.to(device)).cpu())
        backbone.train(was)
        rec = {}
        for key, feats in (("knn_auroc_macro", cls), ("knn_auroc_brain_max", brain)):
            res = monitors.knn_auroc(torch.cat(feats).numpy(), self.labels, self.groups, self.names)
            if "macro" in res:
                rec[key] = res["macro"]
        return rec


def _progress(enabled: bool, total: int, start: int, every_n: int = 0):
    """The pretraining progress: a rich bar on a terminal; in a log, a plain line every ``every_n`` steps
    (``log_every``), or every 30 s when it is 0."""

    def columns() -> list[Any]:
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        return [TextColumn("pretrain"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[sps]:.1f} samples/s"),
                TimeElapsedColumn(), TimeRemainingColumn()]  # fmt: skip

    prog = progress(
        columns, lambda f: f"loss {f['loss']:.4f} {f['sps']:.1f} samples/s", enabled=enabled, every_n=every_n
    )
    task = prog.add_task("pretrain", total=total, completed=start, loss=float("nan"), sps=0.0)
    return prog, task


def train(
    cfg: dict[str, Any],
    data_root: str | Path,
    run_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    info: DistInfo | None = None,
) -> dict[str, Any]:
    """Pretrain until ``cfg["max_steps"]``; returns ``{"step", "last": metrics of the last step, ...}``.

    Raises:
        NonFiniteLoss: on NaN/Inf loss or gradients (after writing nothing for that step).
    """

    check_values(cfg)
    s = _Session.open(cfg, data_root, Path(run_dir), resume, info or init_distributed(cfg["device"]))
    max_steps, start = int(cfg["max_steps"]), s.start
    log = _MetricsLog(s.run, start, s.info.is_main)
    prog, task = _progress(progress and s.info.is_main, max_steps, start, int(cfg.get("log_every") or 0))
    ck_every = int(cfg["checkpoint_every"])
    last: dict[str, Any] = {}
    step = start
    s.arch.train()
    t_prev = time.perf_counter()
    try:
        with prog:
            for step, batch in zip(range(start, max_steps), s.loader, strict=False):
                rec, aux = s.step(step, batch)
                now = time.perf_counter()
                rec["samples_per_s"] = int(cfg["batch_size"]) * s.info.world / max(now - t_prev, 1e-9)
                t_prev = now
                s.monitor(step, rec, aux)
                last = rec
                log.write(rec, step)
                prog.update(task, completed=step + 1, loss=rec["loss"], sps=rec["samples_per_s"])
                done = step + 1
                if s.monitor_net is not None and s.keeper.wants_snapshot(done):
                    backbone = s.monitor_net()  # collective under FSDP
                    if s.info.is_main and backbone is not None:
                        s.keeper.snapshot(backbone, done)
                if ck_every and done % ck_every == 0 and done < max_steps:
                    s.checkpoint(done)
        final = max(step + 1, start) if max_steps > start else start
        if max_steps > start:
            s.checkpoint(final)
        s.export(final)
    finally:
        log.close()
    return {"step": final, "last": last, "run_dir": str(s.run)}


class _MetricsLog:
    """``RUN/metrics.jsonl`` (one JSON line per step) and TensorBoard scalars, on the main rank only; on
    resume the lines past the checkpoint are dropped first."""

    def __init__(self, run: Path, start: int, main: bool) -> None:
        self.file = self.writer = None
        if main:
            _trim_metrics(run / "metrics.jsonl", start)
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run / "tb"), purge_step=start)
            self.file = open(run / "metrics.jsonl", "a")  # noqa: SIM115

    def write(self, rec: dict[str, Any], step: int) -> None:
        if self.file is None or self.writer is None:
            return
        self.file.write(json.dumps(rec) + "\n")
        self.file.flush()
        for k, x in rec.items():
            if k != "step" and isinstance(x, float) and math.isfinite(x):
                self.writer.add_scalar(f"pretrain/{k}", x, step)

    def close(self) -> None:
        for f in (self.file, self.writer):
            if f is not None:
                f.close()


@dataclass
class _Session:
    """Everything one pretraining run holds: config, store, model, optimiser, data, monitors, keeper.

    Made by :meth:`open` (fresh or resumed from ``RUN/checkpoint.pt``); :meth:`step` trains one batch,
    :meth:`monitor` adds the monitors to a step's record, :meth:`checkpoint` and :meth:`export` write."""

    cfg: dict[str, Any]
    run: Path
    info: DistInfo
    store: Any
    windows: list[list[float]]
    aug: AugmentConfig
    arch: Any
    fsdp: bool
    opt: torch.optim.Optimizer
    last_params: list[torch.Tensor]
    start: int
    dataset: SSLDataset
    loader: Any
    keeper: ModelKeeper
    sched: SSLSchedules
    precision: Any
    knn: KnnMonitor | None = None
    monitor_net: MonitorBackbone | None = None
    params: list[torch.Tensor] = field(default_factory=list)

    @classmethod
    def open(
        cls, cfg: dict[str, Any], data_root: str | Path, run: Path, resume: bool, info: DistInfo
    ) -> _Session:
        _seed_all(int(cfg["seed"]))
        if info.device.type == "cpu":  # each step's large activations come from the heap, not fresh pages
            reuse_freed_memory()
        store = open_store(data_root)
        windows = store_windows(store, cfg)
        aug = aug_config(cfg, windows)
        arch = build_arch(cfg, len(windows)).to(info.device)
        start, ck = 0, None
        if resume:
            ck = load_checkpoint(run, map_location="cpu")
            arch.load_state_dict(ck["model"])
            start = int(ck["step"])
        strategy = cfg["distributed"]["strategy"]
        fsdp = strategy == "fsdp" and info.enabled
        arch.set_student_forward(wrap_student(arch.student, info, strategy))
        if fsdp and hasattr(arch, "teacher"):
            wrap_student(arch.teacher, info, strategy)
        # the optimiser is built after wrapping: FSDP2 replaces the parameters by sharded ones
        groups = param_groups(
            arch.student, "backbone.", float(cfg["optim"]["layer_decay"]), arch.last_layer_names()
        )
        opt = build_optimizer(groups, adamw_betas(cfg))
        if ck is not None:
            load_optimizer_state(arch, opt, ck["optimizer"], fsdp)
            if info.is_main:
                set_rng_state(ck["rng"])
            else:
                _seed_all(sample_seed(int(cfg["seed"]), start, salt=100 + info.rank))
            del ck
        elif info.rank:
            _seed_all(sample_seed(int(cfg["seed"]), 0, salt=100 + info.rank))
        if info.is_main:
            run.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run / "config.yaml")
            (run / "run.json").write_text(json.dumps({"data": str(Path(data_root).resolve())}))
        if cfg["data"]["augment_on"] not in ("loader", "device"):
            raise ValueError(
                f"data.augment_on must be 'loader' or 'device', got {cfg['data']['augment_on']!r}"
            )
        on_device = cfg["data"]["augment_on"] == "device"
        dataset = SSLDataset(store, store.scan_ids, aug, int(cfg["data"]["cache_size"]), int(cfg["seed"]),
                             augment=not on_device)  # fmt: skip
        loader = make_loader(dataset, start, int(cfg["max_steps"]), int(cfg["batch_size"]), info.rank, info.world,
                             int(cfg["data"]["num_workers"]))  # fmt: skip
        keeper = ModelKeeper(
            run,
            lambda bb, out, n: save_backbone(bb, store, cfg, windows, out, n),
            snapshot_every=int(cfg.get("snapshot_every") or 0),
            best_by=cfg.get("best_by"),
            resume=resume,
        )
        last_params = [p for g in groups if g["is_last_layer"] for p in g["params"]]
        precision = resolve_precision(cfg["precision"], info.device)
        s = cls(cfg, run, info, store, windows, aug, arch, fsdp, opt, last_params, start, dataset, loader, keeper,
                SSLSchedules.from_config(cfg), precision)  # fmt: skip
        s._monitors()
        s.params = [p for p in arch.student.parameters() if p.requires_grad]
        return s

    def _monitors(self) -> None:
        """kNN monitor (DINO and MAE): embeds on rank 0; under FSDP every rank joins the weight gather first."""
        cfg = self.cfg
        if cfg["labels"] and self.info.is_main:
            self.knn = KnnMonitor(self.store, cfg["labels"], self.aug.global_size, self.windows,
                                  int(cfg["knn_max_scans"]))  # fmt: skip
        if cfg["labels"] or self.keeper.needs_backbone:
            self.monitor_net = MonitorBackbone(
                self.arch, self.fsdp, self.info, lambda: build_arch(cfg, len(self.windows))
            )

    def step(self, step: int, batch: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """One optimiser step and EMA update on ``batch``; returns the step's record (losses, schedules,
        grad norm) and the loss's ``aux`` tensors for the monitors.

        Raises:
            NonFiniteLoss: NaN/Inf loss or gradient on any rank (before the optimiser steps).
        """

        cfg, info = self.cfg, self.info
        if cfg["data"]["augment_on"] == "device":
            batch = augment_batch(batch, self.dataset.crop, int(cfg["seed"]), info.device)
        v = self.sched.values(step)
        apply_schedules(self.opt, v["lr"], v["wd"], v["freeze_last_layer"])
        gen = torch.Generator().manual_seed(sample_seed(int(cfg["seed"]), step, salt=3 + info.rank))
        b = {k: (t.to(info.device, non_blocking=True) if torch.is_tensor(t) else t) for k, t in batch.items()}
        b["n_global"] = self.aug.n_global
        b["windows"] = self.windows
        with autocast(self.precision, info.device):
            loss, parts, aux = self.arch.compute_loss(b, v, gen)
        self.opt.zero_grad(set_to_none=True)
        bad = torch.tensor([0.0 if torch.isfinite(loss).item() else 1.0], device=info.device)
        gn = torch.tensor(float("nan"))
        if not bad.item():
            loss.backward()
            if v["freeze_last_layer"]:
                for p in self.last_params:
                    p.grad = None
            gn = torch.nn.utils.clip_grad_norm_(self.params, max_grad_norm(cfg))
            if not torch.isfinite(gn).item():
                bad += 1
        all_reduce_mean(bad)
        if bad.item() > 0:
            raise NonFiniteLoss(
                f"non-finite loss or gradient at step {step} (rank {info.rank}); "
                f"scans in this batch: {', '.join(batch['scan_ids'])}"
            )
        self.opt.step()
        self.arch.update_teacher(float(v["momentum"]))
        pt = torch.stack([loss.detach().float()] + [t.float() for t in parts.values()])
        all_reduce_mean(pt)
        rec: dict[str, Any] = {"step": step, "loss": float(pt[0])}
        rec.update({k: float(x) for k, x in zip(parts, pt[1:].tolist(), strict=True)})
        rec.update({"lr": v["lr"], "wd": v["wd"], "teacher_temp": v["teacher_temp"], "momentum": v["momentum"],
                    "grad_norm": float(gn)})  # fmt: skip
        return rec, aux

    def monitor(self, step: int, rec: dict[str, Any], aux: dict[str, Any]) -> None:
        """Monitors after the first update, after every ``monitor_every``-th and after the last (so that they
        score the same teachers as snapshots and checkpoints: step index s = s + 1 updates done)."""
        mon_every, max_steps = int(self.cfg["monitor_every"]), int(self.cfg["max_steps"])
        if not mon_every or not (step == 0 or (step + 1) % mon_every == 0 or step == max_steps - 1):
            return
        if "teacher_probs" in aux:
            rec.update(monitors.teacher_entropy(aux["teacher_probs"]))
        rec["effective_rank"] = monitors.effective_rank(aux["teacher_cls"])
        if self.monitor_net is not None and self.cfg["labels"]:
            backbone = self.monitor_net()  # collective under FSDP
            if self.knn is not None and backbone is not None:
                rec.update(self.knn(backbone, self.info.device))
                self.keeper.offer(rec, backbone, step + 1)

    def checkpoint(self, step_done: int) -> None:
        model_sd, opt_sd = full_state(self.arch, self.opt, self.fsdp)  # collective under FSDP
        if self.info.is_main:
            save_checkpoint(self.run, {"step": step_done, "model": model_sd, "optimizer": opt_sd,
                                       "rng": rng_state(), "method": self.cfg["method"]})  # fmt: skip

    def export(self, final: int) -> None:
        """Per-rank weight checksums (``RUN/rank_checks.json``) and the teacher backbone to ``RUN/model``."""
        export_arch = self.arch
        if self.fsdp:  # gather the full weights into an unsharded copy on rank 0
            model_sd, _ = full_state(self.arch, None, True)
            export_arch = build_arch(self.cfg, len(self.windows))
            if self.info.is_main:
                export_arch.load_state_dict(model_sd)
        checks = (
            _rank_checks(export_arch, self.info)
            if not self.fsdp
            else [_rank_checks(export_arch, DistInfo())[0]]
        )
        if self.info.is_main:
            (self.run / "rank_checks.json").write_text(json.dumps(checks))
            if self.cfg.get("export", True):
                export_teacher(export_arch, self.store, self.cfg, self.windows, self.run / "model", final)


class MonitorBackbone:
    """The backbone the kNN monitor embeds with: ``arch.export_backbone()`` itself, or under FSDP an unsharded
    copy on rank 0 (FSDP2 leaves the root's own parameters sharded outside the root's forward, so the
    sharded backbone cannot be run by one rank alone).

    Calling it is a collective under FSDP: every rank must call it at the same step; ranks other than 0 get
    ``None``. ``make_arch`` builds an empty architecture of the same config (once, on rank 0).
    """

    def __init__(self, arch: Any, fsdp: bool, info: DistInfo, make_arch: Any) -> None:
        self.arch, self.fsdp, self.info, self.make_arch = arch, fsdp, info, make_arch
        self._copy: Any = None

    def __call__(self) -> torch.nn.Module | None:
        if not self.fsdp:
            return self.arch.export_backbone()
        model_sd, _ = full_state(self.arch, None, True)  # rank 0 receives the full weights, on CPU
        if not self.info.is_main:
            return None
        if self._copy is None:
            self._copy = self.make_arch()
        self._copy.load_state_dict(model_sd)
        return self._copy.export_backbone().to(self.info.device)


def full_state(arch: Any, opt: Any, fsdp: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Model (and optimiser) state dicts; under FSDP the full (unsharded) ones, on CPU, on rank 0."""
    if not fsdp:
        return arch.state_dict(), (opt.state_dict() if opt is not None else None)
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    o = StateDictOptions(full_state_dict=True, cpu_offload=True)
    model_sd = get_model_state_dict(arch, options=o)
    opt_sd = get_optimizer_state_dict(arch.student, opt, options=o) if opt is not None else None
    return model_sd, opt_sd


def load_optimizer_state(arch: Any, opt: Any, state: dict[str, Any], fsdp: bool) -> None:
    """Inverse of :func:`full_state` for the optimiser."""
    if not fsdp:
        opt.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(arch.student, opt, state, options=StateDictOptions(full_state_dict=True))


def _rank_checks(arch: Any, info: DistInfo) -> list[list[float]]:
    """Per-rank checksum ``[sum, sum of squares]`` (float64) of the exported model's weights."""

    ps = [p.detach().double() for p in arch.export_backbone().parameters()]
    mine = torch.tensor(
        [sum(float(p.sum()) for p in ps), sum(float((p * p).sum()) for p in ps)], dtype=torch.float64
    )
    if not info.enabled:
        return [mine.tolist()]
    out = [torch.zeros_like(mine) for _ in range(info.world)]
    dist.all_gather(out, mine)
    return [o.tolist() for o in out]


def export_run(run_dir: str | Path, data_root: str | Path | None = None) -> Path:
    """Export ``RUN/model`` from ``RUN/checkpoint.pt`` (uses the store recorded in ``RUN/run.json``)."""

    run = Path(run_dir)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    check_keys(cfg)
    root = data_root or json.loads((run / "run.json").read_text())["data"]
    store = open_store(root)
    windows = store_windows(store, cfg)
    arch = build_arch(cfg, len(windows))
    ck = load_checkpoint(run)
    arch.load_state_dict(ck["model"])
    return export_teacher(arch, store, cfg, windows, run / "model", int(ck["step"]))


__all__ = ["NonFiniteLoss", "train", "export_run", "build_arch", "cleanup"]
