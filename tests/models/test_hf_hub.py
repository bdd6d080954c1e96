"""The Hugging Face Hub side of model directories: which names are repo ids, and the one-sentence messages of
``push_to_hub`` when there is no token or no network (there is no network to the Hub in the tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmct.models.hf_hub import HubPushError, is_repo_id, push_model_dir
from fmct.models.hub import ClassifierModel


@pytest.fixture
def no_token(monkeypatch, tmp_path: Path):
    """No Hugging Face token: none in the environment, no token file."""
    from huggingface_hub import constants

    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def clf(tiny_vit, preprocessing) -> ClassifierModel:
    return ClassifierModel.from_backbone(
        tiny_vit, ["ich", "sdh"], preprocessing=preprocessing, name="tiny-hub"
    )


def test_repo_ids_and_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert is_repo_id("owner/name") and is_repo_id("org-1/fmct.vit_b")
    (tmp_path / "runs" / "clf").mkdir(parents=True)
    assert not is_repo_id("runs/clf")  # an existing local path is a path
    for text in ("clf", "runs/ssl/model", "./a/b", "/abs/path", "a/b..c", "a--b/c", "owner/name.git", "a/"):
        assert not is_repo_id(text), text


def test_push_without_a_token_says_how_to_log_in(clf, no_token, tmp_path: Path) -> None:
    with pytest.raises(HubPushError) as e:
        clf.push_to_hub("someone/tiny-hub")
    assert str(e.value) == (
        "cannot push to someone/tiny-hub: no Hugging Face token (log in with `hf auth login` or set HF_TOKEN)"
    )
    # save_pretrained(push_to_hub=True) saves first, then says the same
    with pytest.raises(HubPushError, match="no Hugging Face token"):
        clf.save_pretrained(tmp_path / "tiny-hub", push_to_hub=True)
    assert sorted(p.name for p in (tmp_path / "tiny-hub").iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]


def test_push_offline_or_unreachable_is_one_sentence(clf, no_token, monkeypatch, tmp_path: Path) -> None:
    from huggingface_hub import constants

    model_dir = clf.save_pretrained(tmp_path / "m")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubPushError, match=r"^cannot push to a/b: HF_HUB_OFFLINE is set"):
        push_model_dir(model_dir, "a/b", token="hf_fake")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(HubPushError, match="not a complete model directory"):
        push_model_dir(tmp_path, "a/b", token="hf_fake")
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(HubPushError) as e:
        push_model_dir(model_dir, "a/b", token="hf_fake")
    assert str(e.value).startswith("cannot push to a/b: the Hugging Face Hub could not be reached (")
    assert "\n" not in str(e.value)
