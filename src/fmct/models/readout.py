"""The readouts of a backbone's tokens: one list of names for embed, probe, evaluate, the model directory,
predict and retrieve.

- ``brain_max``: the max over the patch tokens inside the cranial cavity (the default: it reads the brain,
  not the head's shape and pose; docs/results.md "Reading the brain, not the head");
- ``brain_stats``: the mean, the standard deviation (population) and the max over the same patch tokens,
  concatenated (3D wide);
- ``cls``: the class token; ``mean_patch``: the mean of the patch tokens; ``cls+mean``: both, concatenated.

Model directories written before this module used ``mean`` for ``mean_patch``; :func:`canonical_readout`
still reads it.
"""

from __future__ import annotations

from typing import Any

import torch

from fmct.preprocess.brain_mask import brain_max_tokens, brain_stats_tokens

#: Every readout name, the default first.
READOUTS: tuple[str, ...] = ("brain_max", "cls", "mean_patch", "cls+mean", "brain_stats")
DEFAULT_READOUT = READOUTS[0]
#: The readouts pooled over the patches inside the cranial cavity: they need the patches' intracranial
#: fractions, and embeddings files store each as a column of its own.
BRAIN_READOUTS: tuple[str, ...] = ("brain_max", "brain_stats")
#: Feature width of each readout, in token widths D.
_WIDTH = {"brain_max": 1, "cls": 1, "mean_patch": 1, "cls+mean": 2, "brain_stats": 3}
#: Older names still accepted.
ALIASES = {"mean": "mean_patch"}


def canonical_readout(name: str) -> str:
    """The readout's name in :data:`READOUTS` (an alias mapped); ``ValueError`` naming the choices else."""
    name = ALIASES.get(name, name)
    if name not in READOUTS:
        raise ValueError(f"unknown readout {name!r}; use one of {', '.join(READOUTS)}")
    return name


def pool_tokens(out: dict[str, Any], readout: str, brain_fractions: Any = None) -> Any:
    """``forward_features`` output -> ``(B, F)`` torch features (differentiable): ``cls`` / ``mean_patch`` /
    ``brain_max`` (D), ``cls+mean`` (2D) or ``brain_stats`` (3D). The :data:`BRAIN_READOUTS` need the
    patches' ``(B, N)`` intracranial fractions (:func:`fmct.preprocess.brain_mask.input_patch_fractions`)."""

    readout = canonical_readout(readout)
    if readout in BRAIN_READOUTS:
        if brain_fractions is None:
            raise ValueError(f"the {readout} readout needs the patches' intracranial fractions")
        pool = brain_max_tokens if readout == "brain_max" else brain_stats_tokens
        return pool(out["patch"], brain_fractions)
    if readout == "cls":
        return out["cls"]
    mean = out["patch"].mean(1)
    return mean if readout == "mean_patch" else torch.cat([out["cls"], mean], dim=-1)


def readout_width(readout: str, dim: int) -> int:
    """Feature width of ``readout`` for tokens of width ``dim``."""
    return _WIDTH[canonical_readout(readout)] * dim
