"""Helpers for the evaluate tests: a tiny in-memory store, tiny ViT models, label tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fmct.io.volume import Volume

FINDINGS3 = ["ich", "sdh", "fracture"]


class MemoryStore:
    """Stand-in for ``fmct.store.ScanStore``: ``scan_ids`` and ``load(scan_id) -> Volume``.

    Positive findings brighten fixed regions so that a model can learn them.
    """

    def __init__(
        self, labels: pd.DataFrame, shape: tuple[int, int, int] = (20, 20, 16), seed: int = 0
    ) -> None:
        self.labels = labels.set_index("scan_id")
        self.scan_ids = list(labels["scan_id"])
        self.shape = shape
        self.seed = seed

    def load(self, scan_id: str) -> Volume:
        i = self.scan_ids.index(scan_id)
        rng = np.random.default_rng(self.seed * 100003 + i)
        a = rng.normal(30, 8, self.shape).astype(np.float32)
        a[:2], a[-2:] = 1000, 1000  # "skull"
        row = self.labels.loc[scan_id]
        if row.get("ich", 0) == 1:
            a[6:12, 6:12, 4:10] += 45
        if row.get("sdh", 0) == 1:
            a[2:5, :, :] += 50
        if row.get("fracture", 0) == 1:
            a[:2, 8:12, 6:10] = 30
        return Volume(a.astype(np.int16), np.diag([1.0, 1.0, 1.0, 1.0]), {})


def make_labels(n: int = 60, seed: int = 0, sites: tuple[str, ...] = ("a", "b")) -> pd.DataFrame:
    """``n`` scans, 2 scans per patient, sites alternating by patient, correlated findings."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        p = i // 2
        ich = int(rng.random() < 0.4)
        rows.append(
            {
                "scan_id": f"s{i:03d}",
                "patient_id": f"p{p:03d}",
                "site": sites[p % len(sites)] if p % 3 else sites[0],
                "ich": ich,
                "sdh": int(ich and rng.random() < 0.5),
                "fracture": int(rng.random() < 0.3),
            }
        )
    return pd.DataFrame(rows)


def write_disk_store(root: Path, mem: MemoryStore, scan_ids: list[str] | None = None) -> Path:
    """Write the scans of a :class:`MemoryStore` as a real fmct store (scans, records, manifest)."""
    from fmct.store.manifest import build_manifest, make_row, write_record
    from fmct.store.writer import write_scan

    root.mkdir(parents=True, exist_ok=True)
    for sid in scan_ids or mem.scan_ids:
        write_scan(root, sid, mem.load(sid), {"spacing": 1.0})
        write_record(root, make_row(scan_id=sid, status="ok", key=sid, source=f"synthetic/{sid}"))
    build_manifest(root)
    return root


def separable_embeddings(
    labels: pd.DataFrame, findings: list[str], dim: int = 8, signal: float = 2.0, seed: int = 0
):  # type: ignore[no-untyped-def]
    """Synthetic :class:`Embeddings`: each finding shifts one feature by ``signal`` (noise sd 1)."""
    from fmct.evaluate.embed import Embeddings

    rng = np.random.default_rng(seed)
    n = len(labels)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    for j, f in enumerate(findings):
        x[:, j] += signal * labels[f].to_numpy()
    patch = np.repeat(x[:, None, :], 4, axis=1) + rng.normal(scale=0.1, size=(n, 4, dim)).astype(np.float32)
    return Embeddings(list(labels["scan_id"]), x, x * 0.5 + 0.1, patch.astype(np.float32))


def tiny_backbone(input_size: int = 16):  # type: ignore[no-untyped-def]
    """A 2-block ViT with 16-dim tokens on 16³ inputs (8 patches) wrapped as a BackboneModel."""
    from fmct.models.hub import BackboneModel
    from fmct.models.vit3d import ViT3D, ViT3DConfig

    cfg = ViT3DConfig(img_size=input_size, patch_size=8, embed_dim=16, depth=2, num_heads=2)
    prep = {"spacing": 1.0, "windows": [[40, 80], [80, 200], [600, 2800]], "input_size": input_size}
    return BackboneModel(ViT3D(cfg), prep)
