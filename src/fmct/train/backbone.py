"""The backbone a pretraining config builds: ``model.type`` ``vit3d`` (the ``model`` keys) or ``segresenc``
(MONAI's SegResEncoder, CT-FM's CNN, from the ``segresenc`` keys)."""

from __future__ import annotations

from typing import Any

from torch import nn

#: Values of ``model.type``.
BACKBONE_TYPES = ("vit3d", "segresenc")
#: Methods that need a ViT (token masks): DINO + iBOT masks patches, MAE drops them.
VIT_ONLY_METHODS = ("dino", "mae")


def backbone_from_config(cfg: dict[str, Any], in_chans: int) -> nn.Module:
    """A fresh backbone for a resolved pretraining config with ``in_chans`` input channels (windows)."""
    kind = cfg["model"].get("type", "vit3d")
    if kind == "segresenc":
        from fmct.models.monai_net import MonaiBackbone, segres_encoder_config

        s = cfg["segresenc"]
        return MonaiBackbone(
            segres_encoder_config(in_chans, int(s["init_filters"]), s["blocks_down"], s["norm"])
        )
    from fmct.ssl.meta_arch import vit_from_model_config

    vit = {k: v for k, v in cfg["model"].items() if k != "type"}
    return vit_from_model_config({**vit, "in_chans": in_chans}, int(cfg["data"]["global_size"]))
