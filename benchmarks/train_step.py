"""Training-step speed: our SSL student vs MONAI's ViT at the same size, and FLOP/s vs a matmul peak.

CPU mode (default): tiny ViT (192/6/3, patch 8) on 64³ inputs, fp32. Measures, in one run,
  - backbone forward+backward of ``fmct.models.vit3d.ViT3D`` and of ``monai.networks.nets.ViT`` with the
    same patch size, width, depth, heads, MLP ratio and input (ms/sample, tokens/s, achieved FLOP/s),
  - our full SSL step (teacher forward on 2 globals, student forward/backward on 2 masked globals + locals,
    DINO/iBOT heads and losses, AdamW, EMA) in ms/sample,
  - the machine's fp32 (or bf16) matmul FLOP/s, to express the above as a fraction of it.
``--gpu``: bf16 autocast, ViT-B (768/12/12), 96³ input, patch 12 (512 tokens), 65,536 prototypes, batch
halved until it fits; prints model FLOPs utilisation against the measured bf16 matmul peak.
``--dry``: the same code path at a tiny size (with ``--gpu`` on the CPU when there is no CUDA, bf16 autocast
as on the GPU) to check that the script runs; prints the result instead of writing it.
``--compile``: also ``torch.compile`` the backbone; compile time, steady step, and a short run
(``--short-steps`` steps, compile time included) against eager, in the same run.
The ``contention`` section (CPU) times the backbone step in worker processes with libgomp's default wait
policy, with ``OMP_WAIT_POLICY=PASSIVE`` (fmct's default, :mod:`fmct.omp_policy`) and with the shorter spins
of ``--spin-counts``, on the machine as it is and next to one busy process, round by round interleaved.
The ``ssl_step_rest`` section times the SSL step's parts beyond its backbone (heads, losses, AdamW, EMA).
CPU mode also times the inference of the 16 mm-token backbone (``configs/mae-p4-cpu.yaml``: 192/4/3, patch 4,
``voxel_mlp`` 8) on batches of 8 48³ inputs under ``torch.inference_mode`` (the ``fmct embed`` path), s/scan.
On a shared machine wall-clock FLOP/s track the load more than the code, so every CPU figure is also given
per CPU-second of this process (``*_cpu``: FLOPs over ``time.process_time``, against the matmul's FLOPs per
CPU-second of the same run). The run keeps freed blocks in the heap (:mod:`fmct.cpu_heap`), as embedding does.
Writes ``benchmarks/results/train_step.json`` (``train_step_gpu.json`` for ``--gpu``).
"""

from __future__ import annotations

# isort: off
import fmct  # noqa: F401  (first: sets OMP_WAIT_POLICY=PASSIVE before torch loads libgomp)

# isort: on
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _mae_step import mae_step_section
from _ssl_rest import build_dino, ssl_rest_section

