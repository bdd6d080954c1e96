"""AdamW parameter groups: layer-wise lr decay and no weight decay on biases, norms and tokens."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn


def param_groups(
    model: nn.Module,
    backbone_prefix: str = "backbone.",
    layer_decay: float = 1.0,
    last_layer_names: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Parameter groups for ``model`` (trainable parameters only).

    A parameter under ``backbone_prefix`` gets ``lr_scale = layer_decay ** (L - layer_id)`` with
    ``L = backbone.num_layers`` and ``layer_id`` from ``backbone.layer_id(name)``; everything else (heads,
    decoder) gets ``lr_scale = 1``. ``wd_mult = 0`` for 1-D tensors (biases, norm weights) and for the
    backbone's ``no_weight_decay()`` names; 1 otherwise. Groups carry ``is_last_layer`` for freezing.
    """
    backbone = getattr(model, backbone_prefix.rstrip("."), None)
    n_layers = int(getattr(backbone, "num_layers", 0)) if backbone is not None else 0
    no_wd = (
        set(backbone.no_weight_decay())
        if backbone is not None and hasattr(backbone, "no_weight_decay")
        else set()
    )
    last = set(last_layer_names)
    groups: dict[tuple[float, float, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = 1.0
        sub = name[len(backbone_prefix) :] if name.startswith(backbone_prefix) else None
        if sub is not None and backbone is not None and hasattr(backbone, "layer_id"):
            scale = layer_decay ** (n_layers - backbone.layer_id(sub))
        wd = 0.0 if (p.ndim <= 1 or name.endswith(".bias") or (sub is not None and sub in no_wd)) else 1.0
        key = (scale, wd, name in last)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "lr_scale": scale,
                "wd_mult": wd,
                "is_last_layer": name in last,
            }
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return list(groups.values())


def build_optimizer(
    groups: list[dict[str, Any]], betas: tuple[float, float] = (0.9, 0.999)
) -> torch.optim.AdamW:
    """AdamW over ``groups`` (``names`` are dropped; lr/wd are set each step by :func:`apply_schedules`).

    The fused kernel (one pass over each parameter; ~3x faster than the per-parameter loop on the CPU,
    same update to float rounding) is used when every parameter is a plain CPU/CUDA floating tensor;
    sharded (DTensor) or other parameters keep the default implementation. Both keep the same state dict
    (``step``, ``exp_avg``, ``exp_avg_sq``), so checkpoints load either way.
    """
    clean = [{k: v for k, v in g.items() if k != "names"} for g in groups]
    params = [p for g in clean for p in g["params"]]
    fused = bool(params) and all(_fusable(p) for p in params)
    return torch.optim.AdamW(clean, lr=0.0, weight_decay=0.0, betas=tuple(betas), fused=fused or None)


def _fusable(p: torch.Tensor) -> bool:
    """A parameter the fused AdamW kernel takes: a plain (not a subclass such as DTensor) floating tensor
    on the CPU or a CUDA device."""
    return type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point


def apply_schedules(
    opt: torch.optim.Optimizer, lr: float, wd: float, freeze_last_layer: bool = False
) -> None:
    """Set each group's ``lr = lr * lr_scale`` (0 for last-layer groups while frozen), ``wd = wd * wd_mult``."""
    for g in opt.param_groups:
        g["lr"] = 0.0 if (freeze_last_layer and g.get("is_last_layer")) else lr * g.get("lr_scale", 1.0)
        g["weight_decay"] = wd * g.get("wd_mult", 1.0)
