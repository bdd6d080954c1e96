"""Training-step speed: our SSL student vs MONAI's ViT at the same size, and FLOP/s vs a matmul peak.

CPU mode (default): tiny ViT (192/6/3, patch 8) on 64³ inputs, fp32. Measures, in one run,
  - backbone forward+backward of ``fmct.models.vit3d.ViT3D`` and of ``monai.networks.nets.ViT`` with the
    same patch size, width, depth, heads, MLP ratio and input (ms/sample, tokens/s, achieved FLOP/s),
  - our full SSL step (teacher forward on 2 globals, student forward/backward on 2 masked globals + locals,
    DINO/iBOT heads and losses, AdamW, EMA) in ms/sample,
  - the machine's fp32 (or bf16) matmul FLOP/s, to express the above as a fraction of it.
``--gpu``: bf16 autocast, ViT-B (768/12/12), 96³ input, patch 12 (512 tokens), 65,536 prototypes, batch
halved until it fits; prints model FLOPs utilisation against the measured bf16 matmul peak.
Writes ``benchmarks/results/train_step.json`` (``train_step_gpu.json`` for ``--gpu``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _einops_shim() -> bool:
    """MONAI's attention uses ``einops.layers.torch.Rearrange``; einops is not a dependency of fmct. When
    it is missing, register a stand-in implementing exactly the three patterns MONAI's ViT uses with the
    same reshape/permute einops performs. Returns True when the shim is used."""
    import importlib.util
    import sys
    import types

    if importlib.util.find_spec("einops") is not None:
        return False

    class Rearrange(torch.nn.Module):
        def __init__(self, pattern: str, **axes: int) -> None:
            super().__init__()
            self.pattern, self.axes = " ".join(pattern.split()), axes

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p, a = self.pattern, self.axes
            if p == "b h (qkv l d) -> qkv b l h d":
                b, h, _ = x.shape
                return x.reshape(b, h, a["qkv"], a["l"], -1).permute(2, 0, 3, 1, 4)
            if p == "b h (l d) -> b l h d":
                b, h, _ = x.shape
                return x.reshape(b, h, a["l"], -1).permute(0, 2, 1, 3)
            if p == "b l h d -> b h (l d)":
                b, l_, h, d = x.shape
                return x.permute(0, 2, 1, 3).reshape(b, h, l_ * d)
            raise NotImplementedError(f"einops shim: pattern {p!r}")

    pkg = types.ModuleType("einops")
    layers = types.ModuleType("einops.layers")
    lt = types.ModuleType("einops.layers.torch")
    lt.Rearrange = Rearrange  # type: ignore[attr-defined]
    pkg.layers, layers.torch = layers, lt  # type: ignore[attr-defined]
    pkg.__spec__ = importlib.machinery.ModuleSpec("einops", None)
    sys.modules.update({"einops": pkg, "einops.layers": layers, "einops.layers.torch": lt})
    return True


def vit_flops(tokens: int, dim: int, depth: int, mlp_ratio: float, patch_voxels: int, chans: int) -> float:
    """Forward FLOPs of one ViT sample (2 per multiply-add): blocks + patch embedding."""
    per_layer = tokens * (8 * dim * dim + 4 * mlp_ratio * dim * dim) + 4 * tokens * tokens * dim
    return depth * per_layer + 2 * (tokens - 1) * patch_voxels * chans * dim


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_fn(fn, device: torch.device, warmup: int, reps: int) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    sync(device)
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync(device)
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def fwd_bwd(model: torch.nn.Module, x: torch.Tensor, ours: bool, amp: bool):
    def run() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            y = model.forward_features(x)["cls"] if ours else model(x)[0]
        y.float().mean().backward()

    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="bf16 ViT-B 96³ on CUDA")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    args = ap.parse_args()

    shim = _einops_shim()
    from monai.networks.nets import ViT as MonaiViT

    from fmct.models.vit3d import ViT3D, ViT3DConfig
    from fmct.ssl.meta_arch import DINOMetaArch
    from fmct.train.optim import build_optimizer, param_groups

    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = args.gpu
    device = torch.device("cuda" if gpu else "cpu")
    if gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: no CUDA device")
    if gpu:
        dim, depth, heads, patch, size, local, k, hidden = 768, 12, 12, 12, 96, 48, 65536, 2048
        batch, reps, n_local = args.batch or 64, args.reps or 10, 8
        torch.backends.cuda.matmul.allow_tf32 = True
    else:
        dim, depth, heads, patch, size, local, k, hidden = 192, 6, 3, 8, 64, 32, 4096, 1024
        batch, reps, n_local = args.batch or 2, args.reps or 3, 2
    torch.manual_seed(0)
    cfg = ViT3DConfig(
        img_size=size, patch_size=patch, in_chans=3, embed_dim=dim, depth=depth, num_heads=heads
    )
    ours = ViT3D(cfg).to(device)
    monai_vit = MonaiViT(3, size, patch, hidden_size=dim, mlp_dim=4 * dim, num_layers=depth, num_heads=heads,
                     classification=True, qkv_bias=True, post_activation=None).to(device)  # fmt: skip
    tokens = (size // patch) ** 3 + 1

    def fits(b: int) -> bool:
        try:
            x = torch.rand(b, 3, size, size, size, device=device)
            fwd_bwd(ours, x, True, gpu)()
            fwd_bwd(monai_vit, x, False, gpu)()
            return True
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            return False

    if gpu:
        while batch > 1 and not fits(batch):
            batch //= 2
    x = torch.rand(batch, 3, size, size, size, device=device)
    flops = 3 * vit_flops(tokens, dim, depth, 4.0, patch**3, 3) * batch  # fwd + bwd ~ 3x fwd
    res: dict = {"mode": "gpu" if gpu else "cpu", "device": torch.cuda.get_device_name() if gpu else platform.processor() or "cpu",
                 "threads": torch.get_num_threads(), "batch": batch, "input": size, "patch": patch,
                 "dim": dim, "depth": depth, "heads": heads, "tokens": tokens,
                 "precision": "bf16" if gpu else "fp32", "einops_shim": shim}  # fmt: skip
    dtype = torch.bfloat16 if gpu else torch.float32
    peak = max(matmul_peak(device, dtype, 8192 if gpu else 1536, 20 if gpu else 5) for _ in range(3))
    res["matmul_peak_tflops"] = peak / 1e12
    # interleave the two models round by round so that load from other processes hits both alike
    fns = {"fmct": fwd_bwd(ours, x, True, gpu), "monai": fwd_bwd(monai_vit, x, False, gpu)}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(1 if not gpu else 3):
        for f in fns.values():
            f()
    for _ in range(reps):
        for name, f in fns.items():
            times[name].append(time_fn(f, device, 0, 1))
    for name in fns:
        t = sorted(times[name])[len(times[name]) // 2]
        res[name] = {"ms_per_sample": 1e3 * t / batch, "tokens_per_s": tokens * batch / t,
                     "tflops": flops / t / 1e12, "mfu_vs_matmul": flops / t / peak}  # fmt: skip
        print(f"{name:>6} backbone fwd+bwd: {1e3 * t / batch:8.1f} ms/sample  {tokens * batch / t:10.0f} tokens/s  "
              f"{flops / t / 1e12:7.3f} TFLOP/s  = {100 * flops / t / peak:5.1f} % of matmul peak")  # fmt: skip
    res["speedup_vs_monai"] = res["monai"]["ms_per_sample"] / res["fmct"]["ms_per_sample"]

    # full SSL step (student + teacher + heads + losses + AdamW + EMA)
    monai_vit = None  # free memory before the SSL step
    dino = {"out_dim": k, "ibot_out_dim": k, "head_hidden_dim": hidden, "head_bottleneck_dim": 256}
    arch = DINOMetaArch(ViT3D(cfg), dino).to(device)
    opt = build_optimizer(param_groups(arch.student, "backbone.", 0.9, arch.last_layer_names()))
    b = {"global": torch.rand(2 * batch, 3, size, size, size, device=device),
         "local": torch.rand(n_local * batch, 3, local, local, local, device=device), "n_global": 2}  # fmt: skip

    def ssl_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
            loss, _, _ = arch.compute_loss(b, {"teacher_temp": 0.04}, torch.Generator().manual_seed(0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        arch.update_teacher(0.996)

    try:
        t = time_fn(ssl_step, device, 1 if not gpu else 2, max(2, reps // 2))
        ltok = (local // patch) ** 3 + 1
        ssl_flops = batch * (3 * vit_flops(tokens, dim, depth, 4, patch**3, 3) * 3
                             + 3 * n_local * vit_flops(ltok, dim, depth, 4, patch**3, 3))  # fmt: skip
        res["ssl_step"] = {"ms_per_sample": 1e3 * t / batch, "samples_per_s": batch / t,
                           "backbone_tflops": ssl_flops / t / 1e12, "mfu_vs_matmul": ssl_flops / t / peak,
                           "n_local": n_local, "local": local, "prototypes": k}  # fmt: skip
        print(f"SSL step (2 globals + {n_local} locals, teacher+student, K={k}): {1e3 * t / batch:.1f} ms/sample, "
              f"{batch / t:.2f} samples/s, backbone MFU {100 * ssl_flops / t / peak:.1f} % of matmul peak")  # fmt: skip
    except torch.cuda.OutOfMemoryError:
        res["ssl_step"] = {"error": "out of memory at this batch"}
    print(
        f"matmul peak ({res['precision']}): {peak / 1e12:.3f} TFLOP/s; fmct/monai speed-up x{res['speedup_vs_monai']:.2f}"
    )
    res["headline"] = {"fmct_ms_per_sample": round(res["fmct"]["ms_per_sample"], 1),
                       "monai_ms_per_sample": round(res["monai"]["ms_per_sample"], 1),
                       "speedup_vs_monai": round(res["speedup_vs_monai"], 2),
                       "fmct_mfu_vs_matmul": round(res["fmct"]["mfu_vs_matmul"], 3),
                       "ssl_ms_per_sample": round(res["ssl_step"].get("ms_per_sample", math.nan), 1)}  # fmt: skip
    out = HERE / "results" / ("train_step_gpu.json" if gpu else "train_step.json")
    out.parent.mkdir(exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
