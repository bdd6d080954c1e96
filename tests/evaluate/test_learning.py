"""Learning tests: fine-tuning and probing must pick up a signal that is plainly there.

The task: a 32³ "head" (skull shell, brain at ~30 HU) where the label is 1 iff a 75 HU sphere
(radius 6 voxels, random position) sits in the brain. Chance is AUROC 0.5; every component below
must clearly beat it on held-out scans.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fmct.evaluate.attentive import macro_auroc
from fmct.io.volume import Volume
from fmct.train.finetune import FinetuneConfig, build_model, finetune, predict_scans

PREP = {"spacing": 1.0, "windows": [[40, 80], [80, 200], [600, 2800]]}
SIZE = 32


class BlobStore:
    """``n`` synthetic heads; ``y[i] = 1`` iff scan ``i`` has a bright blob. ``load(scan_id) -> Volume``."""

    def __init__(self, n: int, seed: int = 0, blob_radius: float = 6.0) -> None:
        rng = np.random.default_rng(seed)
        self.scan_ids = [f"blob{i:03d}" for i in range(n)]
        self.y = (np.arange(n) % 2).astype(np.float64)
        rng.shuffle(self.y)
        self.seed, self.blob_radius = seed, blob_radius
        g = np.indices((SIZE, SIZE, SIZE)).astype(np.float32) - (SIZE - 1) / 2
        self._grid, self._r = g, np.sqrt((g**2).sum(0))

    def load(self, scan_id: str) -> Volume:
        i = self.scan_ids.index(scan_id)
        rng = np.random.default_rng(10007 * self.seed + i)
        a = np.full((SIZE,) * 3, -1000.0, np.float32)
        a[self._r < 15] = 1000.0  # skull
        brain = self._r < 13
        a[brain] = rng.normal(30.0, 5.0, int(brain.sum()))
        if self.y[i] == 1:
            c = rng.uniform(-3, 3, 3).astype(np.float32)
            blob = np.sqrt(((self._grid - c[:, None, None, None]) ** 2).sum(0)) < self.blob_radius
            a[blob] = rng.normal(75.0, 5.0, int(blob.sum()))
        return Volume(a.astype(np.int16), np.eye(4), {})


@pytest.fixture(scope="module")
def blob_store() -> BlobStore:
    return BlobStore(56)


def _split(store: BlobStore) -> tuple[list[str], list[str], list[str]]:
    ids = store.scan_ids
    return ids[:24], ids[24:36], ids[36:]


def _y(store: BlobStore, ids: list[str]) -> np.ndarray:
    return store.y[[store.scan_ids.index(s) for s in ids]][:, None]


VIT = {"type": "vit3d", "img_size": SIZE, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
RESNET = {"type": "resnet3d", "widths": [8, 16], "blocks": [1, 1]}


@pytest.mark.parametrize("arch", [VIT, RESNET], ids=["vit", "resnet3d"])
def test_finetune_from_scratch_learns_blob(blob_store: BlobStore, arch: dict) -> None:
    torch.manual_seed(0)
    tr, va, te = _split(blob_store)
    model = build_model(None, ["blob"], arch=arch, input_size=SIZE, preprocessing=PREP)
    cfg = FinetuneConfig(mode="full", epochs=8, lr=1e-3, batch_size=8, patience=100, seed=0)
    model, info = finetune(model, blob_store, tr, _y(blob_store, tr), va, _y(blob_store, va), ["blob"], cfg)
    p = predict_scans(model, blob_store, te)
    assert p.shape == (len(te), 1)
    auc = macro_auroc(_y(blob_store, te), p)
    assert auc >= 0.8, (auc, info["history"])
    # the scores belong to the scans asked for: reversing the order reverses the scores
    assert np.allclose(predict_scans(model, blob_store, te[::-1]), p[::-1], atol=1e-5)


def test_linear_probe_on_random_vit_features_detects_blob(blob_store: BlobStore) -> None:
    """Mean-pooled patch tokens of a random ViT are (near-)linear in local intensity: a fair target."""
    from fmct.evaluate.embed import embed_volumes
    from fmct.evaluate.probe import fit_linear_probe
    from fmct.models.factory import build_backbone
    from fmct.models.hub import BackboneModel

    torch.manual_seed(0)
    bb = BackboneModel(build_backbone(VIT), {**PREP, "input_size": SIZE}, architecture=VIT).eval()
    tr, va, te = _split(blob_store)
    x = {
        k: embed_volumes(bb, [blob_store.load(s) for s in ids])["mean_patch"]
        for k, ids in (("tr", tr), ("va", va), ("te", te))
    }
    probe = fit_linear_probe(x["tr"], _y(blob_store, tr), x["va"], _y(blob_store, va), ["blob"])
    auc = macro_auroc(_y(blob_store, te), probe.predict_proba(x["te"]))
    assert auc >= 0.8, auc


def test_protocol_finetune_scores_line_up_with_labels(blob_store: BlobStore, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """End to end through run_protocol (cached-cube path): the finetune baseline beats chance on id."""
    import pandas as pd

    from fmct.evaluate.protocol import run_protocol

    tr, va, te = _split(blob_store)
    split_of = {**dict.fromkeys(tr, "train"), **dict.fromkeys(va, "val"), **dict.fromkeys(te, "test")}
    labels = pd.DataFrame(
        {
            "scan_id": blob_store.scan_ids,
            "patient_id": [f"p{i:03d}" for i in range(len(blob_store.scan_ids))],
            "site": "a",
            "ich": blob_store.y.astype(int),  # protocol needs a known finding name
        }
    )
    splits = labels[["scan_id", "patient_id", "site"]].assign(split=[split_of[s] for s in labels["scan_id"]])
    spec = {"arch": VIT, "input_size": SIZE, "epochs": 8, "lr": 1e-3, "batch_size": 8, "patience": 100}
    rep = run_protocol(
        {"scratch": {"finetune": spec}},
        labels,
        tmp_path / "rep",
        store=blob_store,
        splits=splits,
        config={"fractions": [1.0], "seeds": [0], "methods": ["linear"], "n_boot": 20, "train_site": "a"},
        write=False,
    )
    res = {r["test_set"]: r["auroc"]["macro"]["mean"] for r in rep["results"]}
    assert res["id"] >= 0.8, res
