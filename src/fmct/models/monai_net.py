"""Any MONAI network as an fmct backbone: its last feature map becomes the patch tokens.

``forward_features(x (B, C, X, Y, Z) RAS) -> {"cls": (B, D) the mean of the tokens (global average
pooling, CT-FM's own readout), "patch": (B, N, D) the feature map flattened in RAS order (z fastest, as the
ViT's tokens), "registers": (B, 0, D)}``. The network is built by name from ``monai.networks.nets`` with
JSON keyword arguments, so a model directory records it exactly; inputs are put into the axis order the
network was trained in (``axcodes``, :mod:`fmct.models.orientation`) and the feature map back into RAS, so the
``brain_max`` readout finds the intracranial tokens. MONAI is imported when a network is built, not before.

:func:`segres_encoder_config` gives CT-FM's CNN (MONAI's ``SegResEncoder``, the encoder of SegResNetDS),
which ``fmct pretrain`` trains with ``model.type=segresenc`` and ``fmct import-model --preset ct-fm`` loads.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import math
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fmct.models.orientation import from_ras, parse_axcodes, to_ras

#: ``Class`` in ``monai.networks.nets`` or ``module.Class`` in one of its modules.
_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)?$")
#: MONAI's name of CT-FM's encoder class.
SEGRES_ENCODER = "segresnet_ds.SegResEncoder"


@dataclass
class MonaiNetConfig:
    """Architecture of :class:`MonaiBackbone` (JSON-able).

    Attributes:
        network: ``"SegResNet"`` (a class of ``monai.networks.nets``) or ``"segresnet_ds.SegResEncoder"``.
        kwargs: the network's constructor arguments (JSON values).
        in_chans: input channels (one per HU window); must be what the network takes.
        embed_dim: channels of the feature map used as tokens (0: not known yet, not checked; the importer
            measures it).
        axcodes: axis codes the network expects its input in (fmct's inputs are ``"RAS"``).
        layer: a submodule (``named_modules`` name) whose output is the feature map; empty: the output
            of the network (the last item when it returns a list, as encoders do).
    """

    network: str = SEGRES_ENCODER
    kwargs: dict[str, Any] = field(default_factory=dict)
    in_chans: int = 1
    embed_dim: int = 0
    axcodes: str = "RAS"
    layer: str = ""
    type: str = field(default="monai", repr=False)

    def __post_init__(self) -> None:
        if not _NAME.match(str(self.network)):
            raise ValueError(
                f"MONAI network name {self.network!r}: expected a class of monai.networks.nets such as "
                f"'SegResNet' or 'module.Class' such as {SEGRES_ENCODER!r}"
            )
        parse_axcodes(self.axcodes)
        self.axcodes = self.axcodes.upper()
        self.kwargs = dict(self.kwargs)
        if self.type != "monai":
            raise ValueError(f"MonaiNetConfig.type must be 'monai', got {self.type!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict including ``"type": "monai"``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MonaiNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown MonaiNetConfig keys: {unknown}")
        return cls(**d)


def segres_encoder_config(
    in_chans: int,
    init_filters: int = 32,
    blocks_down: tuple[int, ...] | list[int] = (1, 2, 2, 4, 4),
    norm: str | list[Any] = "batch",
    axcodes: str = "RAS",
) -> MonaiNetConfig:
    """MONAI ``SegResEncoder``: ``len(blocks_down)`` levels, each halving the grid but the last and doubling
    the channels, so ``embed_dim = init_filters * 2 ** (levels - 1)`` at stride ``2 ** (levels - 1)``.
    ``norm``: ``"batch"`` (MONAI's default, CT-FM's), ``"instance"`` or ``"group"`` (8 groups)."""
    if norm == "group":
        norm = ["group", {"num_groups": math.gcd(8, int(init_filters))}]
    kwargs = {"spatial_dims": 3, "in_channels": int(in_chans), "init_filters": int(init_filters),
              "blocks_down": [int(b) for b in blocks_down], "norm": norm}  # fmt: skip
    dim = int(init_filters) * 2 ** (len(blocks_down) - 1)
    return MonaiNetConfig(SEGRES_ENCODER, kwargs, int(in_chans), dim, axcodes)


def network_class(name: str) -> type[nn.Module]:
    """The class ``name`` of ``monai.networks.nets`` (``"module.Class"``: of that module of it)."""

    try:
        nets = importlib.import_module("monai.networks.nets")
    except ImportError:
        raise ImportError("MONAI networks need the 'monai' package: pip install monai") from None
    module, _, cls = str(name).rpartition(".")
    try:
        owner = importlib.import_module(f"monai.networks.nets.{module}") if module else nets
    except ImportError:
        owner = None
    obj = getattr(owner, cls, None) if owner is not None else None
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ValueError(
            f"unknown MONAI network {name!r}: not a network class of monai.networks.nets "
            f"(e.g. 'SegResNet', 'DenseNet121', {SEGRES_ENCODER!r})"
        )
    return obj


class MonaiBackbone(nn.Module):
    """A MONAI network (``self.net``, its state dict keys unchanged under ``net.``) with fmct's interface."""

    def __init__(self, cfg: MonaiNetConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        cfg = cfg if cfg is not None else MonaiNetConfig(**kwargs)
        self.config = cfg
        try:
            # a copy: MONAI fills in defaults in place (norm args), which would change the recorded config
            self.net = network_class(cfg.network)(**copy.deepcopy(cfg.kwargs))
        except TypeError as e:  # a wrong or missing constructor argument
            raise ValueError(f"MONAI network {cfg.network} with {cfg.kwargs}: {e}") from None
        self.embed_dim = int(cfg.embed_dim)
        self._grids: dict[tuple[int, ...], tuple[int, int, int]] = {}
        self._layer = None
        if cfg.layer:
            modules = dict(self.net.named_modules())
            if cfg.layer not in modules:
                top = [n for n in modules if n and "." not in n]
                raise ValueError(f"{cfg.network} has no submodule {cfg.layer!r}; its top-level ones: {top}")
            self._layer = modules[cfg.layer]

    @property
    def num_layers(self) -> int:
        """Levels of a ``layers``-list encoder (SegResEncoder) + 1; 0 otherwise (no layer-wise decay)."""
        layers = getattr(self.net, "layers", None)
        return len(layers) + 1 if isinstance(layers, nn.ModuleList) else 0

    def layer_id(self, param_name: str) -> int:
        """``net.layers.i.*`` -> ``i + 1``, the stem (``net.conv_init``) 0, anything else ``num_layers``."""
        name = param_name.removeprefix("backbone.").removeprefix("module.").removeprefix("net.")
        if name.startswith("layers.") and self.num_layers:
            return int(name.split(".")[1]) + 1
        return 0 if name.startswith("conv_init") else self.num_layers

    def no_weight_decay(self) -> set[str]:
        return set()

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, X, Y, Z)`` RAS inputs -> ``(B, D, gx, gy, gz)`` features in RAS order (a ``(B, D)``
        output counts as a 1³ map)."""
        captured: list[Any] = []
        hook = None
        if self._layer is not None:
            hook = self._layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            out = self.net(from_ras(x, self.config.axcodes))
        finally:
            if hook is not None:
                hook.remove()
        f = captured[-1] if captured else out
        if isinstance(f, list | tuple):
            f = f[-1]
        if not torch.is_tensor(f) or f.ndim not in (2, 5) or f.shape[1] != (self.embed_dim or f.shape[1]):
            shape = tuple(f.shape) if torch.is_tensor(f) else type(f).__name__
            raise ValueError(
                f"{self.config.network}: expected a feature map (B, {self.embed_dim}, X, Y, Z) from "
                f"{self.config.layer or 'its output'}, got {shape}"
            )
        if f.ndim == 2:
            f = f[:, :, None, None, None]
        return to_ras(f, self.config.axcodes)

    def forward_features(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, return_attention: bool = False
    ) -> dict[str, Any]:
        """``(B, C, X, Y, Z) -> {"cls": (B, D), "patch": (B, N, D), "registers": (B, 0, D)}`` (see module)."""
        if mask is not None or return_attention:
            raise ValueError(f"{self.config.network} does not support token masks or attention maps")
        if x.ndim != 5:
            raise ValueError(f"expected input (B, C, X, Y, Z), got shape {tuple(x.shape)}")
        f = self.feature_map(x)
        self._grids[tuple(int(s) for s in x.shape[-3:])] = tuple(int(s) for s in f.shape[-3:])
        tokens = f.flatten(2).transpose(1, 2)
        return {"cls": tokens.mean(1), "patch": tokens, "registers": tokens[:, :0]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["cls"]

    def grid_size(self, input_shape: tuple[int, ...] | torch.Size) -> tuple[int, int, int]:
        """Token grid (RAS order) for inputs of spatial shape ``(..., X, Y, Z)``: a SegResEncoder's is
        computed (each stride-2 level rounds up), any other network's is measured once per shape."""
        key = tuple(int(s) for s in input_shape[-3:])
        if key in self._grids:
            return self._grids[key]
        kw = self.config.kwargs
        if self.config.network == SEGRES_ENCODER and not kw.get("anisotropic_scales") and not self._layer:
            levels = len(kw.get("blocks_down", (1, 2, 2, 4)))
            return tuple(math.ceil(s / 2 ** (levels - 1)) for s in key)  # type: ignore[return-value]
        was = self.training
        self.eval()  # no batch-norm statistics updated by the probe
        try:
            with torch.no_grad():
                p = next(self.parameters())
                self.forward_features(torch.zeros(1, self.config.in_chans, *key, device=p.device))
        finally:
            self.train(was)
        return self._grids[key]
