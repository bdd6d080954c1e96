import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from fmct.cli import app
from fmct.infer.retrieval import (
    load_index,
    nearest,
    ranking_average_precision,
    retrieval_map,
    retrieve,
)


def test_nearest_ranks_by_cosine_and_excludes_query():
    emb = np.array([[1.0, 0.0], [10.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    hits = nearest(emb, emb[0], k=10, exclude=0)
    assert [i for i, _ in hits] == [1, 2, 3]
    assert hits[0][1] == pytest.approx(10 / np.sqrt(101))  # scale-invariant cosine
    assert hits[-1][1] == pytest.approx(-1.0)
    assert len(nearest(emb, emb[0], k=2)) == 2
    with pytest.raises(ValueError, match="dims"):
        nearest(emb, np.ones(3))


def test_average_precision_by_hand():
    # relevant at ranks 1 and 3: AP = (1/1 + 2/3) / 2
    assert ranking_average_precision(np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(ranking_average_precision(np.zeros(3)))


def test_retrieval_map_perfect_clusters_and_chance():
    rng = np.random.default_rng(0)
    lab = np.array([1] * 10 + [0] * 30, dtype=float)
    centres = np.where(lab[:, None] == 1, np.array([5.0, 0, 0]), np.array([0, 5.0, 0]))
    emb = centres + rng.normal(0, 0.1, (40, 3))
    assert retrieval_map(emb, lab[:, None], names=["ich"])["ich"] == pytest.approx(1.0)
    # random embeddings: mAP close to the positives' share among the other scans (9/39)
    maps = [retrieval_map(rng.normal(size=(40, 8)), lab[:, None], names=["ich"])["ich"] for _ in range(20)]
    assert abs(np.mean(maps) - 9 / 39) < 0.08


def test_retrieval_map_dataframe_unknown_and_too_few():
    emb = np.eye(4)
    df = pd.DataFrame({"sdh": [1, 1, 0, np.nan], "edh": [1, 0, 0, 0]})
    out = retrieval_map(emb, df)
    assert set(out) == {"sdh", "edh"}
    assert np.isnan(out["edh"])  # one positive: nothing to retrieve
    # orthogonal embeddings tie at 0: rank among 2 known others (1 positive, 1 negative) -> AP 1 or 1/2
    assert 0.5 <= out["sdh"] <= 1.0


@pytest.fixture()
def index_file(tmp_path):
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(6, 4)).astype(np.float32)
    emb[1] = emb[0] * 3 + 0.01  # scan b is almost parallel to a
    ids = list("abcdef")
    wide = tmp_path / "wide.parquet"
    pd.DataFrame({"scan_id": ids, "site": "s", **{f"e{i}": emb[:, i] for i in range(4)}}).to_parquet(wide)
    lst = tmp_path / "list.parquet"
    pd.DataFrame({"scan_id": ids, "embedding": list(emb)}).to_parquet(lst)
    return wide, lst, emb


def test_load_embeddings_both_layouts(index_file):
    wide, lst, emb = index_file
    for path in (wide, lst):
        ids, e = load_index(path)
        assert ids == list("abcdef")
        np.testing.assert_allclose(e, emb, rtol=1e-6)


def test_retrieve_by_scan_id(index_file):
    wide, _, _ = index_file
    hits = retrieve(wide, "a", k=3)
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert hits[0]["scan_id"] == "b" and hits[0]["similarity"] > 0.99
    assert all(h["scan_id"] != "a" for h in hits)
    with pytest.raises(ValueError, match="--model"):
        retrieve(wide, "zzz")


def test_retrieve_cli_json_and_table(index_file):
    wide, _, _ = index_file
    runner = CliRunner()
    res = runner.invoke(
        app, ["retrieve", "--index", str(wide), "--query", "a", "-k", "2", "--json", "--feature", "cls"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [h["scan_id"] for h in doc["neighbours"]][0] == "b" and len(doc["neighbours"]) == 2
    res = runner.invoke(app, ["retrieve", "--index", str(wide), "--query", "a", "--feature", "cls"])
    assert res.exit_code == 0 and "cosine" in res.output
    res = runner.invoke(app, ["retrieve", "--index", str(wide), "--query", "nope", "--feature", "cls"])
    assert res.exit_code == 2 and "not a scan_id" in res.output


def test_retrieve_query_path_with_model(index_file, tmp_path, model_dir, nifti_scan, classifier):
    """A scan path embedded with the model lands on itself once its embedding is in the index."""
    from fmct.infer.retrieval import embed_scan

    q = embed_scan(model_dir, str(nifti_scan))
    assert q.shape == (classifier.backbone.embed_dim,)
    assert embed_scan(classifier, str(nifti_scan), "cls+mean").shape == (2 * classifier.backbone.embed_dim,)
    brain = embed_scan(classifier, str(nifti_scan), "brain_max")
    assert brain.shape == q.shape and not np.allclose(brain, q)
    stats = embed_scan(classifier, str(nifti_scan), "brain_stats")  # [mean | std | max] of the same patches
    assert stats.shape == (3 * q.shape[0],)
    np.testing.assert_allclose(stats[2 * q.shape[0] :], brain, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="64-dim"):
        embed_scan(classifier, str(nifti_scan), dim=64)
    rng = np.random.default_rng(2)
    emb = np.concatenate([rng.normal(size=(5, q.shape[0])), q[None]]).astype(np.float32)
    idx = tmp_path / "idx.parquet"
    pd.DataFrame({"scan_id": [*"vwxyz", "self"], "embedding": list(emb)}).to_parquet(idx)
    hits = retrieve(idx, str(nifti_scan), model=model_dir, k=2)
    assert hits[0]["scan_id"] == "self" and hits[0]["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_fmct_embed_layout_and_poolings(tmp_path):
    """`fmct embed` tables: fixed-size list columns cls and mean_patch."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    cls, mean = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(5, 4)).astype(np.float32)
    path = tmp_path / "emb.parquet"
    pq.write_table(
        pa.table(
            {
                "scan_id": pa.array(list("abcde")),
                "cls": pa.FixedSizeListArray.from_arrays(pa.array(cls.ravel()), 4),
                "mean_patch": pa.FixedSizeListArray.from_arrays(pa.array(mean.ravel()), 4),
            }
        ),
        path,
    )
    with pytest.raises(ValueError, match="no brain_max column"):
        load_index(path, "brain_max")
    pq.write_table(
        pq.read_table(path).append_column(
            "brain_max", pa.FixedSizeListArray.from_arrays(pa.array((2 * mean).ravel()), 4)
        ),
        path,
    )
    np.testing.assert_allclose(load_index(path, "brain_max")[1], 2 * mean)
    with pytest.raises(ValueError, match=f"{path}: no brain_stats column"):
        load_index(path, "brain_stats")
    stats = np.concatenate([mean, cls, 2 * mean], axis=1)
    pq.write_table(
        pq.read_table(path).append_column(
            "brain_stats", pa.FixedSizeListArray.from_arrays(pa.array(stats.ravel()), 12)
        ),
        path,
    )
    np.testing.assert_allclose(load_index(path, "brain_stats")[1], stats)
    np.testing.assert_allclose(load_index(path)[1], cls)
    np.testing.assert_allclose(load_index(path, "mean_patch")[1], mean)
    np.testing.assert_allclose(load_index(path, "cls+mean")[1], np.concatenate([cls, mean], 1))
    with pytest.raises(ValueError, match="unknown readout .max."):
        load_index(path, "max")
    res = CliRunner().invoke(
        app, ["retrieve", "--index", str(path), "--query", "c", "--pooling", "cls+mean", "--json"]
    )
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["neighbours"]) == 4


def test_an_index_with_inf_is_refused_naming_the_scan(tmp_path) -> None:
    path = tmp_path / "idx.parquet"
    pd.DataFrame(
        {"scan_id": ["a", "b", "c"], "embedding": [[0.0, 1.0], [np.inf, 0.0], [1.0, 1.0]]}
    ).to_parquet(path)
    with pytest.raises(ValueError, match=r"idx.parquet: Inf in embedding of 1 scan\(s\): b \("):
        load_index(path)
