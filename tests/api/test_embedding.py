"""``fmct.embed``: a DataFrame of embeddings, the same numbers as ``fmct embed`` writes, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import fmct
from fmct.api import UsageError
from fmct.cli import app
from fmct.evaluate.embed import load_embeddings


def test_embed_returns_one_row_per_scan_like_the_cli(
    labelled_store, backbone_dir: Path, tmp_path: Path
) -> None:
    store, _ = labelled_store
    df = fmct.embed(backbone_dir, store, progress=False)
    assert df.index.name == "scan_id" and len(df) == 40 and df.attrs["path"] is None
    assert list(df.columns) == ["cls", "mean_patch", "brain_max", "brain_stats"]
    assert np.stack(df["brain_stats"]).shape == (40, 48)
    assert np.stack(df["cls"]).shape == (40, 16) and np.stack(df["cls"]).dtype == np.float32
    assert df.attrs["meta"]["model"] == str(backbone_dir) and df.attrs["meta"]["input_size"] == 16

    out = tmp_path / "emb.parquet"
    r = CliRunner().invoke(
        app, ["embed", "--model", str(backbone_dir), "--data", str(store), "--out", str(out)]
    )
    assert r.exit_code == 0 and f"wrote {out}: 40 scans, dim 16" in r.output, r.output
    emb = load_embeddings(out)
    assert list(df.index) == emb.scan_ids and emb.patch is not None
    for col in ("cls", "mean_patch", "brain_max", "brain_stats"):
        np.testing.assert_allclose(np.stack(df[col]), getattr(emb, col), rtol=1e-5, atol=1e-6)

    # a loaded model gives the same; an out file keeps them (without patch tokens when asked)
    kept = fmct.embed(
        fmct.load_model(backbone_dir), store, tmp_path / "k.parquet", keep_patch=False, progress=False
    )
    assert (
        kept.attrs["path"] == str(tmp_path / "k.parquet")
        and load_embeddings(kept.attrs["path"]).patch is None
    )
    np.testing.assert_allclose(np.stack(kept["cls"]), np.stack(df["cls"]), rtol=1e-5, atol=1e-6)


def test_embed_errors(labelled_store, backbone_dir: Path, tmp_path: Path) -> None:
    store, _ = labelled_store
    with pytest.raises(FileNotFoundError, match="not an fmct store"):
        fmct.embed(backbone_dir, tmp_path)
    with pytest.raises(UsageError, match=r"must be a \.parquet file"):
        fmct.embed(backbone_dir, store, tmp_path / "emb.csv")
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        fmct.embed(tmp_path / "missing", store)
    r = CliRunner().invoke(
        app, ["embed", "-m", str(backbone_dir), "-d", str(store), "-o", str(tmp_path / "e.csv")]
    )
    assert r.exit_code == 2 and "fmct embed: " in r.output and ".parquet" in r.output
