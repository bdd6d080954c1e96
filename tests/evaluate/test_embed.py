"""Embedding a store: file format, resumability, real store on disk, model directories."""

import numpy as np
import pytest
import torch
from evalkit import MemoryStore, make_labels, tiny_backbone, write_disk_store

from fmct.evaluate.embed import Embeddings, embed_store, load_embeddings, patch_path, save_embeddings


class CountingModel(torch.nn.Module):
    """Wraps a BackboneModel and counts embedded scans."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny_backbone()
        self.input_size = self.inner.input_size
        self.preprocessing = self.inner.preprocessing
        self.seen: list[int] = []

    def embed(self, x):  # type: ignore[no-untyped-def]
        self.seen.append(x.shape[0])
        return self.inner.embed(x)


def test_roundtrip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    e = Embeddings(
        ["a", "b"],
        np.ones((2, 3), np.float32),
        np.zeros((2, 3), np.float32),
        np.full((2, 4, 3), 0.5, np.float32),
        {"model": "m"},
    )
    save_embeddings(e, tmp_path / "e.parquet")
    back = load_embeddings(tmp_path / "e.parquet")
    assert back.scan_ids == ["a", "b"] and back.meta == {"model": "m"}
    np.testing.assert_array_equal(back.cls, e.cls)
    assert back.patch.shape == (2, 4, 3) and back.patch.dtype == np.float16
    assert back.feature("cls+mean").shape == (2, 6)
    assert back.select(["b"]).cls.shape == (1, 3)
    with pytest.raises(KeyError):
        back.select(["zz"])


def test_embed_store_is_resumable(tmp_path) -> None:  # type: ignore[no-untyped-def]
    df = make_labels(10)
    store = MemoryStore(df)
    torch.manual_seed(0)
    m = CountingModel()
    out = tmp_path / "emb.parquet"
    embed_store(m, store, out, batch_size=3, scan_ids=store.scan_ids[:4], progress=False, part_size=2)
    assert sum(m.seen) == 4
    embed_store(m, store, out, batch_size=3, progress=False)
    assert sum(m.seen) == 10  # only the 6 new scans were embedded
    e = load_embeddings(out)
    assert e.scan_ids == store.scan_ids  # store order
    assert e.cls.shape == (10, 16) and e.patch.shape == (10, 8, 16)
    assert not (tmp_path / ".emb.parquet.parts").exists()
    # same result as embedding in one go
    full = embed_store(m, store, tmp_path / "b.parquet", progress=False)
    np.testing.assert_allclose(load_embeddings(full).cls, e.cls, atol=1e-5)


def test_interrupted_parts_are_merged(tmp_path) -> None:  # type: ignore[no-untyped-def]
    df = make_labels(6)
    store = MemoryStore(df)
    m = CountingModel()
    out = tmp_path / "emb.parquet"
    calls = {"n": 0}

    def boom(done: int, total: int) -> None:
        calls["n"] += 1
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_store(m, store, out, batch_size=2, part_size=2, progress=boom)
    assert not out.exists() and (tmp_path / ".emb.parquet.parts").exists()
    before = sum(m.seen)
    embed_store(m, store, out, batch_size=2, progress=False)
    assert sum(m.seen) - before == 2  # the 4 scans saved in parts are not embedded again
    assert load_embeddings(out).scan_ids == store.scan_ids


def test_embed_model_dir_on_disk_store_with_workers(tmp_path, tiny_model_dir) -> None:  # type: ignore[no-untyped-def]
    df = make_labels(6)
    root = write_disk_store(tmp_path / "store", MemoryStore(df))
    out = embed_store(
        tiny_model_dir,
        root,
        tmp_path / "e.parquet",
        batch_size=2,
        workers=1,
        progress=False,
        keep_patch=False,
    )
    e = load_embeddings(out)
    assert sorted(e.scan_ids) == sorted(df["scan_id"]) and e.patch is None
    assert e.meta["model"] == str(tiny_model_dir) and e.meta["input_size"] == 16
    assert not patch_path(out).exists()


def test_classifier_and_resnet_directories_embed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fmct.train.finetune import build_model

    df = make_labels(4)
    store = MemoryStore(df)
    clf_dir = build_model(tiny_backbone(), ["ich"]).save_pretrained(tmp_path / "clf")
    e = load_embeddings(embed_store(clf_dir, store, tmp_path / "c.parquet", progress=False))
    assert e.cls.shape == (4, 16)
    res = (
        build_model(None, ["ich"], arch="resnet3d", input_size=16)
        .as_backbone()
        .save_pretrained(tmp_path / "r")
    )
    e = load_embeddings(embed_store(res, store, tmp_path / "r.parquet", progress=False))
    assert e.cls.shape == (4, 128) and e.patch.shape[0] == 4


def test_embed_store_writes_the_brain_readouts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fmct.preprocess.brain_mask import (
        brain_max_pool,
        brain_stats_pool,
        intracranial_mask,
        patch_fractions,
    )
    from fmct.preprocess.model_input import cube_hu, to_model_input

    store = MemoryStore(make_labels(4))
    torch.manual_seed(0)
    m = tiny_backbone().eval()
    out = embed_store(m, store, tmp_path / "e.parquet", batch_size=3, part_size=2, progress=False)
    e = load_embeddings(out)
    assert e.feature("brain_max").shape == (4, 16) and e.feature("brain_stats").shape == (4, 48)
    # scan 1 by hand: its tokens, its cube's cavity mask, the max (and mean, std) over the patches inside it
    vol = store.load(store.scan_ids[1])
    x, _ = to_model_input(vol, 16)
    tokens = m.embed(x[None])["patch"].numpy()
    frac = patch_fractions(intracranial_mask(cube_hu(vol, 16)[0].numpy()), (2, 2, 2))
    np.testing.assert_allclose(e.brain_max[1], brain_max_pool(tokens, frac[None])[0], atol=1e-5)
    np.testing.assert_allclose(e.brain_stats[1], brain_stats_pool(tokens, frac[None])[0], atol=1e-5)
    np.testing.assert_array_equal(e.brain_stats[:, 32:], e.brain_max)  # the same patches
    picked = e.select([store.scan_ids[1]])
    assert picked.brain_max.shape == (1, 16) and picked.brain_stats.shape == (1, 48)
    # files without the columns (older fmct): a clear error naming the file and the fix
    save_embeddings(Embeddings(e.scan_ids, e.cls, e.mean_patch), tmp_path / "old.parquet")
    for kind in ("brain_max", "brain_stats"):
        with pytest.raises(
            ValueError, match=f"{tmp_path / 'old.parquet'}: no {kind} column.*re-run `fmct embed`"
        ):
            load_embeddings(tmp_path / "old.parquet").select(e.scan_ids[:2]).feature(kind)
    # an output file with brain_max only, resumed by this fmct: the merged file drops the column some rows lack
    only_max = tmp_path / "max.parquet"
    save_embeddings(
        Embeddings(e.scan_ids[:2], e.cls[:2], e.mean_patch[:2], brain_max=e.brain_max[:2]), only_max
    )
    merged = load_embeddings(embed_store(m, store, only_max, progress=False))
    assert merged.scan_ids == store.scan_ids and merged.brain_stats is None
    np.testing.assert_allclose(merged.brain_max, e.brain_max, atol=1e-5)


def test_embed_cache_and_embed_volumes_give_the_brain_readouts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """embed_volumes pools as embed_store does; embed_cache (int16 HU cubes, so slightly other inputs) pools
    its own tokens over its cubes' cavity patches."""
    from fmct.evaluate.embed import CubeCache, embed_batch, embed_cache, embed_volumes, model_input_spec
    from fmct.preprocess.brain_mask import brain_stats_pool

    store = MemoryStore(make_labels(5))
    torch.manual_seed(0)
    m = tiny_backbone().eval()
    ref = load_embeddings(embed_store(m, store, tmp_path / "e.parquet", batch_size=2, progress=False))
    direct = embed_volumes(m, [store.load(s) for s in store.scan_ids], batch_size=3)
    for kind in ("brain_max", "brain_stats"):
        np.testing.assert_allclose(direct[kind], ref.feature(kind), atol=1e-5)
    cache = CubeCache(store, store.scan_ids, 16)
    cached = embed_cache(m, cache, batch_size=3)
    tokens = embed_batch(m, cache.batch(torch.arange(5), model_input_spec(m)[1]))["patch"]
    want = brain_stats_pool(tokens, cache.brain_fractions((2, 2, 2)))
    np.testing.assert_allclose(cached.feature("brain_stats"), want, atol=1e-5)
    np.testing.assert_array_equal(cached.brain_stats[:, 32:], cached.brain_max)
    np.testing.assert_allclose(cached.brain_stats, ref.brain_stats, atol=3e-2)  # the int16 rounding of HU


