"""Model directories on the Hugging Face Hub: download by repo id, push a directory.

A repo id is ``owner/name`` (exactly one ``/``) that names no local path. Downloads go through
``huggingface_hub.snapshot_download`` into the Hub cache (``HF_HOME``), fetching only ``config.json``,
``model.safetensors`` and ``README.md``: a repository's pickle files are never downloaded. Both directions fail
with one sentence (:class:`ModelUnavailable`, :class:`HubPushError`) when the Hub cannot be reached
(``HF_HUB_OFFLINE=1``, no network), the repository is missing or private, or no token is set.

Why not ``huggingface_hub.PyTorchModelHubMixin``: it rebuilds a model by passing config.json to ``__init__``
(ours are rebuilt from the ``architecture`` entry), fetches config.json before a subclass can translate an
offline error, and writes files in place. fmct's classes keep its call conventions instead:
``from_pretrained(dir_or_repo_id, revision=, token=, cache_dir=, local_files_only=, force_download=)``,
``save_pretrained(dir, push_to_hub=, repo_id=)``, ``push_to_hub(repo_id, private=, token=, branch=,
create_pr=, commit_message=)``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: The files of a model directory (fmct.models.hub writes exactly these).
MODEL_FILES = ("config.json", "model.safetensors", "README.md")

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class ModelUnavailable(FileNotFoundError):
    """A model given by repo id could not be downloaded (offline, no network, no such repository)."""


class HubPushError(RuntimeError):
    """A model directory could not be pushed (no token, offline, no network, refused by the Hub)."""


def is_repo_id(text: str | Path) -> bool:
    """Whether ``text`` reads as a Hub repo id (``owner/name``) and names no local file or folder."""
    s = str(text)
    if Path(s).expanduser().exists() or not _REPO_ID.match(s) or ".." in s or "--" in s:
        return False
    return not s.endswith(".git")


def _offline() -> bool:
    from huggingface_hub import constants

    check = getattr(constants, "is_offline_mode", None)  # newer huggingface_hub; older ones: the constant
    return bool(check() if check else constants.HF_HUB_OFFLINE)


def download_model(
    repo_id: str,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> Path:
    """The local folder (in the Hub cache) holding ``repo_id``'s model files; cached files are reused offline.

    Raises:
        ModelUnavailable: one sentence saying why the repository could not be had.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{repo_id}" + (f" (revision {revision})" if revision else "")
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            force_download=force_download,
            allow_patterns=list(MODEL_FILES),
            library_name="fmct",
        )
    except LocalEntryNotFoundError:
        why = (
            "HF_HUB_OFFLINE is set"
            if _offline()
            else "only local files were allowed"
            if local_files_only
            else "the Hugging Face Hub could not be reached"
        )
        raise ModelUnavailable(
            f"{where}: no such model directory, and the Hugging Face Hub repository is not in the local cache "
            f"while {why}"
        ) from None
    except GatedRepoError:
        raise ModelUnavailable(
            f"{where}: the Hugging Face Hub repository is gated; accept its terms and log in"
        ) from None
    except RevisionNotFoundError:
        raise ModelUnavailable(f"{where}: the Hugging Face Hub repository has no such revision") from None
    except RepositoryNotFoundError:
        raise ModelUnavailable(
            f"{where}: no such model directory, and no such Hugging Face Hub repository (or it is private: "
            "log in with `hf auth login` or set HF_TOKEN)"
        ) from None
    except (HfHubHTTPError, OSError) as e:
        raise ModelUnavailable(
            f"{where}: download from the Hugging Face Hub failed ({type(e).__name__})"
        ) from None
    folder_path = Path(folder)
    if not (folder_path / "config.json").is_file():
        raise ModelUnavailable(
            f"{where}: the Hugging Face Hub repository holds no fmct model (no config.json)"
        )
    return folder_path


def push_model_dir(
    model_dir: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    branch: str | None = None,
    create_pr: bool = False,
    commit_message: str = "Upload fmct model",
) -> str:
    """Upload a model directory's files to ``repo_id`` (created when missing) in one commit; returns its URL.

    Raises:
        HubPushError: one sentence: no token, offline, the Hub unreachable or refusing the upload.
    """
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    if _offline():
        raise HubPushError(
            f"cannot push to {repo_id}: HF_HUB_OFFLINE is set (the Hugging Face Hub is not reachable)"
        )
    token = token or get_token()
    if not token:
        raise HubPushError(
            f"cannot push to {repo_id}: no Hugging Face token (log in with `hf auth login` or set HF_TOKEN)"
        )
    missing = [f for f in MODEL_FILES if not (Path(model_dir) / f).is_file()]
    if missing:
        raise HubPushError(f"cannot push {model_dir}: not a complete model directory (missing {missing})")
    api = HfApi(token=token, library_name="fmct")
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        info: Any = api.upload_folder(
            repo_id=repo,
            folder_path=str(model_dir),
            allow_patterns=list(MODEL_FILES),
            commit_message=commit_message,
            revision=branch,
            create_pr=create_pr,
        )
    except HfHubHTTPError as e:  # the Hub answered: bad token, no write access, ...
        raise HubPushError(
            f"cannot push to {repo_id}: the Hugging Face Hub refused it ({_first_line(e)})"
        ) from None
    except Exception as e:  # httpx connection errors, timeouts, OSError: the Hub could not be reached
        raise HubPushError(
            f"cannot push to {repo_id}: the Hugging Face Hub could not be reached ({_first_line(e)})"
        ) from None
    return str(getattr(info, "commit_url", info))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
