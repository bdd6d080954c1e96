"""Student/teacher meta-architecture (DINO + iBOT + KoLeo) and MAE on a tiny ViT."""

from __future__ import annotations

import pytest
import torch

from fmct.ssl.mae import MAEMetaArch, patchify
from fmct.ssl.meta_arch import DINOMetaArch, vit_from_model_config

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8}
DINO = {"out_dim": 64, "ibot_out_dim": 48, "head_hidden_dim": 32, "head_bottleneck_dim": 16}


def _batch(b: int = 2) -> dict:
    torch.manual_seed(0)
    return {
        "global": torch.rand(2 * b, 3, 32, 32, 32),
        "local": torch.rand(2 * b, 3, 16, 16, 16),
        "n_global": 2,
    }


def test_dino_step_updates_student_not_teacher_grad() -> None:
    arch = DINOMetaArch(vit_from_model_config(TINY, 32), DINO)
    gen = torch.Generator().manual_seed(0)
    loss, parts, aux = arch.compute_loss(_batch(), {"teacher_temp": 0.04}, gen)
    assert set(parts) == {"dino", "ibot", "koleo"} and torch.isfinite(loss)
    assert aux["teacher_probs"].shape == (4, 64) and aux["masks"].shape == (4, 64)
    assert int(aux["masks"].any(dim=1).sum()) == 2  # half the global views masked
    loss.backward()
    assert all(p.grad is None for p in arch.teacher.parameters())
    assert arch.student.backbone.blocks[0].attn.qkv.weight.grad is not None
    assert arch.student.ibot_head.last_layer.weight.grad.abs().sum() > 0
    # centres moved away from zero after the step
    assert float(arch.dino_loss.center.abs().sum()) > 0 and float(arch.ibot_loss.center.abs().sum()) > 0
    assert "student.dino_head.last_layer.weight" not in arch.last_layer_names()
    assert "dino_head.last_layer.weight" in arch.last_layer_names()


def test_ema_update() -> None:
    arch = DINOMetaArch(vit_from_model_config(TINY, 32), {**DINO, "shared_ibot_head": True})
    assert arch.student.ibot_head is None
    with torch.no_grad():
        for p in arch.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in arch.teacher.parameters()]
    arch.update_teacher(0.75)
    for b, t, s in zip(before, arch.teacher.parameters(), arch.student.parameters(), strict=True):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * s)
    arch.update_teacher(1.0)  # momentum 1 freezes the teacher


def test_sinkhorn_mode_runs() -> None:
    arch = DINOMetaArch(vit_from_model_config(TINY, 32), {**DINO, "centering": "sinkhorn"})
    loss, _, aux = arch.compute_loss(_batch(), {"teacher_temp": 0.07}, torch.Generator().manual_seed(0))
    torch.testing.assert_close(aux["teacher_probs"].sum(-1), torch.ones(4))
    assert float(arch.dino_loss.center.abs().sum()) == 0  # no EMA centre with Sinkhorn-Knopp


def test_batch_norm_head_gives_non_uniform_teacher_targets_on_alike_inputs() -> None:
    """Near-identical scans (as head CTs are at initialisation): the plain head's Sinkhorn targets are
    ~uniform, the batch-normalised head's are not; the config key reaches both heads."""
    torch.manual_seed(0)
    base = torch.rand(1, 3, 32, 32, 32)
    batch = {"global": base + 1e-3 * torch.rand(8, 3, 32, 32, 32), "local": torch.zeros(0), "n_global": 2}
    entropy = {}
    for norm in ("none", "batch"):
        torch.manual_seed(1)
        cfg = {**DINO, "centering": "sinkhorn", "head_norm": norm}
        arch = DINOMetaArch(vit_from_model_config(TINY, 32), cfg)
        _, _, aux = arch.compute_loss(batch, {"teacher_temp": 0.04}, torch.Generator().manual_seed(0))
        p = aux["teacher_probs"]
        entropy[norm] = float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())
    log_k = float(torch.log(torch.tensor(64.0)))
    assert entropy["none"] > log_k - 0.01
    assert entropy["batch"] < log_k - 0.5
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in arch.student.ibot_head.modules())


def test_patchify_layout_matches_patch_embed_order() -> None:
    x = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4, 4)
    p = patchify(x, (2, 2, 2))
    assert p.shape == (1, 8, 16)
    # patch 1 is grid (0, 0, 1): voxels z in 2..3 of the first x/y block
    assert float(p[0, 1, 0]) == float(x[0, 0, 0, 0, 2])


