"""Public entry points re-exported as ``fmct.load_model``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fmct.models.hub import BackboneModel, ClassifierModel


def load_model(path: str | Path, map_location: str = "cpu") -> BackboneModel | ClassifierModel:
    """Load an fmct model directory (config.json + model.safetensors + README.md), in eval mode.

    Returns a ``BackboneModel`` (``.embed(x)``) or a ``ClassifierModel`` (``.predict(path)``) on
    ``map_location``: ``"cpu"`` (default), ``"auto"`` (the GPU when one is visible), ``"cuda"`` or ``"cuda:N"``.
    Pickle weights (``.bin``/``.pt``/``.pkl``) are refused.
    """
    from fmct.models.hub import load_model as _load

    return _load(path, map_location=map_location)
