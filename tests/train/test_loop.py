"""Pretraining loop: exact resume, NaN guard, CLI, MAE, bf16 autocast, export, 2-process DDP and FSDP2 (gloo),
with snapshots and the best model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from fmct.cli import app
from fmct.ssl.meta_arch import DINOMetaArch
from fmct.train.config import resolve_config
from fmct.train.loop import NonFiniteLoss, train


def _losses(run: Path) -> list[float]:
    return [json.loads(ln)["loss"] for ln in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_is_exact(tiny_store, tiny_overrides, tmp_path) -> None:
    full = resolve_config(None, tiny_overrides + ["max_steps=8", "checkpoint_every=4", "export=false"])
    train(full, tiny_store, tmp_path / "a", progress=False)
    half = resolve_config(None, tiny_overrides + ["max_steps=4", "schedule_steps=8", "export=false"])
    train(half, tiny_store, tmp_path / "b", progress=False)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["step"] == 4
    resumed = dict(half, max_steps=8)
    train(resumed, tiny_store, tmp_path / "b", resume=True, progress=False)
    la, lb = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert len(la) == len(lb) == 8
    assert la == lb
    ta = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    tb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    rec = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("dino", "ibot", "koleo", "lr", "wd", "teacher_temp", "momentum", "samples_per_s",
                "teacher_entropy", "effective_rank"):  # fmt: skip
        assert key in rec
    assert (tmp_path / "a" / "tb").is_dir() and (tmp_path / "a" / "config.yaml").exists()


def test_nan_guard_names_step_and_scans(tiny_store, tiny_overrides, tmp_path, monkeypatch) -> None:
    orig = DINOMetaArch.compute_loss
    calls = {"n": 0}

    def poisoned(self, batch, values, gen):
        loss, parts, aux = orig(self, batch, values, gen)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 3 else loss), parts, aux

    monkeypatch.setattr(DINOMetaArch, "compute_loss", poisoned)
    cfg = resolve_config(None, tiny_overrides + ["max_steps=5", "checkpoint_every=2", "export=false"])
    with pytest.raises(NonFiniteLoss, match=r"step 2.*scan\d{3}"):
        train(cfg, tiny_store, tmp_path / "r", progress=False)
    assert torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)["step"] == 2


def _labels(tmp_path: Path) -> Path:
    """labels.csv for the six ok scans of the tiny store (three patients)."""
    labels = tmp_path / "labels.csv"
    ids = [f"scan{i:03d}" for i in range(6)]
    pd.DataFrame(
        {
            "scan_id": ids,
            "patient_id": [f"pat{i // 2}" for i in range(6)],
            "ich": [0, 1, 0, 1, 0, 1],
            "mass": 0,
        }
    ).to_csv(labels, index=False)
    return labels


def test_cli_pretrain_resume_export_and_labels(tiny_store, tiny_overrides, tmp_path) -> None:
    labels = _labels(tmp_path)
    run = tmp_path / "run"
    r = CliRunner().invoke(
        app,
        ["pretrain", "--data", str(tiny_store), "--out", str(run), "--no-progress", *tiny_overrides,
         "max_steps=3", "checkpoint_every=2", f"labels={labels}", "monitor_every=2"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert "knn_auroc_macro" in recs[0] and 0.0 <= recs[0]["knn_auroc_macro"] <= 1.0
    assert 0.0 <= recs[0]["knn_auroc_brain_max"] <= 1.0  # the intracranial readout, monitored too
    cfg = json.loads((run / "model" / "config.json").read_text())
    assert cfg["kind"] == "backbone" and cfg["preprocessing"]["input_size"] == 32
    r = CliRunner().invoke(app, ["pretrain", "--resume", str(run), "--no-progress", "max_steps=5"])
    assert r.exit_code == 0, r.output
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 5 and "loss" in r.output
    r = CliRunner().invoke(app, ["pretrain", "--resume", str(run), "--no-progress"])  # already at max_steps
    assert r.exit_code == 0 and "nothing to train" in r.output and "nan" not in r.output, r.output
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 5
    r = CliRunner().invoke(app, ["pretrain", "--resume", str(run), "--export-only"])
    assert r.exit_code == 0, r.output
    from fmct.models.hub import load_model

    model = load_model(run / "model")
    assert model.input_size == 32
    r = CliRunner().invoke(
        app, ["pretrain", "--data", str(tiny_store), "--out", str(tmp_path / "x"), "nope=1"]
    )
    assert r.exit_code == 2 and "unknown config key" in r.output
    r = CliRunner().invoke(app, ["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "y")])
    assert r.exit_code == 2 and "not a store" in r.output


def test_mae_run(tiny_store, tiny_overrides, tmp_path) -> None:
    labels = _labels(tmp_path)
    cfg = resolve_config(
        None, tiny_overrides + ["method=mae", "max_steps=3", "checkpoint_every=0", f"labels={labels}"]
    )
    res = train(cfg, tiny_store, tmp_path / "m", progress=False)
    assert res["step"] == 3 and "mae" in res["last"]
    assert 0.0 <= res["last"]["knn_auroc_brain_max"] <= 1.0  # the kNN monitor runs for MAE too
    assert (tmp_path / "m" / "model" / "model.safetensors").exists()


def test_cpu_training_keeps_freed_blocks_in_the_heap(
    tiny_store, tiny_overrides, tmp_path, monkeypatch
) -> None:
    """On the CPU the loop asks glibc to keep each step's freed activations (fmct.cpu_heap), as embedding does."""
    calls: list[int] = []
    monkeypatch.setattr("fmct.train.loop.reuse_freed_memory", lambda: calls.append(1) or True)
    cfg = resolve_config(None, tiny_overrides + ["method=mae", "max_steps=1", "checkpoint_every=0"])
    train(cfg, tiny_store, tmp_path / "h", progress=False)
    assert calls == [1]


