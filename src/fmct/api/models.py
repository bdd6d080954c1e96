"""``fmct.load_model``: a model directory or a Hugging Face Hub repo id -> a model in eval mode."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fmct.models.hub import BackboneModel, ClassifierModel


def load_model(
    dir_or_repo_id: str | Path, map_location: str = "cpu", **hub_kwargs: Any
) -> BackboneModel | ClassifierModel:
    """Load an fmct model (config.json + model.safetensors + README.md), in eval mode.

    Args:
        dir_or_repo_id: a model directory, or a Hugging Face Hub repo id ``owner/name`` (downloaded into the
            Hub cache; reused offline once cached).
        map_location: ``"cpu"`` (default), ``"auto"`` (the GPU when one is visible), ``"cuda"`` or ``"cuda:N"``.
        hub_kwargs: ``revision``, ``token``, ``cache_dir``, ``local_files_only``, ``force_download`` for a repo id.

    Returns:
        A ``BackboneModel`` (``.embed(x)``) or a ``ClassifierModel`` (``.predict(path)``).

    Raises:
        FileNotFoundError: no such directory, or the repo id could not be downloaded (one sentence saying why:
            HF_HUB_OFFLINE set, no network, no such repository).
        ValueError: pickle weights (refused: they can run code when loaded) or an invalid directory.
    """
    from fmct.models.hub import load_model as _load

    return _load(dir_or_repo_id, map_location=map_location, **hub_kwargs)
