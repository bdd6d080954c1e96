"""The fine-tuning tests borrow the evaluate tests' tiny backbone and in-memory store (tests/evaluate/evalkit.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "evaluate"))

from evalkit import tiny_backbone  # noqa: E402


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    """A saved tiny ViT backbone (seed 0)."""
    import torch

    torch.manual_seed(0)
    return tiny_backbone().save_pretrained(tmp_path / "tiny")
