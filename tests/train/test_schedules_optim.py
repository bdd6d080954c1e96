"""Schedules, parameter groups, config validation, monitors, checkpoint RNG round-trip."""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from fmct.models.vit3d import ViT3D, ViT3DConfig
from fmct.train import monitors
from fmct.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from fmct.train.config import adamw_betas, max_grad_norm, resolve_config
from fmct.train.optim import apply_schedules, build_optimizer, param_groups
from fmct.train.schedules import SSLSchedules, cosine_with_warmup, linear_warmup


def test_cosine_with_warmup_endpoints() -> None:
    assert cosine_with_warmup(0, 100, 1.0, 0.1, warmup=10) == 0.0
    assert math.isclose(cosine_with_warmup(5, 100, 1.0, 0.1, warmup=10), 0.5)
    assert math.isclose(cosine_with_warmup(10, 100, 1.0, 0.1, warmup=10), 1.0)
    assert math.isclose(cosine_with_warmup(55, 100, 1.0, 0.1, warmup=10), 0.55)
    assert math.isclose(cosine_with_warmup(100, 100, 1.0, 0.1, warmup=10), 0.1)
    assert linear_warmup(0, 0.04, 0.07, 30) == 0.04 and linear_warmup(30, 0.04, 0.07, 30) == 0.07


def test_ssl_schedules_values() -> None:
    s = SSLSchedules(total_steps=100, freeze_last_layer_steps=3)
    v0, v99 = s.values(0), s.values(100)
    assert v0["teacher_temp"] == 0.04 and v0["momentum"] == 0.992 and v0["freeze_last_layer"]
    assert math.isclose(v99["momentum"], 1.0) and not s.values(3)["freeze_last_layer"]
    assert math.isclose(v0["wd"], 0.04) and math.isclose(v99["wd"], 0.2)


def test_param_groups_layer_decay_and_no_wd() -> None:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = ViT3D(ViT3DConfig(img_size=16, patch_size=8, embed_dim=12, depth=2, num_heads=2))
            self.head = torch.nn.Linear(12, 4)

    net = Net()
    groups = param_groups(net, "backbone.", 0.5, {"head.weight"})
    by_name = {n: g for g in groups for n in g["names"]}
    assert (
        by_name["backbone.cls_token"]["lr_scale"] == 0.5**3 and by_name["backbone.cls_token"]["wd_mult"] == 0
    )
    assert by_name["backbone.blocks.1.attn.qkv.weight"]["lr_scale"] == 0.5
    assert by_name["backbone.blocks.1.attn.qkv.weight"]["wd_mult"] == 1
    assert by_name["backbone.blocks.0.norm1.weight"]["wd_mult"] == 0
    assert by_name["backbone.blocks.0.attn.qkv.bias"]["wd_mult"] == 0
    assert by_name["head.weight"]["lr_scale"] == 1.0 and by_name["head.weight"]["is_last_layer"]
    opt = build_optimizer(groups)
    apply_schedules(opt, 1e-3, 0.1, freeze_last_layer=True)
    for g in opt.param_groups:
        assert g["lr"] == (0.0 if g["is_last_layer"] else 1e-3 * g["lr_scale"])
        assert g["weight_decay"] == 0.1 * g["wd_mult"]


def test_config_unknown_keys_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown config key"):
        resolve_config(None, ["optim.lrr=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_steps: 3\ndata:\n  globl_size: 32\n")
    with pytest.raises(ValueError, match="data.globl_size"):
        resolve_config(bad)
    cfg = resolve_config(None, ["max_steps=30", "checkpoint_every=10"])
    assert cfg["max_steps"] == 30 and cfg["checkpoint_every"] == 10


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("optim.lr=-1", r"'optim.lr' must be > 0, got -1"),
        ("optim.lr=0", r"'optim.lr' must be > 0"),
        ("max_steps=0", r"'max_steps' must be a whole number >= 1"),
        ("batch_size=2.5", r"'batch_size' must be a whole number"),
        ("optim.layer_decay=1.5", r"<= 1, got 1.5"),
        ("optim.momentum_teacher=-0.1", r"'optim.momentum_teacher' must be >= 0 and <= 1"),
        ("optim.teacher_temp=0", r"'optim.teacher_temp' must be > 0"),
        ("clip_grad=-1", r"'clip_grad' must be >= 0"),
        ("dino.mask_probability=1.5", r"'dino.mask_probability' must be >= 0 and <= 1"),
        ("dino.mask_ratio=[0.5,0.1]", r"dino.mask_ratio must be \[lo, hi\] with 0 <= lo <= hi <= 1"),
        ("mae.mask_ratio=0", r"'mae.mask_ratio' must be > 0 and <= 1"),
        ("optim.betas=[0.9,1.5]", r"'optim.betas' must be \[beta1, beta2\] in \[0, 1\)"),
        ("simclr.temperature=0", r"'simclr.temperature' must be > 0"),
        ("method=simclr batch_size=1", r"method=simclr .* batch_size must be >= 2"),
        ("model.type=resnet", r"'model.type' must be one of \['vit3d', 'segresenc'\]"),
        ("model.type=segresenc", r"method=dino masks ViT tokens: it needs model.type=vit3d"),
        ("segresenc.blocks_down=[1,0]", r"'segresenc.blocks_down' must be a list of whole numbers >= 1"),
        ("segresenc.norm=layer", r"'segresenc.norm' must be group, batch or instance"),
        ("method=byol", r"method must be one of \['dino', 'mae', 'simclr'\]"),
    ],
)
def test_config_values_out_of_range_error(override, match) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_config(None, override.split())


