"""``fmct.load_model``: a directory, a Hugging Face Hub repo id (from the Hub cache, offline), and the one
sentence a user gets when a repo id cannot be downloaded."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import fmct
from fmct.models.hf_hub import ModelUnavailable
from fmct.models.hub import ClassifierModel


@pytest.fixture
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1 as huggingface_hub reads it (the environment variable is read at its import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def hub_cache(cache: Path, repo_id: str, model_dir: Path) -> Path:
    """Lay ``model_dir`` out in the Hub cache as ``snapshot_download`` leaves a downloaded repository."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(model_dir, repo / "snapshots" / commit)
    return cache


def test_load_model_from_a_directory_or_a_cached_repo_id(
    classifier_dir: Path, tmp_path: Path, offline
) -> None:
    local = fmct.load_model(classifier_dir)
    assert isinstance(local, ClassifierModel) and not local.training
    cache = hub_cache(tmp_path / "hub", "someone/tiny-api", classifier_dir)
    remote = fmct.load_model("someone/tiny-api", cache_dir=cache)
    x = torch.rand(1, 3, 32, 32, 32)
    assert isinstance(remote, ClassifierModel) and torch.equal(remote(x), local(x))
    again = ClassifierModel.from_pretrained("someone/tiny-api", cache_dir=cache, local_files_only=True)
    assert torch.equal(again(x), local(x))


def test_an_unavailable_repo_id_is_one_sentence(tmp_path: Path, offline) -> None:
    with pytest.raises(ModelUnavailable) as e:
        fmct.load_model("someone/not-cached", cache_dir=tmp_path)
    msg = str(e.value)
    assert msg.startswith("someone/not-cached: no such model directory") and "HF_HUB_OFFLINE is set" in msg
    assert "\n" not in msg and e.value.__cause__ is None and isinstance(e.value, FileNotFoundError)
    # a path with more than one folder level is never taken for a repo id: the local error stays
    with pytest.raises(FileNotFoundError, match="runs/x/model: no such model directory"):
        fmct.load_model("runs/x/model")


def test_the_cli_says_it_in_one_line_without_a_traceback(tiny_store: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    args = [
        "embed",
        "--model",
        "someone/fmct-model",
        "--data",
        str(tiny_store),
        "--out",
        str(tmp_path / "e.parquet"),
    ]
    r = subprocess.run(
        [sys.executable, "-m", "fmct", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == [
        "fmct embed: someone/fmct-model: no such model directory, and the Hugging Face Hub repository is not in "
        "the local cache while HF_HUB_OFFLINE is set"
    ], r.stderr
