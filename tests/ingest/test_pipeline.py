import os

import numpy as np
import pytest

from fmct.ingest import run_ingest as ingest
from fmct.ingest.plan import in_shard, parse_shard
from fmct.preprocess import PreprocessConfig
from fmct.store import ScanStore


def _rows(store):
    df = store.manifest
    assert all(s.startswith("in/") for s in df.source), list(df.source)  # relative to the input root
    return {r.source.removeprefix("in/"): r for r in df.itertuples()}


def test_ingest_end_to_end(inputs, tmp_path):
    out = tmp_path / "store"
    summary = ingest([inputs], out)
    assert (summary.ok, summary.skipped, summary.failed, summary.present) == (2, 2, 1, 0)
    assert summary.exit_code() == 0 and summary.exit_code(strict=True) == 1
    assert summary.line().startswith("ingested 2 ok, 2 skipped, 1 failed -> ")
    assert str(out / "manifest.parquet") in summary.line()
    store = ScanStore(out)
    rows = _rows(store)
    assert set(rows) == {"head_a.nii.gz", "sub/head_b.nii.gz", "bad_nan.nii.gz", "thin.nii.gz", "notes.txt"}
    assert rows["bad_nan.nii.gz"].status == "failed" and "NaN" in rows["bad_nan.nii.gz"].reason
    assert rows["thin.nii.gz"].status == "skipped" and "slices" in rows["thin.nii.gz"].reason
    assert rows["notes.txt"].status == "skipped" and "DICOM" in rows["notes.txt"].reason
    assert store.scan_ids == ["head_a", "head_b"]
    b = rows["sub/head_b.nii.gz"]
    assert list(b.source_spacing_mm) == pytest.approx([0.9, 0.9, 2.5])
    assert list(b.spacing_mm) == [1.0, 1.0, 1.0] and b.patient_id.startswith("p-") and b.seconds > 0
    for sid in store.scan_ids:
        vol = store.load(sid)
        assert vol.array.dtype == np.int16 and list(vol.shape) == list(
            rows[f"{'sub/' if sid == 'head_b' else ''}{sid}.nii.gz"].shape
        )
        assert np.allclose(vol.affine[:3, :3], np.eye(3))
        # the ball (radius 18 mm) is cropped with a 5 mm margin (46 mm)
        assert all(30 <= s <= 50 for s in vol.shape), vol.shape  # head_b: FOV cuts the ball in x, y
    assert store.preprocess_config == PreprocessConfig().to_dict()


def test_rerun_skips_what_is_stored(inputs, tmp_path):
    out = tmp_path / "store"
    ingest([inputs], out)
    npy = out / "scans" / "head_a.npy"
    before = npy.stat().st_mtime_ns
    again = ingest([inputs], out)
    assert (again.ok, again.present, again.failed, again.skipped) == (0, 2, 1, 2)
    assert again.exit_code() == 0 and "2 already present" in again.line()
    assert npy.stat().st_mtime_ns == before
    assert len(ScanStore(out).manifest) == 5


def test_killed_run_is_cleaned_up_on_rerun(inputs, tmp_path):
    out = tmp_path / "store"
    ingest([inputs], out)
    scans = out / "scans"
    # what `kill -9` can leave: a half-written tmp file, a scan whose .json never got written
    (scans / "head_a.npy.999-deadbeef.tmp").write_bytes(b"\x93NUMPY partial")
    (out / "records" / "head_b.json.999-deadbeef.tmp").write_text("{")
    (scans / "head_b.json").unlink()
    (scans / "orphan.npy").write_bytes(b"partial")
    summary = ingest([inputs], out)
    assert summary.cleaned == 4  # two .tmp files, head_b.npy without its .json, orphan.npy
    assert not list(out.rglob("*.tmp")) and not (scans / "orphan.npy").exists()
    assert (summary.ok, summary.present) == (1, 1)  # head_b re-done, head_a kept
    store = ScanStore(out)
    assert store.scan_ids == ["head_a", "head_b"]
    assert store.manifest["key"].is_unique and len(store.manifest) == 5
    assert store.load("head_b").shape == tuple(store.manifest.set_index("scan_id").loc["head_b", "shape"])


def test_shards_partition_the_inputs(inputs, tmp_path):
    full = ingest([inputs], tmp_path / "full")
    keys = {r["key"] for r in full.rows}
    out = tmp_path / "sharded"
    seen = []
    for k in (1, 2, 3):
        s = ingest([inputs], out, shard=(k, 3))
        seen.append({r["key"] for r in s.rows})
        assert all(in_shard(key, (k, 3)) for key in seen[-1])
    assert sum(len(s) for s in seen) == len(keys) and set().union(*seen) == keys
    merged = ScanStore(out).manifest
    assert sorted(merged["key"]) == sorted(keys)  # the last shard's manifest covers every record


def test_parse_shard():
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    for bad in ("0/4", "5/4", "a/b", "3"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_parallel_workers_match_in_process(inputs, tmp_path):
    one = ingest([inputs], tmp_path / "one", workers=1)
    two = ingest([inputs], tmp_path / "two", workers=2)
    a, b = ScanStore(tmp_path / "one"), ScanStore(tmp_path / "two")
    assert (one.ok, one.skipped, one.failed) == (two.ok, two.skipped, two.failed)
    cols = ["key", "status", "reason", "shape"]
    assert a.manifest[cols].astype(str).equals(b.manifest[cols].astype(str))
    for sid in a.scan_ids:
        assert np.array_equal(a.load(sid).array, b.load(sid).array)


def test_nothing_ingestable_and_other_preprocessing(tmp_path, head_writer):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    s = ingest([tmp_path / "junk"], tmp_path / "store")
    assert s.exit_code() == 1 and s.skipped == 1
    with pytest.raises(ValueError, match="different preprocessing"):
        ingest([tmp_path / "junk"], tmp_path / "store", cfg=PreprocessConfig(spacing=2.0))
    assert os.path.exists(tmp_path / "store" / "manifest.parquet")


def test_store_inside_the_input_folder_is_not_ingested(inputs):
    out = inputs / "store"
    ingest([inputs], out)
    again = ingest([inputs], out)
    assert len(again.rows) == 5 and len(ScanStore(out).manifest) == 5
