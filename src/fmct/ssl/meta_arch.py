"""DINO + iBOT + KoLeo self-distillation: student (backbone + heads) and its EMA teacher.

Batch layout (view-major, B scans): ``global`` ``(n_global * B, C, G, G, G)``, ``local``
``(n_local * B, C, l, l, l)``, iBOT ``masks`` ``(n_global * B, N)`` bool over the global patch grid.
The teacher sees the global views only, unmasked; the student sees masked global views and the local views.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from fmct.models.heads import DINOHead
from fmct.models.vit3d import ViT3D, ViT3DConfig
from fmct.ssl.losses import DINOLoss, IBOTPatchLoss, KoLeoLoss
from fmct.ssl.masking import ibot_masks

DINO_DEFAULTS: dict[str, Any] = {
    "out_dim": 4096,
    "head_hidden_dim": 1024,
    "head_bottleneck_dim": 256,
    "head_nlayers": 3,
    "head_norm": "none",  # or "batch" (hidden layers standardised over the batch; see DINOHead)
    "shared_ibot_head": False,
    "ibot_out_dim": 4096,
    "student_temp": 0.1,
    "center_momentum": 0.9,
    "centering": "centering",  # or "sinkhorn"
    "dino_weight": 1.0,
    "ibot_weight": 1.0,
    "koleo_weight": 0.1,
    "mask_ratio": [0.1, 0.5],
    "mask_probability": 0.5,
}


class StudentNet(nn.Module):
    """Backbone + DINO head (+ separate iBOT head unless shared). One ``forward`` per step (DDP-friendly)."""

    def __init__(self, backbone: ViT3D, dino_head: nn.Module, ibot_head: nn.Module | None) -> None:
        super().__init__()
        self.backbone = backbone
        self.dino_head = dino_head
        self.ibot_head = ibot_head

    def head_for_patches(self) -> nn.Module:
        return self.ibot_head if self.ibot_head is not None else self.dino_head

    def forward(
        self,
        globals_: torch.Tensor,
        locals_: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        mask_input: bool = True,
    ) -> dict[str, torch.Tensor]:
        """Returns ``cls_global (nG*B, D)``, ``dino (n_views*B, K)`` (globals then locals) and
        ``ibot (M, K')`` for the ``M = masks.sum()`` masked patches (row-major over ``masks``).

        ``mask_input=False`` (the teacher) scores the same patches without masking the input.
        """
        g = self.backbone.forward_features(globals_, mask=masks if mask_input else None)
        cls = [g["cls"]]
        if locals_ is not None and locals_.numel():
            cls.append(self.backbone.forward_features(locals_)["cls"])
        # a copy, not a view of the token tensor: FSDP2 hooks backward on the module's outputs, and a view
        # would lose that hook under a later in-place op (it warns on every step otherwise)
        out = {"cls_global": g["cls"].clone(), "dino": self.dino_head(torch.cat(cls))}
        if masks is not None:
            out["ibot"] = self.head_for_patches()(g["patch"][masks])
        return out


def vit_from_model_config(model_cfg: dict[str, Any], global_size: int) -> ViT3D:
    """ViT3D from the ``model`` config section (keys of :class:`ViT3DConfig`), ``img_size = global_size``."""
    return ViT3D(ViT3DConfig.from_section(model_cfg, global_size))


class DINOMetaArch(nn.Module):
    """Student/teacher pair and the three losses.

    Use: ``loss, parts, aux = arch.compute_loss(batch, values, gen)``; ``loss.backward()``; optimiser step;
    ``arch.update_teacher(values["momentum"])``. ``self.student_forward`` may be replaced by a DDP wrapper
    of ``self.student``.
    """

    method = "dino"

    def __init__(self, backbone: ViT3D, cfg: dict[str, Any]) -> None:
        super().__init__()
        c = {**DINO_DEFAULTS, **cfg}
        self.cfg = c
        d = backbone.embed_dim

        def head(k: int) -> DINOHead:
            return DINOHead(
                d, k, c["head_hidden_dim"], c["head_bottleneck_dim"], c["head_nlayers"], c["head_norm"]
            )

        ibot_head = None if c["shared_ibot_head"] else head(c["ibot_out_dim"])
        self.student = StudentNet(backbone, head(c["out_dim"]), ibot_head)
        self.teacher = copy.deepcopy(self.student)
        self.teacher.load_state_dict(self.student.state_dict())
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        ibot_k = c["out_dim"] if c["shared_ibot_head"] else c["ibot_out_dim"]
        self.dino_loss = DINOLoss(c["out_dim"], c["student_temp"], c["center_momentum"], c["centering"])
        self.ibot_loss = IBOTPatchLoss(ibot_k, c["student_temp"], c["center_momentum"], c["centering"])
        self.koleo_loss = KoLeoLoss()
        self.set_student_forward(self.student)

    def set_student_forward(self, module: nn.Module) -> None:
        """Use ``module`` (e.g. a DDP wrapper of ``self.student``) for the student's forward pass.

        Stored outside the submodule registry so that state dicts only hold ``student.*`` once.
        """
        object.__setattr__(self, "student_forward", module)

    def train(self, mode: bool = True) -> DINOMetaArch:
        """Train mode for the student; the teacher always stays in eval mode (no drop-path)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def last_layer_names(self) -> set[str]:
        """Parameter names (of ``self.student``) frozen during the first steps (prototype layers)."""
        return {n for n, _ in self.student.named_parameters() if ".last_layer." in f".{n}"}

    def export_backbone(self) -> ViT3D:
        """The backbone to publish: the teacher's."""
        return self.teacher.backbone

    def make_masks(self, n_images: int, grid: tuple[int, int, int], g: torch.Generator) -> torch.Tensor:
        lo, hi = self.cfg["mask_ratio"]
        return ibot_masks(n_images, grid, (float(lo), float(hi)), float(self.cfg["mask_probability"]), g)

    def compute_loss(
        self, batch: dict[str, Any], values: dict[str, Any], gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One step's total loss, its parts (detached) and ``aux`` tensors for monitors.

        ``values`` carries ``teacher_temp``; ``gen`` drives the iBOT masks.
        """
        c = self.cfg
        glob = batch["global"]
        loc = batch["local"] if batch["local"].numel() else None
        n_global = int(batch.get("n_global", 2))
        b = glob.shape[0] // n_global
        grid = self.student.backbone.grid_size(glob.shape)
        masks = self.make_masks(glob.shape[0], grid, gen).to(glob.device)
        temp = float(values["teacher_temp"])

        with torch.no_grad():
            tg = self.teacher(glob, None, masks, mask_input=False)  # through the root module (FSDP hooks)
            t_dino, t_ibot = tg["dino"], tg["ibot"]  # (nG*B, K), (M, K')
            t_dino_p = self.dino_loss.targets(t_dino, temp)
            t_ibot_p = self.ibot_loss.targets(t_ibot, temp)

        s = self.student_forward(glob, loc, masks)
        s_views = list(s["dino"].float().split(b))
        dino = self.dino_loss(s_views, list(t_dino_p.split(b)))
        ibot = self.ibot_loss(s["ibot"].float(), t_ibot_p, masks)
        koleo = sum(self.koleo_loss(x) for x in s["cls_global"].float().split(b))
        loss = c["dino_weight"] * dino + c["ibot_weight"] * ibot + c["koleo_weight"] * koleo

        if c["centering"] == "centering":
            self.dino_loss.update_center(t_dino)
            self.ibot_loss.update_center(t_ibot)
        parts = {"dino": dino.detach(), "ibot": ibot.detach(), "koleo": koleo.detach()}
        aux = {"teacher_probs": t_dino_p, "teacher_cls": tg["cls_global"].detach().float(), "masks": masks}
        return loss, parts, aux

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA: ``teacher = m * teacher + (1 - m) * student`` over all parameters (shard-wise under FSDP2)."""
        for m in (self.teacher, self.student):
            if hasattr(m, "reshard"):  # FSDP2 keeps the root's parameters unsharded after forward
                m.reshard()
        sp = [p.detach() for p in self.student.parameters()]
        tp = list(self.teacher.parameters())
        torch._foreach_lerp_(tp, sp, 1.0 - momentum)  # one pass: m * t + (1 - m) * s