def test_config_in_range_values_and_shipped_configs_pass() -> None:
    cfg = resolve_config(
        None, ["optim.lr=1e-4", "clip_grad=null", "optim.layer_decay=1", "checkpoint_every=0"]
    )
    assert cfg["optim"]["lr"] == pytest.approx(1e-4) and cfg["clip_grad"] is None
    assert max_grad_norm(cfg) == float("inf")
    for path in sorted((Path(__file__).parents[2] / "configs").glob("*.yaml")):
        resolve_config(path)


def test_monitors_known_values() -> None:
    uni = torch.full((4, 8), 1 / 8)
    e = monitors.teacher_entropy(uni)
    assert math.isclose(e["teacher_entropy"], math.log(8), rel_tol=1e-5)
    one = torch.zeros(4, 8)
    one[:, 2] = 1
    assert monitors.teacher_entropy(one)["teacher_entropy"] < 1e-6
    torch.manual_seed(0)
    assert monitors.effective_rank(torch.randn(64, 1) @ torch.randn(1, 16)) < 1.01
    assert monitors.effective_rank(torch.randn(256, 8)) > 6.5


def test_knn_auroc_separable_and_random() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    feats = np.stack([y * 2.0 - 1 + 0.1 * rng.normal(size=60), rng.normal(size=60) * 0.1], 1)
    labels = np.stack([y, np.zeros(60)], 1)  # second finding has one class only -> skipped
    groups = [f"p{i // 2}" for i in range(60)]
    res = monitors.knn_auroc(feats, labels, groups, ["ich", "mass"])
    assert res["ich"] > 0.95 and "mass" not in res and res["macro"] == res["ich"]
    noise = monitors.knn_auroc(rng.normal(size=(60, 4)), labels, groups, ["ich", "mass"])
    assert 0.2 < noise["ich"] < 0.8


def test_knn_monitor_is_the_protocols_cross_fitted_knn() -> None:
    """One kNN: the monitor's AUROCs are those of the evaluation protocol's cross-fitted kNN scores."""
    import pandas as pd

    from fmct.evaluate.crossfit import cross_fitted_scores
    from fmct.evaluate.embed import Embeddings
    from fmct.evaluate.metrics import auroc_by_finding

    rng = np.random.default_rng(1)
    n, names = 80, ["ich", "mass", "fracture"]
    labels = rng.integers(0, 2, size=(n, 3)).astype(float)
    labels[rng.random((n, 3)) < 0.1] = np.nan  # unlabelled findings
    feats = (rng.normal(size=(n, 6)) + np.c_[np.nan_to_num(labels), np.zeros((n, 3))]).astype(np.float32)
    groups = [f"p{i // 2}" for i in range(n)]
    table = pd.DataFrame(labels, columns=names)
    table.insert(0, "scan_id", [f"s{i}" for i in range(n)])
    table.insert(1, "patient_id", groups)
    scores = cross_fitted_scores(Embeddings(list(table["scan_id"]), feats, feats), table, "cls", names, "knn")
    expected = auroc_by_finding(labels, scores, names)
    got = monitors.knn_auroc(feats, labels, groups, names)
    assert set(got) == {*names, "macro"} and got["macro"] > 0.6
    assert got == pytest.approx(expected)
    assert monitors.knn_auroc(feats, labels, ["p0"] * n, names) == {}  # one patient: nothing to cross-fit


