"""SimCLR, CT-FM's recipe: intra-scan contrastive learning with the NT-Xent (InfoNCE) loss.

Batch: ``global`` ``(2 * B, C, G, G, G)`` view-major (rows ``[view 0 of every scan, view 1 of every scan]``,
:func:`fmct.ssl.data.collate_views`): two augmented crops of the same scan are positives, the crops of the
other ``B - 1`` scans of the batch are negatives. The backbone's pooled feature (``cls``: a CNN's global
average pool, a ViT's class token) goes through a projection MLP; the loss is the cross-entropy of each
view's cosine similarities to the other ``2B - 1`` views, divided by the temperature, with its positive as
the target (Chen et al. 2020). CT-FM (Pai et al. 2025, arXiv:2501.09001) trained a SegResNet encoder so.
Negatives are the scans of the same process's batch (not gathered across ranks).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SIMCLR_DEFAULTS: dict[str, Any] = {
    "temperature": 0.1,
    "proj_hidden_dim": 512,
    "proj_dim": 128,
}


def nt_xent(z: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """NT-Xent of ``z (2B, P)`` projections, view-major (row ``i`` and row ``(i + B) mod 2B`` are the two
    views of one scan). Returns ``(loss, top1)``: the mean cross-entropy over the ``2B`` rows and the
    fraction of rows whose most similar other row is their positive."""
    n = z.shape[0]
    if n < 4 or n % 2:
        raise ValueError(f"NT-Xent needs two views of at least 2 scans (2B rows, B >= 2), got {n} rows")
    z = F.normalize(z.float(), dim=1)
    sim = (z @ z.T) / float(temperature)
    sim = sim.masked_fill(torch.eye(n, dtype=torch.bool, device=z.device), float("-inf"))
    target = (torch.arange(n, device=z.device) + n // 2) % n
    loss = F.cross_entropy(sim, target)
    top1 = (sim.detach().argmax(dim=1) == target).float().mean()
    return loss, top1


class ProjectionHead(nn.Module):
    """SimCLR's projection ``g``: Linear -> BatchNorm -> ReLU -> Linear, ``(N, D) -> (N, proj_dim)``;
    discarded after pretraining. The batch norm (SimCLR's own) standardises the features over the views of
    the batch: head CTs pool to near-identical features at initialisation (cosine ~0.999), and without it
    the loss stays at ``log(2B - 1)`` (measured on the tiny test store)."""

    def __init__(self, dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class SimCLRModel(nn.Module):
    """Backbone + projection head; ``forward(x (N, C, G, G, G)) -> {"z": (N, P), "cls": (N, D)}``."""

    def __init__(self, backbone: nn.Module, cfg: dict[str, Any]) -> None:
        super().__init__()
        c = {**SIMCLR_DEFAULTS, **cfg}
        self.cfg = c
        self.backbone = backbone
        self.head = ProjectionHead(int(backbone.embed_dim), int(c["proj_hidden_dim"]), int(c["proj_dim"]))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        cls = self.backbone.forward_features(x)["cls"]
        # a copy, not a view: FSDP2 hooks backward on the outputs (see fmct.ssl.meta_arch.StudentNet)
        return {"z": self.head(cls), "cls": cls.clone()}


class SimCLRMetaArch(nn.Module):
    """Same interface as :class:`fmct.ssl.meta_arch.DINOMetaArch` for the training loop (no teacher)."""

    method = "simclr"

    def __init__(self, backbone: nn.Module, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.student = SimCLRModel(backbone, cfg)
        self.set_student_forward(self.student)

    def set_student_forward(self, module: nn.Module) -> None:
        """Use ``module`` (e.g. a DDP wrapper of ``self.student``) for the forward pass (not registered)."""
        object.__setattr__(self, "student_forward", module)

    def last_layer_names(self) -> set[str]:
        return set()

    def export_backbone(self) -> nn.Module:
        return self.student.backbone

    def compute_loss(
        self, batch: dict[str, Any], values: dict[str, Any], gen: torch.Generator
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(loss, {"nt_xent", "contrastive_top1"}, {"teacher_cls": (2B, D)})`` of a batch of view pairs."""
        if int(batch.get("n_global", 2)) != 2:
            raise ValueError(f"SimCLR needs exactly 2 views per scan, got n_global={batch.get('n_global')}")
        out = self.student_forward(batch["global"])
        loss, top1 = nt_xent(out["z"], float(self.student.cfg["temperature"]))
        return (
            loss,
            {"nt_xent": loss.detach(), "contrastive_top1": top1},
            {"teacher_cls": out["cls"].detach().float()},
        )

    def update_teacher(self, momentum: float) -> None:
        """No teacher in SimCLR."""
