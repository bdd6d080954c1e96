"""Fine-tuning: full / LoRA / linear / scratch ResNet on a tiny store; saved dirs reload identically."""

import numpy as np
import pytest
import torch
from evalkit import FINDINGS3, MemoryStore, make_labels, tiny_backbone

from fmct.models.hub import load_model
from fmct.train.finetune import FinetuneConfig, build_model, finetune, predict_scans


@pytest.fixture(scope="module")
def setup():  # type: ignore[no-untyped-def]
    df = make_labels(40)
    st = MemoryStore(df)
    y = df[FINDINGS3].to_numpy(dtype=float)
    ids = list(df["scan_id"])
    return st, ids[:24], y[:24], ids[24:32], y[24:32], ids[32:]


@pytest.mark.parametrize("mode", ["full", "lora", "linear"])
def test_finetune_modes_save_and_reload(setup, tmp_path, mode) -> None:  # type: ignore[no-untyped-def]
    st, tr, ytr, va, yva, te = setup
    torch.manual_seed(0)
    bb = tiny_backbone()
    before = {k: v.clone() for k, v in bb.backbone.state_dict().items()}
    model = build_model(bb, FINDINGS3)
    model, info = finetune(
        model,
        st,
        tr,
        ytr,
        va,
        yva,
        FINDINGS3,
        FinetuneConfig(mode=mode, epochs=2, lr=1e-3, batch_size=8),
        out_dir=tmp_path / "clf",
    )
    assert len(info["history"]) >= 1 and 0 <= info["best_epoch"] < 2
    p = predict_scans(model, st, te)
    assert p.shape == (len(te), 3) and np.all((p >= 0) & (p <= 1))
    reloaded = load_model(tmp_path / "clf")
    assert reloaded.kind == "classifier" and reloaded.labels == FINDINGS3
    np.testing.assert_allclose(predict_scans(reloaded, st, te), p, atol=1e-5)
    assert reloaded.training_info["config"]["mode"] == mode
    after = model.backbone.state_dict()
    assert not any("lora" in k for k in after)  # LoRA merged away
    changed = any(not torch.equal(before[k], after[k]) for k in before)
    assert changed == (mode != "linear")
    assert not (tmp_path / "clf" / "checkpoint").exists()


def test_scratch_resnet_and_masked_single_class(setup) -> None:  # type: ignore[no-untyped-def]
    st, tr, ytr, va, yva, te = setup
    ytr = ytr.copy()
    ytr[:, 2] = 0  # one class only -> masked, reported
    model = build_model(None, FINDINGS3, arch="resnet3d", input_size=16)
    assert model.architecture["type"] == "resnet3d"
    model, info = finetune(model, st, tr, ytr, va, yva, FINDINGS3, FinetuneConfig(epochs=1, batch_size=8))
    assert info["na_findings"] == ["fracture"]
    assert predict_scans(model, st, te[:3]).shape == (3, 3)


def test_scratch_reinitialises_same_architecture() -> None:
    bb = tiny_backbone()
    fresh = build_model(bb, FINDINGS3, scratch=True)
    assert fresh.architecture == bb.architecture
    a = bb.backbone.state_dict()["blocks.0.attn.qkv.weight"]
    assert not torch.equal(a, fresh.backbone.state_dict()["blocks.0.attn.qkv.weight"])


def test_scratch_init_is_the_same_in_every_process() -> None:
    """torch seeds each process differently, so an unseeded from-scratch baseline (and any fresh head) drew
    other weights in every run of the same command: build_model seeds its init (default seed 0)."""
    import subprocess
    import sys

    code = (
        "import hashlib, sys; from fmct.train.finetune import build_model; "
        "m = build_model(None, ['ich'], scratch=True, arch='resnet3d', input_size=16, seed=int(sys.argv[1])); "
        "print(hashlib.sha256(b''.join(p.detach().numpy().tobytes() for p in m.parameters())).hexdigest())"
    )
    runs = [subprocess.run([sys.executable, "-c", code, s], capture_output=True, text=True, check=True).stdout
            for s in ("0", "0", "1")]  # fmt: skip
    assert runs[0] == runs[1] and runs[0] != runs[2]
    state = torch.random.get_rng_state()
    build_model(None, ["ich"], scratch=True, arch="resnet3d", input_size=16)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left as it was


def test_lora_refuses_resnet(setup) -> None:  # type: ignore[no-untyped-def]
    st, tr, ytr, va, yva, _ = setup
    model = build_model(None, FINDINGS3, arch="resnet3d", input_size=16)
    with pytest.raises(ValueError, match="LoRA"):
        finetune(model, st, tr, ytr, va, yva, FINDINGS3, FinetuneConfig(mode="lora", epochs=1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, r"lr must be > 0, got -1.0"),
        ({"layer_decay": 0.0}, r"layer_decay must be in \(0, 1\]"),
        ({"epochs": 0}, r"epochs must be >= 1"),
        ({"mode": "foo"}, r"mode must be full, lora or linear, got 'foo'"),
    ],
)
def test_finetune_config_refuses_values_that_cannot_train(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        FinetuneConfig(**kwargs)


def test_cpu_device_trains_the_same_weights(setup) -> None:  # type: ignore[no-untyped-def]
    """finetune(device="cpu") is today's CPU run: same weights, history and predictions to the bit."""
    st, tr, ytr, va, yva, te = setup
    runs = []
    for device in (None, "cpu"):
        torch.manual_seed(0)
        model = build_model(tiny_backbone(), FINDINGS3)
        cfg = FinetuneConfig(epochs=2, lr=1e-3, batch_size=8)
        model, info = finetune(model, st, tr[:16], ytr[:16], va, yva, FINDINGS3, cfg, device=device)
        runs.append((model.state_dict(), info["history"], predict_scans(model, st, te)))
    (w0, h0, p0), (w1, h1, p1) = runs
    assert all(torch.equal(w0[k], w1[k]) for k in w0) and h0 == h1
    np.testing.assert_array_equal(p0, p1)


def test_frozen_backbone_random_init_is_seeded_and_leaves_the_rng(tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    from fmct.train.finetune import frozen_backbone

    def weights(m):  # type: ignore[no-untyped-def]
        return {k: v.clone() for k, v in m.backbone.state_dict().items()}

    trained = weights(load_model(tiny_model_dir))
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = (
        weights(frozen_backbone(tiny_model_dir, True, seed=1)),
        weights(frozen_backbone(tiny_model_dir, True, 1)),
    )
    c = weights(frozen_backbone(tiny_model_dir, random_init=True, seed=2))
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same weights
    assert any(not torch.equal(a[k], c[k]) for k in a) and any(not torch.equal(a[k], trained[k]) for k in a)
    same = weights(frozen_backbone(tiny_model_dir))
    assert all(torch.equal(same[k], trained[k]) for k in trained)  # without random_init: the model's own
    assert frozen_backbone(tiny_model_dir, True, 1).preprocessing == load_model(tiny_model_dir).preprocessing