def test_mae_loss_and_grads() -> None:
    arch = MAEMetaArch(
        vit_from_model_config(TINY, 32), {"decoder_dim": 24, "decoder_depth": 1, "decoder_heads": 2}
    )
    x = torch.rand(2, 3, 32, 32, 32)
    loss, parts, aux = arch.compute_loss({"global": x}, {}, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and "mae" in parts and aux["teacher_cls"].shape == (2, 32)
    loss.backward()
    assert arch.student.decoder_pred.weight.grad is not None
    assert arch.student.backbone.patch_embed.proj.weight.grad.abs().sum() > 0
    assert arch.export_backbone() is arch.student.backbone


def test_state_dict_holds_student_once_and_teacher_stays_eval() -> None:
    arch = DINOMetaArch(vit_from_model_config({**TINY, "drop_path_rate": 0.2}, 32), DINO)
    wrapper = torch.nn.Sequential(arch.student)
    arch.set_student_forward(wrapper)
    keys = list(arch.state_dict())
    assert not any(k.startswith("student_forward") for k in keys)
    assert any(k.startswith("student.") for k in keys) and any(k.startswith("teacher.") for k in keys)
    arch.train()
    assert arch.student.training and not arch.teacher.training


def test_batch_norm_heads_train_with_no_or_one_masked_patch() -> None:
    """head_norm=batch with mask_probability 0 (no masked patch) or one masked patch in the whole batch:
    a finite step whose iBOT loss is 0 / finite, and the iBOT head still in the graph (DDP needs it)."""
    for prob, ratio, n_masked in ((0.0, [0.1, 0.5], 0), (0.25, [0.02, 0.02], 1)):
        torch.manual_seed(0)
        cfg = {**DINO, "head_norm": "batch", "mask_probability": prob, "mask_ratio": ratio}
        arch = DINOMetaArch(vit_from_model_config(TINY, 32), cfg)
        loss, parts, aux = arch.compute_loss(
            _batch(), {"teacher_temp": 0.04}, torch.Generator().manual_seed(0)
        )
        assert int(aux["masks"].sum()) == n_masked
        assert torch.isfinite(loss) and torch.isfinite(parts["ibot"])
        if n_masked == 0:
            assert float(parts["ibot"]) == 0.0
        loss.backward()
        assert arch.student.ibot_head.last_layer.weight.grad is not None


def test_mae_decoder_has_mae_initialisation() -> None:
    """Decoder Linear layers Xavier-uniform (|w| <= sqrt(6 / (fan_in + fan_out)), std = bound / sqrt(3)) with
    zero biases, as MAE's reference code; PyTorch's default would give std = 1 / sqrt(3 fan_in)."""
    torch.manual_seed(0)
    arch = MAEMetaArch(
        vit_from_model_config(TINY, 32), {"decoder_dim": 64, "decoder_depth": 2, "decoder_heads": 2}
    )
    m = arch.student
    linears = [m.decoder_embed, m.decoder_pred] + [
        x for x in m.decoder_blocks.modules() if isinstance(x, torch.nn.Linear)
    ]
    for lin in linears:
        fan_out, fan_in = lin.weight.shape
        bound = (6.0 / (fan_in + fan_out)) ** 0.5
        assert float(lin.weight.abs().max()) <= bound + 1e-6
        assert abs(float(lin.weight.std()) - bound / 3**0.5) < 0.1 * bound / 3**0.5
        assert lin.bias is None or float(lin.bias.abs().max()) == 0.0


def test_soft_tissue_patches_pick_the_inside_of_the_skull() -> None:
    """A 32³ head of 8³ patches: air outside, a 4-voxel skull shell, 30 HU brain inside. Windowed as the
    store does; the patches wholly inside the brain are soft tissue, the ones with skull or air are not."""
    from fmct.preprocess.windows import DEFAULT_WINDOWS, apply_windows
    from fmct.ssl.mae import soft_tissue_patches

    hu = torch.full((32, 32, 32), -1000.0)
    hu[4:28, 4:28, 4:28] = 1000.0
    hu[8:24, 8:24, 8:24] = 30.0  # the 2x2x2 central patches (voxels 8..23) are all brain
    x = apply_windows(hu, DEFAULT_WINDOWS)[None]
    w = soft_tissue_patches(x, DEFAULT_WINDOWS, (8, 8, 8)).reshape(1, 4, 4, 4)
    expected = torch.zeros(4, 4, 4)
    expected[1:3, 1:3, 1:3] = 1.0
    assert torch.equal(w[0], expected)


def test_mae_loss_on_soft_tissue_patches_only() -> None:
    """mae.loss_patches=soft_tissue: the loss is the mean over masked patches that are soft tissue, so an
    error confined to air patches does not count."""
    arch = MAEMetaArch(
        vit_from_model_config(TINY, 32),
        {
            "decoder_dim": 24,
            "decoder_depth": 1,
            "decoder_heads": 2,
            "loss_patches": "soft_tissue",
            "norm_pix_loss": False,
        },
    )
    m = arch.student
    x = torch.rand(2, 3, 32, 32, 32)
    weights = torch.zeros(2, 64)
    weights[:, 21] = 1.0  # one patch per scan counts
    out = m(x, torch.Generator().manual_seed(0), weights)
    target = patchify(x, (8, 8, 8))
    per_patch = ((out["pred"] - target) ** 2).mean(-1)
    use = out["mask"].float() * weights
    assert float(out["loss"]) == pytest.approx(
        float((per_patch * use).sum() / use.sum().clamp_min(1)), rel=1e-5
    )
    with pytest.raises(ValueError, match="windows"):
        arch.compute_loss({"global": x}, {}, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="loss_patches"):
        MAEMetaArch(vit_from_model_config(TINY, 32), {"loss_patches": "brain"})