@pytest.mark.parametrize("method", ["dino", "mae"])
def test_bf16_autocast_step(tiny_store, tiny_overrides, tmp_path, method) -> None:
    """The GPU precision path (bf16 autocast, as ``precision: auto`` picks on CUDA) run on the CPU: with the
    paper config's Sinkhorn-Knopp targets and KoLeo for DINO, the losses stay finite and the exported weights
    are fp32."""
    from safetensors.torch import load_file

    extra = ["dino.centering=sinkhorn", "dino.koleo_weight=0.1"] if method == "dino" else []
    runs = {}
    for precision in ("bf16", "fp32"):
        args = [f"method={method}", f"precision={precision}", "max_steps=2", "checkpoint_every=0", *extra]
        res = train(
            resolve_config(None, tiny_overrides + args), tiny_store, tmp_path / precision, progress=False
        )
        assert res["step"] == 2
        runs[precision] = _losses(tmp_path / precision)
    assert len(runs["bf16"]) == 2 and all(torch.isfinite(torch.tensor(runs["bf16"])))
    assert runs["bf16"] != runs["fp32"]  # autocast did run the matmuls in bf16
    weights = load_file(tmp_path / "bf16" / "model" / "model.safetensors")
    assert weights and all(w.dtype == torch.float32 for w in weights.values())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(store: Path, run: Path, overrides: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "fmct.cli", "pretrain", "--data", str(store),
           "--out", str(run), "--no-progress", *overrides, "device=cpu"]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_ddp_and_fsdp_two_processes_gloo(tiny_store, tiny_overrides, tmp_path) -> None:
    """DDP: both ranks end with identical teachers. FSDP2: the same training as DDP (same seed, same weights
    at the end), and the kNN monitor works although the teacher is sharded (it used to crash on rank 0)."""
    labels = _labels(tmp_path)
    common = [*tiny_overrides, "max_steps=3", "checkpoint_every=0", f"labels={labels}", "snapshot_every=3",
              "best_by=knn_auroc_brain_max"]  # fmt: skip
    runs = {}
    for strategy in ("ddp", "fsdp"):
        runs[strategy] = run = tmp_path / strategy
        p = _torchrun(tiny_store, run, [*common, f"distributed.strategy={strategy}"])
        assert p.returncode == 0, p.stderr[-3000:]
        assert p.stdout.count("done: step 3") == 1, p.stdout  # rank 0 reports, once
    checks = json.loads((runs["ddp"] / "rank_checks.json").read_text())
    assert len(checks) == 2 and checks[0] == checks[1]
    from safetensors.torch import load_file

    ddp, fsdp = (load_file(runs[s] / "model" / "model.safetensors") for s in ("ddp", "fsdp"))
    assert ddp.keys() == fsdp.keys()
    assert max(float((ddp[k] - fsdp[k]).abs().max()) for k in ddp) < 1e-5
    for s in runs:  # snapshots and the best model are gathered from the shards under FSDP too
        snap = load_file(runs[s] / "snapshots" / "step-000003" / "model.safetensors")
        final = ddp if s == "ddp" else fsdp
        assert all(torch.equal(snap[k], final[k]) for k in final)
        assert (runs[s] / "model-best" / "model.safetensors").exists()
    recs = {s: [json.loads(ln) for ln in (runs[s] / "metrics.jsonl").read_text().splitlines()] for s in runs}
    assert len(recs["ddp"]) == len(recs["fsdp"]) == 3
    for a, b in zip(recs["ddp"], recs["fsdp"], strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-4
        for key in ("knn_auroc_macro", "knn_auroc_brain_max"):
            assert key in a and key in b  # monitored after update 1, every 2nd and the last: all 3
            assert abs(a[key] - b[key]) < 1e-6


def test_clip_grad_null_trains_without_clipping(tiny_store, tiny_overrides, tmp_path) -> None:
    """clip_grad: null passes validation and must train (it crashed on float(None) at the first step); the
    gradient norm is still logged."""
    cfg = resolve_config(
        None, tiny_overrides + ["clip_grad=null", "max_steps=2", "checkpoint_every=0", "export=false"]
    )
    res = train(cfg, tiny_store, tmp_path / "r", progress=False)
    assert res["step"] == 2 and res["last"]["grad_norm"] > 0


def test_mae_soft_tissue_loss_trains(tiny_store, tiny_overrides, tmp_path) -> None:
    """mae.loss_patches=soft_tissue reads the windows the loop hands to the batch and trains."""
    args = ["method=mae", "mae.loss_patches=soft_tissue", "max_steps=2", "checkpoint_every=0", "export=false"]
    res = train(resolve_config(None, tiny_overrides + args), tiny_store, tmp_path / "s", progress=False)
    assert res["step"] == 2 and res["last"]["mae"] >= 0.0
    with pytest.raises(ValueError, match="mae.loss_patches"):
        resolve_config(None, ["mae.loss_patches=skull"])


def test_pretrain_in_a_log_prints_progress_lines(tiny_store, tiny_overrides, tmp_path) -> None:
    """Output that is not a terminal (a SLURM log) gets a plain progress line every log_every steps."""
    r = CliRunner().invoke(
        app,
        ["pretrain", "--data", str(tiny_store), "--out", str(tmp_path / "r"), *tiny_overrides,
         "max_steps=3", "checkpoint_every=0", "log_every=1"],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    for step in (1, 2, 3):
        assert f"pretrain {step}/3 (" in r.output, r.output


#: SimCLR on a SegResEncoder small enough for the tiny store; two identical crops per scan (the tiny store's
#: blob heads differ less from each other than two crops of one head do, so only identical views can be told
#: apart in a few steps), noise kept so the two views are not the same tensor.
SIMCLR_TINY = [
    "data.global_size=32", "data.cache_size=40", "data.num_workers=0", "batch_size=6", "optim.warmup_steps=0",
    "segresenc.init_filters=4", "segresenc.blocks_down=[1,1,1]", "simclr.proj_hidden_dim=32",
    "simclr.proj_dim=16", "data.global_scale=[1.0,1.0]", "data.flip_p=0", "data.rotate_deg=0", "data.blur_p=0",
    "data.gamma_p=0", "data.window_level_jitter=0", "data.window_width_jitter=0", "data.noise_p=1",
    "data.noise_hu=5", "monitor_every=3",
]  # fmt: skip


def test_simclr_cnn_learns_resumes_exactly_and_exports_a_backbone_that_embeds(tiny_store, tmp_path) -> None:
    """configs/simclr-demo-cpu.yaml (SegResEncoder, NT-Xent) through the same loop as DINO and MAE: the loss
    falls, a run stopped at step 3 and resumed matches the uninterrupted one, and RUN/model is a backbone
    directory that `fmct embed` reads (CLS = the pooled feature map, brain_max over its tokens)."""
    from fmct.evaluate.embed import embed_store, load_embeddings
    from fmct.models.hub import load_model

    config = Path(__file__).resolve().parents[2] / "configs" / "simclr-demo-cpu.yaml"
    full = resolve_config(config, SIMCLR_TINY + ["max_steps=6", "checkpoint_every=0"])
    train(full, tiny_store, tmp_path / "a", progress=False)
    half = resolve_config(config, SIMCLR_TINY + ["max_steps=3", "schedule_steps=6", "export=false"])
    train(half, tiny_store, tmp_path / "b", progress=False)
    train(dict(half, max_steps=6), tiny_store, tmp_path / "b", resume=True, progress=False)
    la, lb = _losses(tmp_path / "a"), _losses(tmp_path / "b")
    assert la == lb and len(la) == 6
    assert la[-1] < la[0] / 4, la
    rec = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["contrastive_top1"] == 1.0 and "effective_rank" in rec and "nt_xent" in rec

    cfg = json.loads((tmp_path / "a" / "model" / "config.json").read_text())
    assert cfg["name"] == "fmct-simclr" and cfg["training"]["method"] == "simclr"
    assert cfg["architecture"]["type"] == "monai" and cfg["architecture"]["embed_dim"] == 16
    model = load_model(tmp_path / "a" / "model")
    out = embed_store(tmp_path / "a" / "model", tiny_store, tmp_path / "emb.parquet", progress=False)
    emb = load_embeddings(out)
    assert emb.cls.shape == (6, 16) and emb.patch.shape == (6, 8**3, 16)
    assert np.isfinite(emb.feature("brain_max")).all() and model.input_size == 32
    np.testing.assert_allclose(emb.cls, emb.mean_patch, rtol=1e-4, atol=1e-5)  # CLS is the pooled map