def test_nan_and_inf_embeddings_are_refused_naming_file_scans_and_kind(tmp_path) -> None:
    from typer.testing import CliRunner

    from fmct.cli import app

    ids = [f"s{i:02d}" for i in range(12)]
    cls = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    mean = cls.copy()
    cls[[1, 3, 4, 5, 6, 7], 2] = np.nan  # six scans: five shown
    mean[9, 0] = -np.inf
    path = save_embeddings(Embeddings(ids, cls, mean), tmp_path / "emb.parquet")
    with pytest.raises(ValueError) as err:
        load_embeddings(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: NaN in cls of 6 scan(s): s01, s03, s04, s05, s06, ...; ")
    assert "Inf in mean_patch of 1 scan(s): s09" in msg
    labels = make_labels(12)
    labels["scan_id"] = ids
    labels.to_csv(tmp_path / "labels.csv", index=False)
    r = CliRunner().invoke(
        app,
        [
            "probe",
            "--embeddings",
            str(path),
            "--labels",
            str(tmp_path / "labels.csv"),
            "--out",
            str(tmp_path / "p"),
        ],
    )
    assert r.exit_code == 1 and "NaN in cls of 6 scan(s)" in r.output.replace("\n", ""), r.output


def test_cpu_device_embeds_exactly_as_a_plain_fp32_forward_pass(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """--device cpu (and auto on a machine without a GPU) changes no number: no autocast, no dtype change."""
    from fmct.evaluate.embed import StoreInputs, embed_batch

    store = MemoryStore(make_labels(5))
    torch.manual_seed(0)
    m = tiny_backbone().eval()
    x = torch.stack([StoreInputs(store, store.scan_ids, 16)[i][1] for i in range(5)])
    res = embed_batch(m, x)
    with torch.no_grad():
        plain = m.backbone.forward_features(x)
    assert res["cls"].dtype == np.float32
    np.testing.assert_array_equal(res["cls"], plain["cls"].numpy())
    np.testing.assert_array_equal(res["patch"], plain["patch"].numpy())
    a = load_embeddings(embed_store(m, store, tmp_path / "a.parquet", batch_size=5, progress=False))
    b = load_embeddings(
        embed_store(m, store, tmp_path / "b.parquet", batch_size=5, progress=False, device="cpu")
    )
    np.testing.assert_array_equal(a.cls, plain["cls"].numpy())
    for col in ("cls", "mean_patch", "brain_max", "brain_stats"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col))
    np.testing.assert_array_equal(np.asarray(a.patch), np.asarray(b.patch))
