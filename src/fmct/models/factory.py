"""Build a backbone from its JSON architecture dict (``{"type": "vit3d" | "resnet3d" | "monai", ...}``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from fmct.models.baselines import ResNet3D, ResNet3DConfig
from fmct.models.monai_net import MonaiBackbone, MonaiNetConfig
from fmct.models.vit3d import ViT3D, ViT3DConfig

BACKBONES: dict[str, tuple[type, type]] = {
    "vit3d": (ViT3DConfig, ViT3D),
    "resnet3d": (ResNet3DConfig, ResNet3D),
    "monai": (MonaiNetConfig, MonaiBackbone),
}


def build_backbone(architecture: dict[str, Any]) -> nn.Module:
    """Instantiate the backbone described by ``architecture`` (e.g. ``ViT3DConfig.to_dict()``).

    A dict without ``type`` is taken as a ViT3D config.
    """
    arch = dict(architecture)
    kind = arch.get("type", "vit3d")
    if kind not in BACKBONES:
        raise ValueError(f"unknown backbone type {kind!r}; known: {sorted(BACKBONES)}")
    arch["type"] = kind
    cfg_cls, model_cls = BACKBONES[kind]
    return model_cls(cfg_cls.from_dict(arch))


def architecture_of(backbone: nn.Module) -> dict[str, Any]:
    """The architecture dict of a backbone built here (its ``config.to_dict()``)."""
    cfg = getattr(backbone, "config", None)
    if cfg is None or not hasattr(cfg, "to_dict"):
        raise ValueError(f"{type(backbone).__name__} has no .config.to_dict(); pass architecture explicitly")
    return cfg.to_dict()
