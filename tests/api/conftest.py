"""Fixtures of the API tests: a few synthetic NIfTI head CTs, a tiny classifier directory, and the evaluate
tests' labelled disk store (helpers in tests/evaluate/evalkit.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "evaluate"))


@pytest.fixture(scope="session")
def synth_nifti(tmp_path_factory) -> Path:
    """``fmct synth``: 3 site-a head CTs as NIfTI (64² matrix) and labels.csv; returns the cohort folder."""
    from fmct.synth import generate_cohort

    root = tmp_path_factory.mktemp("synth")
    generate_cohort(root, 3, "a", 0, fmt="nifti", size=64, progress=False)
    return root


@pytest.fixture(scope="session")
def classifier_dir(tmp_path_factory) -> Path:
    """A tiny ViT classifier (32³ input, patch 8, width 32, 2 blocks) over all findings, saved as a directory."""
    import torch

    from fmct.labels import FINDINGS
    from fmct.models.hub import ClassifierModel
    from fmct.models.vit3d import ViT3D, ViT3DConfig
    from fmct.preprocess import PreprocessConfig

    torch.manual_seed(0)
    vit = ViT3D(ViT3DConfig(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2))
    pre = {**PreprocessConfig(spacing=2.0).to_dict(), "input_size": 32}
    clf = ClassifierModel.from_backbone(vit, list(FINDINGS), preprocessing=pre, name="tiny-api")
    return clf.save_pretrained(tmp_path_factory.mktemp("models") / "clf")


@pytest.fixture(scope="session")
def labelled_store(tmp_path_factory) -> tuple[Path, Path]:
    """40 labelled scans (3 findings, sites a and b, 2 scans per patient) as a disk store: ``(store, labels.csv)``."""
    from evalkit import MemoryStore, make_labels, write_disk_store

    root = tmp_path_factory.mktemp("labelled")
    df = make_labels(40, seed=5)
    df.to_csv(root / "labels.csv", index=False)
    return write_disk_store(root / "store", MemoryStore(df)), root / "labels.csv"


@pytest.fixture(scope="session")
def backbone_dir(tmp_path_factory) -> Path:
    """The evaluate tests' tiny ViT backbone (16³ input), saved as a directory."""
    import torch
    from evalkit import tiny_backbone

    torch.manual_seed(0)
    return tiny_backbone().save_pretrained(tmp_path_factory.mktemp("models") / "backbone")
