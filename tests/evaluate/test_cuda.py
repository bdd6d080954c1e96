"""Embedding, fine-tuning and the attentive probe on a CUDA GPU agree with the CPU. Skipped without a GPU; the
suite hides GPUs unless FMCT_TEST_GPU=1 (tests/conftest.py)."""

import numpy as np
import pytest
import torch
from evalkit import FINDINGS3, MemoryStore, make_labels, separable_embeddings, tiny_backbone

from fmct.evaluate.attentive import fit_attentive_probe
from fmct.evaluate.embed import embed_store, load_embeddings
from fmct.train.finetune import FinetuneConfig, build_model, finetune, predict_scans

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (FMCT_TEST_GPU=1)")


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_embedding_on_the_gpu_agrees_with_the_cpu(tmp_path) -> None:
    store = MemoryStore(make_labels(6))
    embs = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        m = tiny_backbone()
        embs[device] = load_embeddings(
            embed_store(m, store, tmp_path / f"{device}.parquet", batch_size=3, progress=False, device=device)
        )
        assert {p.device.type for p in m.parameters()} == {device}
    for col in ("cls", "mean_patch", "brain_max", "brain_stats"):
        assert _rel(getattr(embs["cuda"], col), getattr(embs["cpu"], col)) < 3e-2, col  # bf16 autocast


def test_finetune_and_attentive_probe_train_on_the_gpu_like_on_the_cpu() -> None:
    df = make_labels(32)
    st, y, ids = MemoryStore(df), df[FINDINGS3].to_numpy(dtype=float), list(df["scan_id"])
    runs = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model = build_model(tiny_backbone(), FINDINGS3)
        cfg = FinetuneConfig(epochs=2, lr=1e-3, batch_size=8)
        model, info = finetune(
            model, st, ids[:20], y[:20], ids[20:26], y[20:26], FINDINGS3, cfg, device=device
        )
        assert {p.device.type for p in model.parameters()} == {device}
        runs[device] = ([h["loss"] for h in info["history"]], predict_scans(model, st, ids[26:]))
    assert runs["cuda"][0] == pytest.approx(runs["cpu"][0], rel=1e-3)  # fp32 training on both
    np.testing.assert_allclose(runs["cuda"][1], runs["cpu"][1], atol=1e-3)
    emb = separable_embeddings(make_labels(60, seed=3), FINDINGS3)
    yy = make_labels(60, seed=3)[FINDINGS3].to_numpy(dtype=float)
    probs = []
    for device in ("cpu", "cuda"):
        p = fit_attentive_probe(emb.patch[:40], yy[:40], emb.patch[40:50], yy[40:50], FINDINGS3, epochs=3,
                                num_heads=2, device=device)  # fmt: skip
        probs.append(p.predict_proba(emb.patch[50:]))
    np.testing.assert_allclose(probs[1], probs[0], atol=1e-3)
