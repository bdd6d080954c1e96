"""Store-backed multi-crop dataset: deterministic sample -> scan and augmentation, loader split by rank."""

from __future__ import annotations

import torch

from fmct.ssl.augment import AugmentConfig
from fmct.ssl.data import SSLDataset, StepBatchSampler, make_loader
from fmct.store import open_store


def _dataset(store_root, seed=0) -> SSLDataset:
    store = open_store(store_root)
    aug = AugmentConfig(global_size=16, local_size=8, n_local=2)
    return SSLDataset(store, store.scan_ids, aug, cache_size=24, seed=seed)


def test_only_ok_scans_and_epoch_permutation(tiny_store) -> None:
    ds = _dataset(tiny_store)
    assert "bad" not in ds.scan_ids and len(ds.scan_ids) == 6
    n = len(ds.scan_ids)
    for epoch in range(3):
        seen = [ds.scan_for(epoch * n + i) for i in range(n)]
        assert sorted(seen) == sorted(ds.scan_ids)


def test_items_deterministic_by_sample_number(tiny_store) -> None:
    a, b = _dataset(tiny_store), _dataset(tiny_store)
    x, y = a[13], b[13]
    assert x["scan_id"] == y["scan_id"]
    assert torch.equal(x["global"], y["global"]) and torch.equal(x["local"], y["local"])
    assert x["global"].shape == (2, 3, 16, 16, 16) and x["local"].shape == (2, 3, 8, 8, 8)


def test_sampler_splits_ranks_without_overlap() -> None:
    r0 = list(StepBatchSampler(2, 4, 3, rank=0, world=2))
    r1 = list(StepBatchSampler(2, 4, 3, rank=1, world=2))
    assert r0 == [[12, 13, 14], [18, 19, 20]] and r1 == [[15, 16, 17], [21, 22, 23]]


def test_loader_view_major_batches_and_resume_equivalence(tiny_store) -> None:
    ds = _dataset(tiny_store)
    full = list(make_loader(ds, 0, 3, 2))
    tail = list(make_loader(_dataset(tiny_store), 2, 3, 2))
    b = full[0]
    assert b["global"].shape == (4, 3, 16, 16, 16) and b["local"].shape == (4, 3, 8, 8, 8)
    assert len(b["scan_ids"]) == 2
    # rows 0..B-1 are view 0 of every scan, rows B..2B-1 view 1
    single = ds[int(b["p"][1])]
    assert torch.equal(b["global"][1], single["global"][0]) and torch.equal(
        b["global"][3], single["global"][1]
    )
    assert torch.equal(full[2]["global"], tail[0]["global"])


def test_device_augment_path_matches_loader_path(tiny_store) -> None:
    from fmct.ssl.data import augment_batch

    ds = _dataset(tiny_store)
    raw = SSLDataset(ds.store, ds.scan_ids, ds.aug, cache_size=24, seed=0, augment=False)
    a = next(iter(make_loader(ds, 1, 2, 3)))
    b = augment_batch(next(iter(make_loader(raw, 1, 2, 3))), raw.crop, 0, torch.device("cpu"))
    assert torch.equal(a["global"], b["global"]) and torch.equal(a["local"], b["local"])
    assert a["scan_ids"] == b["scan_ids"]
