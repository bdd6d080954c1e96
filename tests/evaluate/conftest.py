"""Fixtures for the evaluate tests (helpers live in evalkit.py, importable from the tests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from evalkit import MemoryStore, make_labels, tiny_backbone  # noqa: E402


@pytest.fixture
def labels_df() -> pd.DataFrame:
    return make_labels()


@pytest.fixture
def mem_store(labels_df: pd.DataFrame) -> MemoryStore:
    return MemoryStore(labels_df)


@pytest.fixture
def tiny_model_dir(tmp_path: Path) -> Path:
    import torch

    torch.manual_seed(0)
    return tiny_backbone().save_pretrained(tmp_path / "tiny")
