"""A tiny pretraining config (the tiny store fixture lives in tests/conftest.py)."""

from __future__ import annotations

import pytest

TINY = [
    "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=8",
    "data.global_size=32", "data.local_size=16", "data.n_local=2", "data.cache_size=40", "data.num_workers=0",
    "dino.out_dim=64", "dino.ibot_out_dim=64", "dino.head_hidden_dim=32", "dino.head_bottleneck_dim=16",
    "mae.decoder_dim=24", "mae.decoder_depth=1", "mae.decoder_heads=2",
    "batch_size=2", "optim.warmup_steps=2", "optim.warmup_teacher_temp_steps=3", "monitor_every=2",
]  # fmt: skip


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)
