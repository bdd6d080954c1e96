"""Suite-wide settings (one torch thread per test worker: pytest -n 2 uses both cores; headless plots), the
tiny on-disk store (layout of docs/ARCHITECTURE.md) with blob "heads" shared by the ssl, train and api tests, and
a tiny pretraining config for it; small NIfTI heads written with nibabel for the ingest and store tests."""

import json
import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
# The suite checks CPU numbers, as CI (no GPU) sees them: `--device auto` resolves to the CPU here even on a GPU
# machine. FMCT_TEST_GPU=1 keeps the GPUs visible for the CUDA tests: FMCT_TEST_GPU=1 pytest tests -k cuda
if not os.environ.get("FMCT_TEST_GPU"):
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


def make_head(rng: np.random.Generator, shape=(36, 40, 34)) -> np.ndarray:
    """Ellipsoid head: skull shell (~1000 HU), brain (~30 HU), a few blobs (bleed-like 70 HU / CSF 5 HU)."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    r = np.sqrt((x / 0.9) ** 2 + (y / 0.95) ** 2 + (z / 0.85) ** 2)
    vol = np.full(shape, -1000.0)
    vol[r < 1.0] = 1000.0
    vol[r < 0.85] = 30.0
    for _ in range(int(rng.integers(1, 4))):
        c = rng.uniform(-0.4, 0.4, 3)
        rad = rng.uniform(0.1, 0.3)
        d = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
        vol[d < rad] = rng.choice([70.0, 5.0])
    vol += rng.normal(0, 5, shape)
    return vol.astype(np.int16)


def write_store(root: Path, n: int = 6, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    (root / "scans").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        sid = f"scan{i:03d}"
        np.save(root / "scans" / f"{sid}.npy", make_head(rng))
        side = {"affine": np.eye(4).tolist(), "preprocess": {"spacing": 1.0, "crop_head": True}, "meta": {}}
        (root / "scans" / f"{sid}.json").write_text(json.dumps(side))
        rows.append({"scan_id": sid, "patient_id": f"pat{i // 2}", "status": "ok", "reason": ""})
    rows.append({"scan_id": "bad", "patient_id": "x", "status": "failed", "reason": "test"})
    pd.DataFrame(rows).to_parquet(root / "manifest.parquet")
    info = {"preprocess": {"spacing": 1.0, "crop_head": True, "windows": [[40, 80], [80, 200], [600, 2800]]}}
    (root / "store.json").write_text(json.dumps(info))
    return root


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory) -> Path:
    return write_store(tmp_path_factory.mktemp("store"))


TINY_PRETRAIN = [
    "model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.patch_size=8",
    "data.global_size=32", "data.local_size=16", "data.n_local=2", "data.cache_size=40", "data.num_workers=0",
    "dino.out_dim=64", "dino.ibot_out_dim=64", "dino.head_hidden_dim=32", "dino.head_bottleneck_dim=16",
    "mae.decoder_dim=24", "mae.decoder_depth=1", "mae.decoder_heads=2",
    "batch_size=2", "optim.warmup_steps=2", "optim.warmup_teacher_temp_steps=3", "monitor_every=2",
]  # fmt: skip


@pytest.fixture
def tiny_overrides() -> list[str]:
    """Overrides that make the default pretraining config tiny (a 32-wide ViT on 32³ views of tiny_store)."""
    return list(TINY_PRETRAIN)


def write_head(path: Path, shape=(40, 40, 24), spacing=(1.2, 1.2, 2.0), flip=False, nan=False) -> Path:
    """A 40 HU ball (radius 18 mm) in air with a bright marker; ``flip`` makes the x/y axes LPS-like."""
    sx, sy, sz = spacing
    aff = np.diag([-sx if flip else sx, -sy if flip else sy, sz, 1.0])
    idx = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), -1)
    centre_idx = (np.asarray(shape) - 1) / 2.0
    aff[:3, 3] = -(aff[:3, :3] @ centre_idx)
    world = idx @ aff[:3, :3].T + aff[:3, 3]
    hu = np.where((world**2).sum(-1) < 18.0**2, 40.0, -1000.0)
    hu += 1200.0 * np.exp(-((world - [4.0, -3.0, 5.0]) ** 2).sum(-1) / (2 * 2.5**2))
    hu = hu.astype(np.float32)
    if nan:
        hu[3, 3, 3] = np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(hu, aff), str(path))
    return path


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A folder with two good heads (one LPS-like), a NaN volume, a 4-slice volume and a junk file."""
    d = tmp_path / "in"
    write_head(d / "head_a.nii.gz")
    write_head(d / "sub" / "head_b.nii.gz", flip=True, spacing=(0.9, 0.9, 2.5))
    write_head(d / "bad_nan.nii.gz", nan=True)
    write_head(d / "thin.nii.gz", shape=(40, 40, 4))
    (d / "notes.txt").write_text("not a scan\n")
    return d


@pytest.fixture
def head_writer():
    return write_head