from fmct.atomic import write_text_atomic

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


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> tuple[float, float]:
    """FLOP/s of ``reps`` n×n matrix products: per wall-clock second and per CPU-second of this process."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(reps):
        a @ b
    sync(device)
    flops = 2 * n**3 * reps
    return flops / (time.perf_counter() - t), flops / max(time.process_time() - c, 1e-9)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_cpu(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of one call."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def inference_section(reps: int, threads: int, dry: bool) -> dict:
    """The mae-p4-cpu backbone (16 mm tokens) embedding batches of 8 48³ cubes in inference mode: s/scan
    (wall, CPU), FLOP/s per CPU-second, round by round with a matmul burst (peak per CPU-second)."""
    from fmct.models.vit3d import ViT3D, ViT3DConfig

    dim, depth, size, batch = (48, 1, 16, 2) if dry else (192, 4, 48, 8)
    cfg = ViT3DConfig(img_size=size, patch_size=4, embed_dim=dim, depth=depth, num_heads=3, voxel_mlp=8)
    model = ViT3D(cfg).eval()
    x = torch.rand(batch, 3, size, size, size)
    tokens = (size // 4) ** 3 + 1
    flops = batch * vit_flops(tokens, dim, depth, 4.0, 64, 8)

    def run() -> None:
        with torch.inference_mode():
            model.forward_features(x)

    run()
    walls, cpus, peaks = [], [], []
    for _ in range(reps):
        peaks.append(matmul_peak(torch.device("cpu"), torch.float32, 256 if dry else 1536, 5)[1])
        w, c = time_cpu(run)
        walls.append(w)
        cpus.append(c)
    wall, cpu, peak = statistics.median(walls), statistics.median(cpus), max(peaks)
    res = {"config": "configs/mae-p4-cpu.yaml backbone", "batch": batch, "input": size, "tokens": tokens,
           "threads": threads, "s_per_scan_wall": wall / batch, "s_per_scan_cpu": cpu / batch,
           "gflops_per_cpu_s": flops / cpu / 1e9, "matmul_peak_gflops_per_cpu_s": peak / 1e9,
           "mfu_vs_matmul_cpu": flops / cpu / peak, "flops_per_scan": flops / batch,
           "scans_1200_wall_s": 1200 * wall / batch}  # fmt: skip
    print(f"p4 backbone inference (batch {batch}, 48³, {tokens} tokens): {wall / batch:.3f} s/scan wall, "
          f"{cpu / batch:.3f} CPU-s/scan = {100 * res['mfu_vs_matmul_cpu']:.0f} % of the matmul's FLOPs per "
          f"CPU-second; 1,200 scans {res['scans_1200_wall_s']:.0f} s at this load")  # fmt: skip
    return res


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


#: One backbone in a worker process: ``python -c WORKER cfg_json batch size``; a line on stdin runs one
#: forward+backward and prints its seconds. torch is imported before fmct so that the parent's environment
#: alone decides the OpenMP wait policy.
WORKER = """
import json, sys, time
import torch
from fmct.models.vit3d import ViT3D, ViT3DConfig
cfg, batch, size = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
m = ViT3D(ViT3DConfig(**cfg))
x = torch.rand(batch, 3, size, size, size)
def step():
    m.zero_grad(set_to_none=True)
    m.forward_features(x)["cls"].mean().backward()
step()
print("ready", flush=True)
for _ in sys.stdin:
    t = time.perf_counter()
    step()
    print(time.perf_counter() - t, flush=True)
