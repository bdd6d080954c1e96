"""The DINO + iBOT step beyond its backbone passes, part by part, for ``benchmarks/train_step.py`` (CPU).

The step's backbone passes are timed by ``train_step.ssl_backbone_parts``; what is left of the step (its
``beyond_the_backbone`` time) is the work the bare backbone step does not have. This section times each of
those parts alone, on the shapes one step gives them, interleaved round by round:

- ``heads``: the student's DINO head (CLS of every view) and iBOT head (the masked patches) forward and
  backward, and the teacher's two heads forward; their FLOPs over the time against the bare backbone
  step's FLOP rate (``over_bare``);
- ``losses``: the teacher's targets (centering), the DINO, iBOT and KoLeo losses forward and backward, and
  the centre updates;
- ``adamw``: one optimiser step (fused AdamW) and ``ema``: the teacher update. Both stream every parameter
  through memory a fixed number of times, so their bytes over the time are set against the machine's copy
  bandwidth measured in the same run (``over_copy``: 1 = as fast as memory allows).

The parts' sum against the step's ``beyond_the_backbone`` time leaves the glue (masks, concatenation, the
masked-patch gather and its scatter in the backward, zeroing gradients).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

#: Bytes each parameter moves per step: fused AdamW reads the parameter, its gradient and both moments and
#: writes the parameter and both moments (7 fp32 tensors); the EMA reads teacher and student, writes teacher.
ADAMW_TENSORS, EMA_TENSORS = 7, 3


def build_dino(backbone, z: dict, batch: int, device: torch.device):
    """The benchmark's DINO + iBOT model (``z``: sizes of ``train_step.sizes``), its AdamW (the training
    loop's parameter groups) and one random batch of ``2 * batch`` global and ``n_local * batch`` local
    views. Returns ``(arch, opt, views)``."""
    from fmct.ssl.meta_arch import DINOMetaArch
    from fmct.train.optim import build_optimizer, param_groups

    heads = {
        "out_dim": z["k"],
        "ibot_out_dim": z["k"],
        "head_hidden_dim": z["hidden"],
        "head_bottleneck_dim": 256,
    }
    arch = DINOMetaArch(backbone, heads).to(device)
    opt = build_optimizer(param_groups(arch.student, "backbone.", 0.9, arch.last_layer_names()))
    size, local = z["size"], z["local"]
    views = {"global": torch.rand(2 * batch, 3, size, size, size, device=device),
             "local": torch.rand(z["n_local"] * batch, 3, local, local, local, device=device), "n_global": 2}  # fmt: skip
    return arch, opt, views


def copy_bandwidth(mib: int = 256, reps: int = 5) -> float:
    """Bytes/s of the best of ``reps`` copies of a ``mib`` MiB fp32 tensor (bytes read + written)."""
    src = torch.rand(mib << 18)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(reps + 1):
        t = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.numel() * 4 / best


def _parts(arch, opt, z: dict, batch: int) -> dict[str, Callable[[], None]]:
    """The four parts as callables on inputs of the step's shapes (random, fixed)."""
    d, n_views = arch.student.backbone.embed_dim, 2 + z["n_local"]
    grid = arch.student.backbone.grid_size((z["size"],) * 3)
    masks = arch.make_masks(2 * batch, grid, torch.Generator().manual_seed(0))
    rows = int(masks.sum())
    s_cls = torch.randn(n_views * batch, d, requires_grad=True)
    s_patch = torch.randn(rows, d, requires_grad=True)
    t_cls, t_patch = torch.randn(2 * batch, d), torch.randn(rows, d)
    with torch.no_grad():
        t_dino, t_ibot = arch.teacher.dino_head(t_cls), arch.teacher.head_for_patches()(t_patch)
    s_dino = arch.student.dino_head(s_cls).detach().requires_grad_()
    s_ibot = arch.student.head_for_patches()(s_patch).detach().requires_grad_()
    cls_global = torch.randn(2 * batch, d, requires_grad=True)

    def heads() -> None:
        with torch.no_grad():
            arch.teacher.dino_head(t_cls)
            arch.teacher.head_for_patches()(t_patch)
        (arch.student.dino_head(s_cls).sum() + arch.student.head_for_patches()(s_patch).sum()).backward()

    def losses() -> None:  # as DINOMetaArch.compute_loss composes them
        with torch.no_grad():
            t_dino_p = arch.dino_loss.targets(t_dino, 0.04)
            t_ibot_p = arch.ibot_loss.targets(t_ibot, 0.04)
        dino = arch.dino_loss(list(s_dino.split(batch)), list(t_dino_p.split(batch)))
        ibot = arch.ibot_loss(s_ibot, t_ibot_p, masks)
        koleo = sum(arch.koleo_loss(x) for x in cls_global.split(batch))
        c = arch.cfg
        (c["dino_weight"] * dino + c["ibot_weight"] * ibot + c["koleo_weight"] * koleo).backward()
        arch.dino_loss.update_center(t_dino)
        arch.ibot_loss.update_center(t_ibot)

    for p in arch.student.parameters():  # gradients for AdamW to apply
        p.grad = torch.randn_like(p) * 1e-3
    return {"heads": heads, "losses": losses, "adamw": opt.step, "ema": lambda: arch.update_teacher(0.996)}


def ssl_rest_section(
    arch, opt, z: dict, batch: int, reps: int, bare_gflops: float, head_flops: float, beyond_ms: float | None
) -> dict:
    """Each part's median ms (``reps`` interleaved rounds), the heads' FLOP rate over ``bare_gflops`` (the
    bare backbone step's GFLOP/s), AdamW's and the EMA's GB/s over the copy bandwidth, and the parts' sum
    against ``beyond_ms`` (the step's time beyond its backbone passes). Changes ``arch``'s weights."""
    parts = _parts(arch, opt, z, batch)
    times: dict[str, list[float]] = {k: [] for k in parts}
    for f in parts.values():
        f()
    copy = copy_bandwidth()
    for _ in range(reps):
        for k, f in parts.items():
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    n_student = sum(p.numel() for p in arch.student.parameters())
    n_teacher = sum(p.numel() for p in arch.teacher.parameters())
    moved = {"adamw": 4 * ADAMW_TENSORS * n_student, "ema": 4 * EMA_TENSORS * n_teacher}
    out: dict = {"copy_gb_per_s": copy / 1e9, "parts": {}}
    for k, v in ms.items():
        out["parts"][k] = {"ms": v}
        if k in moved:
            out["parts"][k].update({"gb_per_s": moved[k] / v / 1e6, "over_copy": moved[k] / (v / 1e3) / copy})
    out["parts"]["heads"]["over_bare"] = head_flops / (ms["heads"] / 1e3) / (bare_gflops * 1e9)
    out["sum_ms"] = sum(ms.values())
    if beyond_ms is not None:
        out["glue_ms"] = beyond_ms - out["sum_ms"]
    print("SSL step beyond its backbone passes, part by part: " + ", ".join(f"{k} {v:.1f} ms" for k, v in ms.items())
          + f"; heads at x{out['parts']['heads']['over_bare']:.2f} the bare backbone's FLOP rate; AdamW "
          f"x{out['parts']['adamw']['over_copy']:.2f} and EMA x{out['parts']['ema']['over_copy']:.2f} the copy "
          f"bandwidth ({copy / 1e9:.1f} GB/s)" + (f"; glue {out['glue_ms']:.1f} ms" if beyond_ms else ""))  # fmt: skip
    return out
