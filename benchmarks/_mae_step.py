"""The shipped recipe's pretraining step (MAE), timed for ``benchmarks/train_step.py``.

CPU: ``configs/mae-p4-cpu.yaml`` (192/4/3, patch 4 on 48³, voxel features, batch 8), the recipe behind
``weights/demo-vit``. GPU: ``configs/vit-b-96.yaml`` (ViT-B, patch 8 on 96³, bf16 autocast), its batch halved
until it fits. One step = ``MAEMetaArch.compute_loss`` (encoder on the 25 % visible tokens, decoder on all) +
backward + AdamW, as :mod:`fmct.train.loop` runs it. FLOPs are counted by ``torch.utils.flop_counter`` on one
step (matrix products, attention, convolutions; forward and backward), so the utilisation needs no hand
formula. The peer is the same backbone's plain forward+backward on all tokens, timed round by round in the
same run: ``over_bare`` < 1 means the MAE step uses the machine less well than the bare backbone does.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    flop_registry,
    register_flop_formula,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from fmct.train.config import resolve_config
from fmct.train.loop import build_arch
from fmct.train.optim import build_optimizer, param_groups

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _count_cpu_attention() -> None:
    """torch's FLOP counter has no formula for the CPU flash-attention kernels (it would count attention as
    free); give them the formulas it uses for the CUDA ones."""
    fwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    bwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
    if fwd not in flop_registry:

        @register_flop_formula(fwd)
        def _fwd(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return sdpa_flop_count(query_shape, key_shape, value_shape)

    if bwd not in flop_registry:

        @register_flop_formula(bwd)
        def _bwd(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
            return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def _count_flops(fn: Callable[[], None]) -> float:
    _count_cpu_attention()
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def _steps(cfg: dict, batch: int, device: torch.device, gpu: bool) -> dict[str, Callable[[], None]]:
    """``{"mae": one MAE training step, "bare": the backbone's forward+backward on all tokens}`` on one
    random batch of ``(batch, 3, S, S, S)`` cubes."""
    torch.manual_seed(0)
    arch = build_arch(cfg, 3).to(device)
    opt = build_optimizer(param_groups(arch.student, "backbone.", 1.0, arch.last_layer_names()))
    size = int(cfg["data"]["global_size"])
    x = torch.rand(batch, 3, size, size, size, device=device)

    def mae() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
            loss, _, _ = arch.compute_loss({"global": x}, {}, torch.Generator().manual_seed(0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    backbone = arch.export_backbone()

    def bare() -> None:
        backbone.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
            y = backbone.forward_features(x)["cls"]
        y.float().mean().backward()

    return {"mae": mae, "bare": bare}


def _fits(cfg: dict, batch: int, device: torch.device, gpu: bool) -> bool:
    try:
        for f in _steps(cfg, batch, device, gpu).values():
            f()
        return True
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return False


def mae_step_section(gpu: bool, dry: bool, reps: int, peak: float, peak_cpu: float | None) -> dict:
    """Time the MAE step and the bare backbone step, interleaved for ``reps`` rounds.

    ``peak``: the run's matmul FLOP/s (wall clock); ``peak_cpu``: its FLOPs per CPU-second (CPU only).
    Returns ms/sample, counted FLOPs per sample, utilisation against ``peak`` (and per CPU-second), and the
    median per-round ratio of the MAE step's FLOP rate to the bare step's.
    """
    name = "vit-b-96.yaml" if gpu else "mae-p4-cpu.yaml"
    overrides = (
        ["model.embed_dim=48", "model.depth=1", "data.global_size=16", "mae.decoder_dim=32"] if dry else []
    )
    cfg = resolve_config(CONFIGS / name, overrides)
    device = torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")
    batch = 2 if dry else int(cfg["batch_size"])
    while device.type == "cuda" and batch > 1 and not _fits(cfg, batch, device, gpu):
        batch //= 2
    steps = _steps(cfg, batch, device, gpu)
    flops = {k: _count_flops(f) for k, f in steps.items()}  # also the warm-up
    walls: dict[str, list[float]] = {k: [] for k in steps}
    cpus: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(reps):
        for k, f in steps.items():
            _sync(device)
            t, c = time.perf_counter(), time.process_time()
            f()
            _sync(device)
            walls[k].append(time.perf_counter() - t)
            cpus[k].append(time.process_time() - c)
    wall = {k: statistics.median(v) for k, v in walls.items()}
    res = {"config": f"configs/{name}", "batch": batch, "input": int(cfg["data"]["global_size"]),
           "patch": int(cfg["model"]["patch_size"]), "mask_ratio": float(cfg["mae"]["mask_ratio"]),
           "ms_per_sample": 1e3 * wall["mae"] / batch, "flops_per_sample": flops["mae"] / batch,
           "bare_flops_per_sample": flops["bare"] / batch, "mfu_vs_matmul": flops["mae"] / wall["mae"] / peak,
           "bare_mfu_vs_matmul": flops["bare"] / wall["bare"] / peak,
           "over_bare": statistics.median([(flops["mae"] / a) / (flops["bare"] / b)
                                           for a, b in zip(walls["mae"], walls["bare"], strict=True)])}  # fmt: skip
    if device.type == "cpu" and peak_cpu:
        cpu = statistics.median(cpus["mae"])
        res["mfu_vs_matmul_cpu"] = flops["mae"] / cpu / peak_cpu
        res["over_bare_cpu"] = statistics.median(
            [(flops["mae"] / a) / (flops["bare"] / b) for a, b in zip(cpus["mae"], cpus["bare"], strict=True)]
        )
    print(f"MAE step ({res['config']}, batch {batch}): {res['ms_per_sample']:.1f} ms/sample, "
          f"{100 * res['mfu_vs_matmul']:.1f} % of matmul peak = x{res['over_bare']:.2f} the bare backbone's "
          f"fwd+bwd on all tokens" + (f"; per CPU-second {100 * res['mfu_vs_matmul_cpu']:.1f} %"
                                      if "mfu_vs_matmul_cpu" in res else ""))  # fmt: skip
    return res
