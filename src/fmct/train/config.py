"""Pretraining config: defaults, validation (unknown keys error) and resolution for ``fmct pretrain``.

One schema, :data:`DEFAULTS`. Sections that configure one object take their defaults from it, so that each
default is written once: ``model`` from :class:`fmct.models.vit3d.ViT3DConfig`, the schedules in ``optim``
from :class:`fmct.train.schedules.SSLSchedules`, ``dino`` / ``mae`` / ``simclr`` from the meta-architectures.
Every check raises ``ValueError`` naming the config key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fmct.config import apply_overrides, merge, read_yaml
from fmct.device import resolve_device
from fmct.models.vit3d import ViT3DConfig
from fmct.ssl.mae import LOSS_PATCHES, MAE_DEFAULTS
from fmct.ssl.masking import check_mask_params
from fmct.ssl.meta_arch import DINO_DEFAULTS
from fmct.ssl.simclr import SIMCLR_DEFAULTS
from fmct.train.backbone import BACKBONE_TYPES, VIT_ONLY_METHODS
from fmct.train.schedules import SSLSchedules

#: Every key a pretraining config may hold, with its default. Sections are nested dicts.
DEFAULTS: dict[str, Any] = {
    "method": "dino",  # dino (DINO + iBOT + KoLeo) | mae | simclr (CT-FM's intra-scan contrastive recipe)
    "seed": 0,
    "max_steps": 100,
    "schedule_steps": None,  # horizon of the cosine schedules; null = max_steps
    "batch_size": 8,  # per process
    "checkpoint_every": 50,
    "monitor_every": 25,
    "log_every": 0,  # steps between progress lines when the output is a log, not a terminal; 0 = every 30 s
    "labels": None,  # labels.csv for the kNN AUROC monitor
    "knn_max_scans": 96,
    "precision": "auto",  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    "device": "auto",  # auto (the GPU when one is visible, else CPU) | cpu | cuda | cuda:N
    "clip_grad": 3.0,
    "export": True,
    "snapshot_every": 0,  # steps; > 0 also exports the teacher backbone to RUN/snapshots/step-NNNNNN
    "best_by": None,  # knn_auroc_brain_max | knn_auroc_macro: keep RUN/model-best (needs labels=)
    # model.type: vit3d (the ViT3DConfig keys) | segresenc (MONAI's SegResEncoder: the segresenc keys)
    "model": ViT3DConfig.section_defaults(),
    "data": {
        "cache_size": 96,
        "num_workers": 1,
        "augment_on": "loader",  # loader (CPU workers) | device (crops made on the GPU in the main process)
        "global_size": 64,
        "local_size": 32,
        "n_global": 2,
        "n_local": 4,
        "global_scale": [0.4, 1.0],
        "local_scale": [0.05, 0.3],
        "flip_p": 0.5,
        "rotate_deg": 10.0,
        "window_level_jitter": 0.1,
        "window_width_jitter": 0.2,
        "noise_p": 0.5,
        "noise_hu": 15.0,
        "blur_p": 0.2,
        "blur_sigma": [0.3, 1.0],
        "gamma_p": 0.3,
        "gamma": [0.75, 1.33],
        "windows": None,  # null = the store's preprocessing windows
    },
    "segresenc": {  # CT-FM's CNN (model.type=segresenc); CT-FM itself: 32, [1, 2, 2, 4, 4], batch
        "init_filters": 16,  # channels of the first level; each further level doubles them
        "blocks_down": [1, 2, 2, 4],  # residual blocks per level; each level after the first halves the grid
        "norm": "group",  # group (8 groups) | batch | instance
    },
    "dino": dict(DINO_DEFAULTS),
    "mae": dict(MAE_DEFAULTS),
    "simclr": dict(SIMCLR_DEFAULTS),
    "optim": {
        **SSLSchedules.section_defaults(),  # lr, min_lr, warmup_steps, weight decay, teacher temp / momentum
        "layer_decay": 0.9,
        "betas": None,  # AdamW (beta1, beta2); null = the method's reference (see adamw_betas)
    },
    "distributed": {"strategy": "ddp"},  # ddp | fsdp
}


#: Values of ``method``.
SSL_METHODS = ("dino", "mae", "simclr")


def check_keys(cfg: Mapping[str, Any], ref: Mapping[str, Any] = DEFAULTS, where: str = "") -> None:
    """Raise ``ValueError`` naming the first key of ``cfg`` that ``ref`` does not have (recursively)."""
    for k, v in cfg.items():
        if k not in ref:
            raise ValueError(f"unknown config key {where + k!r}; known here: {sorted(ref)}")
        if isinstance(ref[k], dict):
            if not isinstance(v, Mapping):
                raise ValueError(f"config key {where + k!r} must be a section (mapping)")
            check_keys(v, ref[k], f"{where}{k}.")
    if cfg.get("method", "dino") not in SSL_METHODS and not where:
        raise ValueError(f"method must be one of {list(SSL_METHODS)}, got {cfg.get('method')!r}")


#: Monitor keys ``best_by`` may name (higher is better); both come from the kNN monitor (``labels=``).
BEST_BY_KEYS = ("knn_auroc_brain_max", "knn_auroc_macro")


#: ``(dotted key, whole number?, lowest, highest, lowest allowed itself?)`` of numeric keys with a range:
#: values outside it would train without error but make no sense (a negative lr ascends the loss).
RANGES: tuple[tuple[str, bool, float, float | None, bool], ...] = (
    ("max_steps", True, 1, None, True),
    ("batch_size", True, 1, None, True),
    ("checkpoint_every", True, 0, None, True),
    ("monitor_every", True, 0, None, True),
    ("log_every", True, 0, None, True),
    ("knn_max_scans", True, 1, None, True),
    ("clip_grad", False, 0.0, None, True),
    ("dino.mask_probability", False, 0.0, 1.0, True),
    ("mae.mask_ratio", False, 0.0, 1.0, False),
    ("simclr.temperature", False, 0.0, None, False),
    ("simclr.proj_hidden_dim", True, 1, None, True),
    ("simclr.proj_dim", True, 1, None, True),
    ("segresenc.init_filters", True, 1, None, True),
    ("optim.lr", False, 0.0, None, False),
    ("optim.min_lr", False, 0.0, None, True),
    ("optim.warmup_steps", True, 0, None, True),
    ("optim.weight_decay", False, 0.0, None, True),
    ("optim.weight_decay_end", False, 0.0, None, True),
    ("optim.layer_decay", False, 0.0, 1.0, False),
    ("optim.teacher_temp", False, 0.0, None, False),
    ("optim.warmup_teacher_temp", False, 0.0, None, False),
    ("optim.momentum_teacher", False, 0.0, 1.0, True),
    ("optim.momentum_teacher_end", False, 0.0, 1.0, True),
)


def _check_ranges(cfg: Mapping[str, Any]) -> None:
    for key, whole, lo, hi, lo_ok in RANGES:
        node: Any = cfg
        for part in key.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:  # absent, or null where null means "off" (clip_grad)
            continue
        try:
            value = float(node)
        except (TypeError, ValueError):
            raise ValueError(f"config key {key!r} needs a number, got {node!r}") from None
        bad = value != value or value < lo or (value == lo and not lo_ok) or (hi is not None and value > hi)
        if whole and value != int(value):
            bad = True
        if bad:
            span = f"{'>=' if lo_ok else '>'} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
            kind = "a whole number " if whole else ""
            raise ValueError(f"config key {key!r} must be {kind}{span}, got {node!r}")


#: AdamW betas of each method's reference recipe: dinov2 (``adamw_beta1/2``), MAE (He et al. 2022, Table 8),
#: and AdamW's defaults for SimCLR (its paper used LARS).
REFERENCE_BETAS: dict[str, tuple[float, float]] = {
    "dino": (0.9, 0.999),
    "mae": (0.9, 0.95),
    "simclr": (0.9, 0.999),
}


def adamw_betas(cfg: Mapping[str, Any]) -> tuple[float, float]:
    """``optim.betas`` when set, else the reference betas of ``cfg["method"]`` (:data:`REFERENCE_BETAS`)."""
    betas = (cfg.get("optim") or {}).get("betas")
    if betas is None:
        return REFERENCE_BETAS[cfg.get("method", "dino")]
    return (float(betas[0]), float(betas[1]))


def max_grad_norm(cfg: Mapping[str, Any]) -> float:
    """The gradient-norm clip: ``clip_grad``, or ``inf`` (no clipping, the norm is still logged) when it is
    null or 0."""
    clip = cfg.get("clip_grad")
    return float(clip) if clip else float("inf")


def _check_lists(cfg: Mapping[str, Any]) -> None:
    """Two-number keys: ``optim.betas`` in ``[0, 1)`` and ``dino.mask_ratio`` ``[lo, hi]`` in ``[0, 1]``."""
    betas = (cfg.get("optim") or {}).get("betas")
    if betas is not None:
        ok = isinstance(betas, list | tuple) and len(betas) == 2
        if not ok or not all(isinstance(b, int | float) and 0.0 <= float(b) < 1.0 for b in betas):
            raise ValueError(
                f"config key 'optim.betas' must be [beta1, beta2] in [0, 1) or null, got {betas!r}"
            )
    dino = cfg.get("dino") or {}
    if "mask_ratio" in dino:
        try:
            check_mask_params(dino["mask_ratio"], dino.get("mask_probability", 0.5))
        except (TypeError, ValueError) as e:
            raise ValueError(f"config key dino.{e}") from None


def _check_backbone(cfg: Mapping[str, Any]) -> None:
    """``model.type`` is known and fits ``method``; the ``model`` keys make a ViT for ``data.global_size``
    crops; the ``segresenc`` keys make a network; SimCLR has
    negatives (``batch_size >= 2``)."""
    method = cfg.get("method", "dino")
    kind = (cfg.get("model") or {}).get("type", "vit3d")
    if kind not in BACKBONE_TYPES:
        raise ValueError(f"config key 'model.type' must be one of {list(BACKBONE_TYPES)}, got {kind!r}")
    if kind != "vit3d" and method in VIT_ONLY_METHODS:
        raise ValueError(f"method={method} masks ViT tokens: it needs model.type=vit3d, not {kind}")
    if (
        kind == "vit3d"
    ):  # the ViT's own checks (pos_embed, crops divisible by patch_size), named as config keys
        try:
            ViT3DConfig.from_section(cfg["model"], (cfg.get("data") or {}).get("global_size", 64))
        except ValueError as e:
            raise ValueError(f"config key 'model': {e}") from None
    seg = cfg.get("segresenc") or {}
    blocks = seg.get("blocks_down", [1])
    if (
        not isinstance(blocks, list | tuple)
        or not blocks
        or not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in blocks)
    ):
        raise ValueError(
            f"config key 'segresenc.blocks_down' must be a list of whole numbers >= 1, got {blocks!r}"
        )
    if seg.get("norm", "group") not in ("group", "batch", "instance"):
        raise ValueError(
            f"config key 'segresenc.norm' must be group, batch or instance, got {seg.get('norm')!r}"
        )
    if method == "simclr" and int(cfg.get("batch_size", 2)) < 2:
        raise ValueError("method=simclr contrasts the scans of a batch: batch_size must be >= 2")


def check_values(cfg: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` for values of a resolved config that cannot work together (keys are checked by
    :func:`check_keys`): numeric keys outside :data:`RANGES`; two-number keys (:func:`_check_lists`); the
    backbone and the method (:func:`_check_backbone`); ``best_by`` must name a kNN monitor key and needs
    ``labels``; ``snapshot_every`` is a whole number of steps >= 0; ``device`` must name a device this machine
    has (:func:`fmct.device.resolve_device`)."""
    _check_ranges(cfg)
    _check_lists(cfg)
    _check_backbone(cfg)
    loss_patches = (cfg.get("mae") or {}).get("loss_patches", "all")
    if loss_patches not in LOSS_PATCHES:
        raise ValueError(
            f"config key 'mae.loss_patches' must be one of {list(LOSS_PATCHES)}, got {loss_patches!r}"
        )
    best = cfg.get("best_by")
    if best is not None:
        if best not in BEST_BY_KEYS:
            raise ValueError(f"best_by must be one of {list(BEST_BY_KEYS)} or null, got {best!r}")
        if not cfg.get("labels"):
            raise ValueError(
                f"best_by={best} ranks checkpoints by the kNN monitor, which needs labels=LABELS.csv "
                "(labelled scans of the pretraining store)"
            )
        if not int(cfg.get("monitor_every") or 0):
            raise ValueError(f"best_by={best} is scored at each monitor: set monitor_every > 0")
    snap = cfg.get("snapshot_every", 0)
    if isinstance(snap, bool) or not isinstance(snap, int) or snap < 0:
        raise ValueError(f"snapshot_every must be a whole number of steps >= 0, got {snap!r}")
    try:  # a GPU asked for on a machine without one: a clear error now, not a CUDA error mid-run
        resolve_device(cfg.get("device", "auto"))
    except ValueError as e:
        raise ValueError(f"config key 'device': {e}") from None


def resolve_config(path: str | Path | None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """``DEFAULTS`` <- YAML file <- ``key=value`` overrides, validated."""
    loaded = read_yaml(path) if path is not None else {}
    check_keys(loaded)  # the file's own keys first: a typo there is named as the file wrote it
    cfg = apply_overrides(merge(DEFAULTS, loaded), overrides)
    check_keys(cfg)
    check_values(cfg)
    return cfg


def override(cfg: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply overrides to a resolved config (e.g. when resuming) and validate."""
    out = apply_overrides(cfg, overrides)
    check_keys(out)
    check_values(out)
    return out
