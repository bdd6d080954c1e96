"""fmct.models: 3D ViT backbone, heads, ResNet baseline, model directories (hub)."""

from fmct.models.baselines import ResNet3D, ResNet3DConfig
from fmct.models.factory import architecture_of, build_backbone
from fmct.models.heads import AttentiveClassifier, DINOHead, LinearClassifier
from fmct.models.hub import BackboneModel, ClassifierModel, load_model, save_pretrained
from fmct.models.vit3d import PRESETS, ViT3D, ViT3DConfig, vit3d_config_from_preset, vit3d_from_preset

__all__ = [
    "PRESETS",
    "AttentiveClassifier",
    "BackboneModel",
    "ClassifierModel",
    "DINOHead",
    "LinearClassifier",
    "ResNet3D",
    "ResNet3DConfig",
    "ViT3D",
    "ViT3DConfig",
    "architecture_of",
    "build_backbone",
    "load_model",
    "save_pretrained",
    "vit3d_config_from_preset",
    "vit3d_from_preset",
]
