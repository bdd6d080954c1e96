import json

import numpy as np
import pytest

from fmct.io.volume import Volume
from fmct.store import MANIFEST_COLUMNS, ScanStore, build_manifest, write_scan
from fmct.store.manifest import make_row, write_record
from fmct.store.writer import atomic_write_json, target_of_tmp, write_store_info
from fmct.store.writer import tmp_path as make_tmp_path


def _vol():
    arr = (np.arange(4 * 5 * 6).reshape(4, 5, 6) - 60).astype(np.int16)
    aff = np.diag([1.0, 1.0, 1.0, 1.0])
    aff[:3, 3] = [-2.0, 3.5, 10.0]
    return Volume(
        arr, aff, {"source_kind": "nifti", "preprocess": {"spacing": 1.0, "crop_box": [[0, 4]] * 3}}
    )


def test_write_and_read_a_scan(tmp_path):
    write_store_info(tmp_path, {"spacing": 1.0})
    write_scan(tmp_path, "s-1", _vol(), {"spacing": 1.0})
    write_record(tmp_path, make_row(key="s-1", scan_id="s-1", status="ok", reason="", source="x.nii"))
    write_record(tmp_path, make_row(key="r-9", status="skipped", reason="not a DICOM file", source="y.txt"))
    build_manifest(tmp_path)
    assert not list(tmp_path.rglob("*.tmp"))
    store = ScanStore(tmp_path)
    assert list(store.manifest.columns) == MANIFEST_COLUMNS and len(store.manifest) == 2
    assert store.scan_ids == ["s-1"] and "s-1" in store and len(store) == 1
    vol = store.load("s-1")
    assert vol.array.dtype == np.int16 and np.array_equal(vol.array, _vol().array)
    assert np.allclose(vol.affine, _vol().affine)
    assert vol.meta["scan_id"] == "s-1" and vol.meta["preprocess"]["crop_box"] == [[0, 4]] * 3
    assert store.meta("s-1")["shape"] == [4, 5, 6]
    assert store.preprocess_config == {"spacing": 1.0}
    assert np.array_equal(store.load("s-1", mmap=True).array, vol.array)
    with pytest.raises(KeyError):
        store.load("s-2")


def test_ok_row_without_files_is_reported_failed(tmp_path):
    write_record(tmp_path, make_row(key="s-1", scan_id="s-1", status="ok", reason="", source="x.nii"))
    build_manifest(tmp_path)
    store = ScanStore(tmp_path)
    assert store.scan_ids == []
    assert store.manifest.loc[0, "status"] == "failed" and "missing" in store.manifest.loc[0, "reason"]


def test_store_refuses_other_preprocessing(tmp_path):
    write_store_info(tmp_path, {"spacing": 1.0, "deface": False})
    write_store_info(tmp_path, {"spacing": 1.0, "deface": False})  # same: fine
    with pytest.raises(ValueError, match="spacing"):
        write_store_info(tmp_path, {"spacing": 2.0, "deface": False})


def test_atomic_json_and_tmp_names(tmp_path):
    p = tmp_path / "a" / "r.json"
    atomic_write_json(p, {"x": np.float32(1.5), "y": np.arange(2)})
    assert json.loads(p.read_text()) == {"x": 1.5, "y": [0, 1]}
    t = make_tmp_path(p)
    assert t.parent == p.parent and t.name.endswith(".tmp") and target_of_tmp(t) == p


def test_not_a_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an fmct store"):
        ScanStore(tmp_path / "nope")
