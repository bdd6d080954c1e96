"""Self-distillation losses: DINO (CLS), iBOT (masked patches), KoLeo, and Sinkhorn-Knopp centering.

Shapes: ``K`` prototypes; student/teacher head outputs are ``(B, K)`` scores (cosines in ``[-1, 1]`` from
:class:`fmct.models.heads.DINOHead`). Temperatures are dimensionless. Under ``torch.distributed`` the
teacher centre and the Sinkhorn-Knopp sums are all-reduced, so every rank sees the global batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def _dist_on() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if _dist_on():
        dist.all_reduce(t)
    return t


@torch.no_grad()
def sinkhorn_knopp(teacher_scores: torch.Tensor, temp: float, n_iters: int = 3) -> torch.Tensor:
    """Sinkhorn-Knopp assignment of ``(B, K)`` teacher scores (SwAV / DINOv2 centering).

    Alternately normalises prototypes (columns) to equal mass ``1/K`` and samples (rows) to ``1/B``
    over the global batch, ending with rows; the result is rescaled so that each row is a probability
    distribution over K (rows sum to 1, columns sum to about ``B/K``).

    Returns:
        ``(B, K)`` float32 targets.
    """
    q = torch.exp(teacher_scores.float() / temp).t()  # (K, B)
    b = torch.tensor(q.shape[1], device=q.device, dtype=torch.float32)
    _all_reduce_sum(b)
    k = q.shape[0]
    q /= _all_reduce_sum(q.sum())
    for _ in range(n_iters):
        q /= _all_reduce_sum(q.sum(dim=1, keepdim=True))
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    q *= b
    return q.t()


class CenteredTeacher(nn.Module):
    """Teacher targets with an EMA centre (DINO) or Sinkhorn-Knopp; keeps the centre as a buffer."""

    def __init__(self, out_dim: int, center_momentum: float = 0.9, mode: str = "centering") -> None:
        super().__init__()
        if mode not in ("centering", "sinkhorn"):
            raise ValueError(f"teacher centering mode must be 'centering' or 'sinkhorn', got {mode!r}")
        self.mode = mode
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    @torch.no_grad()
    def targets(self, teacher_scores: torch.Tensor, temp: float) -> torch.Tensor:
        """``(B, K)`` scores -> ``(B, K)`` target probabilities (no grad)."""
        if self.mode == "sinkhorn":
            return sinkhorn_knopp(teacher_scores, temp)
        return F.softmax((teacher_scores.float() - self.center) / temp, dim=-1)

    @torch.no_grad()
    def update_center(self, teacher_scores: torch.Tensor) -> None:
        """EMA update of the centre with the global-batch mean of ``(B, K)`` scores."""
        s = teacher_scores.float().sum(dim=0, keepdim=True)
        n = torch.tensor(float(teacher_scores.shape[0]), device=s.device)
        _all_reduce_sum(s)
        _all_reduce_sum(n)
        m = self.center_momentum
        self.center.mul_(m).add_(s / n.clamp_min(1.0), alpha=1 - m)


def cross_entropy(targets: torch.Tensor, student_scores: torch.Tensor, student_temp: float) -> torch.Tensor:
    """Per-row ``-sum_k p_t log softmax(s / T_s)``: ``(B, K), (B, K) -> (B,)``."""
    return -(targets * F.log_softmax(student_scores.float() / student_temp, dim=-1)).sum(dim=-1)


class DINOLoss(CenteredTeacher):
    """DINO CLS loss over crop pairs.

    The student's views are compared to every teacher (global) view except the same view: for
    ``n_global`` teacher views and ``n_student`` student views (globals first, then locals), the loss is
    the mean over all ``(student v, teacher t)`` pairs with ``v != t`` of the batch-mean cross-entropy.
    """

    def __init__(
        self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9, mode: str = "centering"
    ) -> None:
        super().__init__(out_dim, center_momentum, mode)
        self.student_temp = student_temp

    def forward(self, student_views: list[torch.Tensor], teacher_targets: list[torch.Tensor]) -> torch.Tensor:
        """``student_views``: list of ``(B, K)`` scores; ``teacher_targets``: list of ``(B, K)`` probs."""
        total = student_views[0].new_zeros((), dtype=torch.float32)
        n = 0
        for v, s in enumerate(student_views):
            for t, p in enumerate(teacher_targets):
                if v == t:
                    continue
                total = total + cross_entropy(p, s, self.student_temp).mean()
                n += 1
        return total / max(n, 1)


class IBOTPatchLoss(CenteredTeacher):
    """iBOT loss on masked patches: student scores of masked tokens vs teacher targets of the same tokens.

    Each masked image contributes the mean over its masked patches; the sum of those is divided by the
    number of *all* global images, masked or not (dinov2's ``iBOTPatchLoss.forward_masked``: ``-loss.sum() /
    student_masks_flat.shape[0]``). With ``mask_probability`` p the loss is therefore about p times the
    mean over masked images, and the weight ``ibot_weight`` means what it means in dinov2 / iBOT.
    """

    def __init__(
        self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9, mode: str = "centering"
    ) -> None:
        super().__init__(out_dim, center_momentum, mode)
        self.student_temp = student_temp

    def forward(
        self, student_masked: torch.Tensor, teacher_targets: torch.Tensor, masks: torch.Tensor
    ) -> torch.Tensor:
        """``student_masked``/``teacher_targets``: ``(M, K)`` for the ``M = masks.sum()`` masked patches in
        ``masks`` ``(B, N)`` row-major order, ``B`` = every global image of the batch. Returns a scalar."""
        if student_masked.shape[0] == 0:
            return student_masked.sum() * 0.0
        ce = cross_entropy(teacher_targets, student_masked, self.student_temp)  # (M,)
        per_img = masks.sum(dim=1)  # (B,)
        weights = (1.0 / per_img.clamp_min(1).float()).repeat_interleave(per_img)  # (M,)
        return (ce * weights).sum() / max(masks.shape[0], 1)


class KoLeoLoss(nn.Module):
    """Kozachenko-Leonenko entropy regulariser: ``-mean_i log(min_{j != i} ||x_i - x_j|| + eps)``.

    Inputs ``(B, D)`` are L2-normalised first; the loss is minimised by spreading points apart.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] < 2:
            return x.sum() * 0.0
        x = F.normalize(x.float(), dim=-1, eps=1e-8)
        with torch.no_grad():
            sim = x @ x.t()
            sim.fill_diagonal_(-2.0)
            nn_idx = sim.argmax(dim=1)
        d = (x - x[nn_idx]).norm(dim=-1)
        return -torch.log(d + self.eps).mean()
