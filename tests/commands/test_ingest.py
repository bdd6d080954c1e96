import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from fmct.cli import app


def _head(path, nan=False):
    shape = (40, 40, 20)
    aff = np.diag([1.1, 1.1, 2.0, 1.0])
    aff[:3, 3] = [-22.0, -22.0, -19.0]
    idx = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij"), -1)
    world = idx @ aff[:3, :3].T + aff[:3, 3]
    hu = np.where((world**2).sum(-1) < 16.0**2, 40.0, -1000.0).astype(np.float32)
    if nan:
        hu[0, 0, 0] = np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(hu, aff), str(path))
    return path


@pytest.fixture
def data(tmp_path):
    _head(tmp_path / "in" / "a.nii.gz")
    _head(tmp_path / "in" / "nested" / "b.nii")
    _head(tmp_path / "broken.nii.gz", nan=True)
    (tmp_path / "in" / "README").write_text("hello")
    return tmp_path


def test_ingest_command(data):
    out = data / "store"
    res = CliRunner().invoke(
        app, ["ingest", str(data / "in"), str(data / "broken.nii.gz"), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert f"ingested 2 ok, 1 skipped, 1 failed -> {out / 'manifest.parquet'}" in res.output
    from fmct.store import ScanStore

    assert ScanStore(out).scan_ids == ["a", "b"]
    # --strict turns the failed NaN scan into a non-zero exit; everything else is already present
    res = CliRunner().invoke(
        app, ["ingest", str(data / "in"), str(data / "broken.nii.gz"), "-o", str(out), "--strict"]
    )
    assert res.exit_code == 1 and "2 already present" in res.output


def test_ingest_command_errors(data):
    run = CliRunner().invoke
    res = run(app, ["ingest", str(data / "missing"), "--out", str(data / "s")])
    assert res.exit_code == 2 and "no such file or folder" in res.output
    res = run(app, ["ingest", str(data / "in"), "--out", str(data / "s"), "--shard", "5/4"])
    assert res.exit_code == 2 and "shard" in res.output
    res = run(app, ["ingest", str(data / "broken.nii.gz"), "--out", str(data / "s")])
    assert res.exit_code == 1 and "nothing was ingested" in res.output
    res = run(app, ["ingest", str(data / "in"), "--out", str(data / "s"), "--spacing", "2"])
    assert res.exit_code == 2 and "different preprocessing" in res.output


def test_ingest_help_lists_options():
    res = CliRunner().invoke(app, ["ingest", "--help"])
    assert res.exit_code == 0
    for opt in ("--out", "--workers", "--shard", "--spacing", "--deface", "--strict", "--min-slices"):
        assert opt in res.output