"""


def contention(cfg: dict, batch: int, size: int, rounds: int, spins: tuple[int, ...] = ()) -> dict:
    """Backbone fwd+bwd (ms/sample) in workers with libgomp's default wait policy (idle threads spin ~3 ms,
    then sleep) vs PASSIVE (they sleep at once), and with each of ``spins`` as ``GOMP_SPINCOUNT`` (~100 spins
    a µs: the short spins in between), on the machine as it is and next to one busy process; per-round
    ratios to PASSIVE, interleaved."""
    src = str(Path(fmct.__file__).resolve().parents[1])
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [src, base.get("PYTHONPATH")]))
    envs = {"gomp_default": base, "passive": {**base, "OMP_WAIT_POLICY": "PASSIVE"}}
    envs.update({f"spin{n}": {**base, "GOMP_SPINCOUNT": str(n)} for n in spins})
    args = [sys.executable, "-c", WORKER, json.dumps(cfg), str(batch), str(size)]
    procs = {k: subprocess.Popen(args, env=e, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for k, e in envs.items()}  # fmt: skip
    out: dict = {}
    try:
        for p in procs.values():
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError("contention worker failed to start")
        for busy in (0, 1):
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
            try:
                times: dict[str, list[float]] = {k: [] for k in procs}
                for r in range(rounds + 1):  # round 0 warms up next to the new competitor
                    for k, p in procs.items():
                        time.sleep(0.01)  # the last worker's spinning threads (≤ ~3 ms) have gone to sleep
                        p.stdin.write("go\n")
                        p.stdin.flush()
                        t = float(p.stdout.readline())
                        if r:
                            times[k].append(t)
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
            cond = {k: {"ms_per_sample_median": 1e3 * statistics.median(v) / batch,
                        "ms_per_sample_rounds": [round(1e3 * t / batch, 1) for t in v]}
                    for k, v in times.items()}  # fmt: skip
            for k in times:
                if k != "passive":
                    name = "default" if k == "gomp_default" else k
                    cond[f"{name}_over_passive_median_ratio"] = statistics.median(
                        [a / b for a, b in zip(times[k], times["passive"], strict=True)]
                    )
            out["one_busy_process" if busy else "machine_as_is"] = cond
            print(f"contention ({'1 busy process' if busy else 'machine as is'}): libgomp default "
                  f"{cond['gomp_default']['ms_per_sample_median']:.1f} ms/sample, PASSIVE "
                  f"{cond['passive']['ms_per_sample_median']:.1f} ms/sample, default/passive "
                  f"x{cond['default_over_passive_median_ratio']:.2f}"
                  + "".join(f", GOMP_SPINCOUNT={n} x{cond[f'spin{n}_over_passive_median_ratio']:.2f}" for n in spins)
                  + f" (median of {rounds} rounds)")  # fmt: skip
    finally:
        for p in procs.values():
            p.stdin.close()
            p.wait()
    return out


def compile_section(
    model: torch.nn.Module, x: torch.Tensor, device: torch.device, reps: int, short: int
) -> dict:
    """``torch.compile`` vs eager on the same backbone and input: compile time (first call, inductor's
    on-disk caches off, as a first run sees it), steady step medians (interleaved), and ``short`` steps end
    to end with the compile time included."""
    import copy

    import torch._inductor.config as inductor_config

    compiled = torch.compile(copy.deepcopy(model))

    def step(m: torch.nn.Module) -> Callable[[], None]:
        def run() -> None:
            m.zero_grad(set_to_none=True)
            m(x).mean().backward()  # forward() = the CLS embedding, as forward_features(x)["cls"]

        return run

    steps = {"eager": step(model), "compiled": step(compiled)}
    t0 = time.perf_counter()
    with inductor_config.patch(force_disable_caches=True):
        steps["compiled"]()
        sync(device)
    first = time.perf_counter() - t0
    steps["eager"]()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(reps):
        for k, f in steps.items():
            times[k].append(time_fn(f, device, 0, 1))
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {"compile_s_first_step_no_cache": first, "eager_ms_step": 1e3 * med["eager"],
           "compiled_ms_step": 1e3 * med["compiled"],
           "steady_speedup": statistics.median([a / b for a, b in zip(times["eager"], times["compiled"], strict=True)]),
           "short_run_steps": short, "short_run_eager_s": short * med["eager"],
           "short_run_compiled_s": first + (short - 1) * med["compiled"]}  # fmt: skip
    res["short_run_speedup"] = res["short_run_eager_s"] / res["short_run_compiled_s"]
    print(f"torch.compile: first step {first:.1f} s; steady x{res['steady_speedup']:.2f}; "
          f"{short} steps incl. compile x{res['short_run_speedup']:.2f} vs eager")  # fmt: skip
    return res


def ssl_backbone_parts(model, z: dict, batch: int, device: torch.device, reps: int) -> dict:
    """The backbone passes of one SSL step, each timed alone and interleaved with the bare fwd+bwd step:
    teacher forward (no grad) on the globals, student fwd+bwd on the masked globals, on the locals.
    Returns GFLOP/s of each and its median per-round ratio to the bare step's."""
    size, local, n_local, patch = z["size"], z["local"], z["n_local"], z["patch"]
    dim, depth = z["dim"], z["depth"]
    g2 = torch.rand(batch, 3, size, size, size, device=device)
    g = torch.rand(2 * batch, 3, size, size, size, device=device)
    lo = torch.rand(n_local * batch, 3, local, local, local, device=device)
    n = (size // patch) ** 3
    mask = torch.rand(2 * batch, n, generator=torch.Generator().manual_seed(0)) < 0.3
    fg = vit_flops(n + 1, dim, depth, 4, patch**3, 3)
    fl = vit_flops((local // patch) ** 3 + 1, dim, depth, 4, patch**3, 3)

    def bwd(x: torch.Tensor, m: torch.Tensor | None = None) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            model.forward_features(x, m)["cls"].mean().backward()

        return run

    def teacher() -> None:
        with torch.no_grad():
            model.forward_features(g)

    parts = {"bare_fwd_bwd": (bwd(g2), 3 * batch * fg), "teacher_fwd_globals": (teacher, 2 * batch * fg),
             "student_fwd_bwd_masked_globals": (bwd(g, mask.to(device)), 6 * batch * fg),
             "student_fwd_bwd_locals": (bwd(lo), 3 * n_local * batch * fl)}  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in parts}
    for f, _ in parts.values():
        f()
    for _ in range(reps):
        for k, (f, _) in parts.items():
            times[k].append(time_fn(f, device, 0, 1))
    out = {}
    for k, (_, fl_k) in parts.items():
        ratio = statistics.median(
            [
                (fl_k / a) / (parts["bare_fwd_bwd"][1] / b)
                for a, b in zip(times[k], times["bare_fwd_bwd"], strict=True)
            ]
        )
        out[k] = {"gflops": fl_k / statistics.median(times[k]) / 1e9, "over_bare": ratio,
                  "ms": 1e3 * statistics.median(times[k])}  # fmt: skip
    print("SSL step's backbone passes, FLOP/s over the bare fwd+bwd step's: "
          + ", ".join(f"{k} x{v['over_bare']:.2f}" for k, v in out.items() if k != "bare_fwd_bwd"))  # fmt: skip
    return out


def beyond_the_backbone(parts: dict, step_s: float, head_flops: float) -> dict:
    """What the SSL step spends beyond its backbone passes: the step's median time minus the passes' (each
    timed alone by :func:`ssl_backbone_parts`; approximate, other rounds), i.e. the DINO/iBOT heads, losses,
    AdamW and EMA; and the heads' FLOP rate over that time as a fraction of the bare fwd+bwd step's."""
    passes = ("teacher_fwd_globals", "student_fwd_bwd_masked_globals", "student_fwd_bwd_locals")
    rest = step_s - sum(parts[k]["ms"] for k in passes) / 1e3
    bare_rate = parts["bare_fwd_bwd"]["gflops"] * 1e9
    res = {"ms": 1e3 * rest, "share_of_step": rest / step_s,
           "head_flops_rate_over_bare": head_flops / rest / bare_rate if rest > 0 else math.nan}  # fmt: skip
    print(f"SSL step beyond its backbone passes (heads, losses, AdamW, EMA): {res['ms']:.0f} ms = "
          f"{100 * res['share_of_step']:.1f} % of the step; the heads' FLOPs alone over that time run at "
          f"x{res['head_flops_rate_over_bare']:.2f} the bare backbone's rate")  # fmt: skip
    return res


def ssl_breakdown(
    res: dict, bare_model, fresh_backbone, z: dict, batch: int, reps: int, step_s, heads: float
) -> None:
    """CPU: the SSL step's backbone passes timed alone (``ssl_backbone_parts``), its time beyond them
    (``ssl_step.beyond_the_backbone``, when the step ran: ``step_s`` its median seconds) and that time's parts
    (``ssl_step_rest``, on a DINO model around ``fresh_backbone``); ``heads``: the step's head FLOPs."""
    device = torch.device("cpu")
    res["ssl_backbone_parts"] = ssl_backbone_parts(bare_model, z, batch, device, reps)
    if step_s is not None:
        res["ssl_step"]["beyond_the_backbone"] = beyond_the_backbone(res["ssl_backbone_parts"], step_s, heads)
    arch, opt, _ = build_dino(fresh_backbone, z, batch, device)
    beyond = res["ssl_step"].get("beyond_the_backbone", {}).get("ms")
    res["ssl_step_rest"] = ssl_rest_section(
        arch, opt, z, batch, max(reps, 5), res["ssl_backbone_parts"]["bare_fwd_bwd"]["gflops"], heads, beyond
    )


def sizes(gpu: bool, dry: bool) -> dict:
    """Model and batch sizes of each mode."""
    if dry:
        return dict(dim=48, depth=2, heads=3, patch=8, size=32, local=16, k=256, hidden=64, batch=1, reps=2,
                    n_local=2, peak_n=256)  # fmt: skip
    if gpu:
        return dict(dim=768, depth=12, heads=12, patch=12, size=96, local=48, k=65536, hidden=2048, batch=64,
                    reps=10, n_local=8, peak_n=8192)  # fmt: skip
    return dict(dim=192, depth=6, heads=3, patch=8, size=64, local=32, k=4096, hidden=1024, batch=2, reps=5,
                n_local=2, peak_n=1536)  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="bf16 ViT-B 96³ on CUDA")
    ap.add_argument("--dry", action="store_true", help="tiny sizes, check the code path; nothing written")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    ap.add_argument(
        "--compile", action="store_true", help="also measure torch.compile (CPU, slow to compile)"
    )
    ap.add_argument("--short-steps", type=int, default=50, help="steps of the --compile short-run figure")
    ap.add_argument("--no-contention", action="store_true", help="skip the OpenMP wait-policy section")
    ap.add_argument("--spin-counts", default="1000,10000",
                    help="GOMP_SPINCOUNT values the wait-policy section also times (comma-separated; '' for none)")  # fmt: skip
    args = ap.parse_args()

    from fmct.cpu_heap import reuse_freed_memory

    heap = reuse_freed_memory() if not args.gpu else None
    shim = _einops_shim()
    from monai.networks.nets import ViT as MonaiViT

    from fmct.models.vit3d import ViT3D, ViT3DConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = args.gpu
    if gpu and not torch.cuda.is_available() and not args.dry:
        raise SystemExit("--gpu: no CUDA device (add --dry to check the code path on the CPU)")
    cuda = gpu and torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    z = sizes(gpu, args.dry)
    dim, depth, heads, patch, size = z["dim"], z["depth"], z["heads"], z["patch"], z["size"]
    batch, reps = args.batch or z["batch"], args.reps or z["reps"]
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
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
    res: dict = {"mode": ("gpu" if gpu else "cpu") + ("-dry" if args.dry else ""),
                 "device": torch.cuda.get_device_name() if cuda else platform.processor() or "cpu",
                 "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                 "load_avg_1min_start": os.getloadavg()[0], "batch": batch, "input": size, "patch": patch,
                 "dim": dim, "depth": depth, "heads": heads, "tokens": tokens,
                 "precision": "bf16" if gpu else "fp32", "einops_shim": shim, "cpu_heap_reuse": heap}  # fmt: skip
    dtype = torch.bfloat16 if gpu else torch.float32
    peak_reps = 20 if cuda else 5

    cpu_bursts: list[float] = []

    def burst() -> float:
        wall, cpu = matmul_peak(device, dtype, z["peak_n"], peak_reps)
        cpu_bursts.append(cpu)
        return wall

    # interleave the two models round by round, with a matmul burst each round, so that load from other
    # processes hits all three alike; the peak is the best burst of the whole run
    fns = {"fmct": fwd_bwd(ours, x, True, gpu), "monai": fwd_bwd(monai_vit, x, False, gpu)}
    if not cuda:  # on the GPU the SSL step runs after MONAI's model is freed
        fns["ssl"], ssl_flops, ssl_head_flops = make_ssl_step(ViT3D(cfg), z, batch, device, gpu)
    times: dict[str, list[float]] = {k: [] for k in fns}
    cpu_times: dict[str, list[float]] = {k: [] for k in fns}
    bursts = [burst() for _ in range(2)]
    for _ in range(1 if not gpu else 3):
        for f in fns.values():
            f()
    for _ in range(reps):
        bursts.append(burst())
        for name, f in fns.items():
            if cuda:
                times[name].append(time_fn(f, device, 0, 1))
            else:
                w, c = time_cpu(f)
                times[name].append(w)
                cpu_times[name].append(c)
    peak = max(bursts)
    res["matmul_peak_tflops"] = peak / 1e12
    res["matmul_median_tflops"] = statistics.median(bursts) / 1e12
    peak_cpu = max(cpu_bursts)
    if not cuda:
        res["matmul_peak_tflops_per_cpu_s"] = peak_cpu / 1e12
    for name in ("fmct", "monai"):
        t = statistics.median(times[name])
        res[name] = {"ms_per_sample": 1e3 * t / batch, "tokens_per_s": tokens * batch / t,
                     "tflops": flops / t / 1e12, "mfu_vs_matmul": flops / t / peak}  # fmt: skip
        cpu_note = ""
        if cpu_times[name]:
            c = statistics.median(cpu_times[name])
            res[name].update(
                {"cpu_ms_per_sample": 1e3 * c / batch, "mfu_vs_matmul_cpu": flops / c / peak_cpu}
            )
            cpu_note = f"; per CPU-second {100 * flops / c / peak_cpu:5.1f} %"
        print(f"{name:>6} backbone fwd+bwd: {1e3 * t / batch:8.1f} ms/sample  {tokens * batch / t:10.0f} tokens/s  "
              f"{flops / t / 1e12:7.3f} TFLOP/s  = {100 * flops / t / peak:5.1f} % of matmul peak{cpu_note}")  # fmt: skip
    if cpu_times["fmct"]:
        res["speedup_vs_monai_cpu"] = statistics.median(
            [m / f for f, m in zip(cpu_times["fmct"], cpu_times["monai"], strict=True)])  # fmt: skip
    ratios = [m / f for f, m in zip(times["fmct"], times["monai"], strict=True)]
    res["speedup_vs_monai"] = statistics.median(ratios)
    if cuda:
        monai_vit = fns = None  # free memory before the SSL step
        try:
            ssl_fn, ssl_flops, ssl_head_flops = make_ssl_step(ViT3D(cfg), z, batch, device, gpu)
            ssl_fn()
            times["ssl"] = [time_fn(ssl_fn, device, 1, 1) for _ in range(max(2, reps // 2))]
        except torch.cuda.OutOfMemoryError:
            times["ssl"] = []
        ssl_fn = None
        torch.cuda.empty_cache()
    if times["ssl"]:
        res["ssl_step"] = ssl_result(
            times["ssl"], ssl_flops, batch, peak, z, None if cuda else times["fmct"], flops, ssl_head_flops
        )
        if cpu_times.get("ssl"):
            c = statistics.median(cpu_times["ssl"])
            res["ssl_step"]["mfu_vs_matmul_cpu"] = ssl_flops / c / peak_cpu
            res["ssl_step"]["mfu_over_bare_backbone_cpu"] = statistics.median(
                [(ssl_flops / s) / (flops / b) for s, b in zip(cpu_times["ssl"], cpu_times["fmct"], strict=True)])  # fmt: skip
    else:
        res["ssl_step"] = {"error": "out of memory at this batch"}
    if not cuda:
        ssl_breakdown(res, ours, ViT3D(cfg), z, batch, reps, statistics.median(times["ssl"]) if times["ssl"] else None,
                      ssl_head_flops)  # fmt: skip
    res["mae_step"] = mae_step_section(gpu, args.dry, reps, peak, None if cuda else peak_cpu)
    if not cuda:
        res["inference_p4"] = inference_section(reps, torch.get_num_threads(), args.dry)
    if args.compile and not cuda:
        res["compile"] = compile_section(ours, x, device, max(3, reps), args.short_steps)
    if not cuda and not args.no_contention:
        spins = tuple(int(n) for n in args.spin_counts.split(",") if n.strip())
        res["contention"] = contention(cfg.to_dict(), batch, size, 1 if args.dry else reps, spins)
    res["load_avg_1min_end"] = os.getloadavg()[0]
    print(f"matmul peak ({res['precision']}): {peak / 1e12:.3f} TFLOP/s; fmct/monai speed-up "
          f"x{res['speedup_vs_monai']:.2f} (median of per-round ratios)")  # fmt: skip
    ssl = res["ssl_step"]
    res["headline"] = {"fmct_ms_per_sample": round(res["fmct"]["ms_per_sample"], 1),
                       "monai_ms_per_sample": round(res["monai"]["ms_per_sample"], 1),
                       "speedup_vs_monai": round(res["speedup_vs_monai"], 2),
                       "fmct_mfu_vs_matmul": round(res["fmct"]["mfu_vs_matmul"], 3),
                       "ssl_ms_per_sample": round(ssl.get("ms_per_sample", math.nan), 1),
                       "ssl_mfu_vs_matmul": round(ssl.get("mfu_vs_matmul", math.nan), 3),
                       "mae_ms_per_sample": round(res["mae_step"]["ms_per_sample"], 1),
                       "mae_mfu_vs_matmul": round(res["mae_step"]["mfu_vs_matmul"], 3),
                       "mae_over_bare": round(res["mae_step"]["over_bare"], 2)}  # fmt: skip
    if not cuda:
        inf = res["inference_p4"]
        res["headline"].update({"fmct_mfu_vs_matmul_cpu": round(res["fmct"]["mfu_vs_matmul_cpu"], 3),
                                "monai_mfu_vs_matmul_cpu": round(res["monai"]["mfu_vs_matmul_cpu"], 3),
                                "speedup_vs_monai_cpu": round(res["speedup_vs_monai_cpu"], 2),
                                "ssl_mfu_vs_matmul_cpu": round(ssl.get("mfu_vs_matmul_cpu", math.nan), 3),
                                "p4_inference_s_per_scan": round(inf["s_per_scan_wall"], 3),
                                "p4_inference_cpu_s_per_scan": round(inf["s_per_scan_cpu"], 3),
                                "p4_inference_mfu_vs_matmul_cpu": round(inf["mfu_vs_matmul_cpu"], 3)})  # fmt: skip
    if "contention" in res:
        busy = res["contention"]["one_busy_process"]
        res["headline"]["busy_default_over_passive"] = round(busy["default_over_passive_median_ratio"], 2)
    if args.dry:
        print(json.dumps(res, indent=2))
        return 0
    out = HERE / "results" / ("train_step_gpu.json" if gpu else "train_step.json")
    write_text_atomic(out, json.dumps(res, indent=2))
    print(f"wrote {out}")
    return 0


def make_ssl_step(
    backbone, z: dict, batch: int, device, gpu: bool
) -> tuple[Callable[[], None], float, float]:
    """The full SSL step (student + teacher + heads + losses + AdamW + EMA) on random views, its backbone
    FLOPs (each global view: 1 teacher forward + 3 student forward/backward; each local: 3) and its head
    FLOPs (:func:`head_flops`)."""
    arch, opt, b = build_dino(backbone, z, batch, device)

    def ssl_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
            loss, _, _ = arch.compute_loss(b, {"teacher_temp": 0.04}, torch.Generator().manual_seed(0))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        arch.update_teacher(0.996)

    dim, depth, patch, size, local, n_local = (
        z[k] for k in ("dim", "depth", "patch", "size", "local", "n_local")
    )
    tokens, ltok = (size // patch) ** 3 + 1, (local // patch) ** 3 + 1
    flops = batch * (2 * 4 * vit_flops(tokens, dim, depth, 4, patch**3, 3)
                     + 3 * n_local * vit_flops(ltok, dim, depth, 4, patch**3, 3))  # fmt: skip
    return ssl_step, flops, head_flops(arch, 2 * batch, n_local * batch, size)


def head_flops(arch, n_global: int, n_local: int, size: int) -> float:
    """FLOPs of the DINO/iBOT heads in one SSL step: 2 per multiply-add of each weight matrix per row; DINO
    rows = CLS of all student views (x3, forward+backward) and of the teacher's globals (x1); iBOT rows =
    the masked patches (the step's masks, same generator seed) for student (x3) and teacher (x1)."""

    def per_row(head: torch.nn.Module) -> int:
        return sum(2 * p.numel() for p in head.parameters() if p.ndim == 2 and min(p.shape) > 1)

    grid = arch.student.backbone.grid_size((size, size, size))
    masked = int(arch.make_masks(n_global, grid, torch.Generator().manual_seed(0)).sum())
    dino_rows = 3 * (n_global + n_local) + n_global
    return float(
        per_row(arch.student.dino_head) * dino_rows + per_row(arch.student.head_for_patches()) * 4 * masked
    )


def ssl_result(
    times: list[float],
    flops: float,
    batch: int,
    peak: float,
    z: dict,
    bare: list[float] | None,
    bare_flops: float,
    heads: float,
) -> dict:
    """Summary of the SSL step's rounds; ``bare``: the backbone step's times of the same rounds; ``heads``:
    the step's head FLOPs (``model_mfu``: backbone + heads)."""
    t = statistics.median(times)
    res = {"ms_per_sample": 1e3 * t / batch, "samples_per_s": batch / t,
           "backbone_tflops": flops / t / 1e12, "mfu_vs_matmul": flops / t / peak,
           "backbone_flops_per_sample": flops / batch, "head_flops_per_sample": heads / batch,
           "model_mfu_vs_matmul": (flops + heads) / t / peak,
           "n_local": z["n_local"], "local": z["local"], "prototypes": z["k"]}  # fmt: skip
    if bare:  # efficiency relative to the bare backbone step, round by round
        res["mfu_over_bare_backbone"] = statistics.median(
            [(flops / s) / (bare_flops / b) for s, b in zip(times, bare, strict=True)])  # fmt: skip
        res["model_mfu_over_bare_backbone"] = statistics.median(
            [((flops + heads) / s) / (bare_flops / b) for s, b in zip(times, bare, strict=True)])  # fmt: skip
    print(f"SSL step (2 globals + {z['n_local']} locals, teacher+student, K={z['k']}): {1e3 * t / batch:.1f} "
          f"ms/sample, {batch / t:.2f} samples/s, backbone MFU {100 * flops / t / peak:.1f} % of matmul peak"
          + (f" = x{res['mfu_over_bare_backbone']:.2f} the bare backbone's (x{res['model_mfu_over_bare_backbone']:.2f}"
             " counting the heads' FLOPs too)" if bare else ""))  # fmt: skip
    return res


if __name__ == "__main__":
    raise SystemExit(main())