def test_rng_state_roundtrip_and_atomic_checkpoint(tmp_path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1))
    save_checkpoint(tmp_path, {"step": 1, "rng": state, "w": torch.ones(2)})
    save_checkpoint(tmp_path, {"step": 2, "rng": state, "w": torch.ones(2)})
    assert (tmp_path / "checkpoint-prev.pt").exists()
    ck = load_checkpoint(tmp_path)
    assert ck["step"] == 2
    set_rng_state(ck["rng"])
    b = (random.random(), np.random.rand(), torch.rand(1))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    # a corrupt newest checkpoint falls back to the previous one
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    assert load_checkpoint(tmp_path)["step"] == 1
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize(
    "name", ["demo-cpu", "vit-b-96", "dino-vit-b-96", "mae-demo-cpu", "mae-p4-cpu", "simclr-demo-cpu"]
)
def test_shipped_configs_resolve(name: str) -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / f"{name}.yaml"
    cfg = resolve_config(path, ["max_steps=30", "checkpoint_every=10"])
    assert cfg["max_steps"] == 30 and cfg["method"] in ("dino", "mae", "simclr")


def test_adamw_betas_follow_the_method_reference_unless_set() -> None:
    """dinov2 trains with AdamW betas (0.9, 0.999), MAE with (0.9, 0.95); an explicit optim.betas wins."""
    assert adamw_betas(resolve_config(None, [])) == (0.9, 0.999)
    assert adamw_betas(resolve_config(None, ["method=mae"])) == (0.9, 0.95)
    assert adamw_betas(resolve_config(None, ["method=mae", "optim.betas=[0.8,0.99]"])) == (0.8, 0.99)
    assert adamw_betas(resolve_config(None, ["method=simclr"])) == (0.9, 0.999)


def _adamw_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Module()
    net.backbone = ViT3D(ViT3DConfig(img_size=16, patch_size=8, embed_dim=12, depth=2, num_heads=2))
    net.head = torch.nn.Linear(12, 4)
    return net


def _assert_same_params(a: torch.nn.Module, b: torch.nn.Module) -> None:
    """Parameters equal to float rounding, except the key part of the qkv biases: in exact arithmetic its
    gradient is zero (softmax ignores a per-query shift), so Adam turns rounding noise there into +-lr steps."""
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        if name.endswith("attn.qkv.bias"):
            d = pa.shape[0] // 3
            pa, pb = torch.cat([pa[:d], pa[2 * d :]]), torch.cat([pb[:d], pb[2 * d :]])
        torch.testing.assert_close(pa, pb, atol=1e-6, rtol=1e-5, msg=lambda m, n=name: f"{n}: {m}")


def _train(net: torch.nn.Module, opt: torch.optim.Optimizer, steps: range) -> None:
    """A few steps of a fixed regression with changing lr/wd (as the schedules do)."""
    x = torch.rand(2, 3, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    for s in steps:
        apply_schedules(opt, 1e-2 / (1 + s), 0.04 + 0.01 * s, freeze_last_layer=s < 1)
        opt.zero_grad(set_to_none=True)
        net.head(net.backbone(x)).sin().sum().backward()
        opt.step()


def test_build_optimizer_fused_matches_reference_adamw_and_loads_its_state() -> None:
    """The fused AdamW gives the per-parameter loop's parameters (to float rounding) and resumes from a
    state dict the loop implementation saved (checkpoints of earlier versions)."""
    nets = [_adamw_net(), _adamw_net()]
    fast = build_optimizer(param_groups(nets[0], "backbone.", 0.9, {"head.weight"}))
    groups = param_groups(nets[1], "backbone.", 0.9, {"head.weight"})
    ref = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups], lr=0.0,
                            weight_decay=0.0, foreach=False)  # fmt: skip
    assert fast.defaults["fused"] is True and not ref.defaults["fused"]
    _train(nets[0], fast, range(4))
    _train(nets[1], ref, range(4))
    _assert_same_params(nets[0], nets[1])
    # resume: a fused optimiser loads the loop optimiser's state and continues like it
    resumed = _adamw_net()
    resumed.load_state_dict(nets[1].state_dict())
    opt = build_optimizer(param_groups(resumed, "backbone.", 0.9, {"head.weight"}))
    buf = io.BytesIO()  # through bytes, as a checkpoint: the loaded state shares no tensor with ref's
    torch.save(ref.state_dict(), buf)
    buf.seek(0)
    opt.load_state_dict(torch.load(buf, weights_only=True))
    _train(resumed, opt, range(4, 6))
    _train(nets[1], ref, range(4, 6))
    _assert_same_params(resumed, nets[1])
