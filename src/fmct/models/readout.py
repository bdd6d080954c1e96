"""The readouts of a backbone's tokens: one list of names for embed, probe, evaluate, the model directory,
predict and retrieve.

- ``brain_max``: the max over the patch tokens inside the cranial cavity (the default: it reads the brain,
  not the head's shape and pose; docs/results.md "Reading the brain, not the head");
- ``cls``: the class token; ``mean_patch``: the mean of the patch tokens; ``cls+mean``: both, concatenated.

Model directories written before this module used ``mean`` for ``mean_patch``; :func:`canonical_readout`
still reads it.
"""

from __future__ import annotations

from typing import Any

#: Every readout name, the default first.
READOUTS: tuple[str, ...] = ("brain_max", "cls", "mean_patch", "cls+mean")
DEFAULT_READOUT = READOUTS[0]
#: Older names still accepted.
ALIASES = {"mean": "mean_patch"}


def canonical_readout(name: str) -> str:
    """The readout's name in :data:`READOUTS` (an alias mapped); ``ValueError`` naming the choices else."""
    name = ALIASES.get(name, name)
    if name not in READOUTS:
        raise ValueError(f"unknown readout {name!r}; use one of {', '.join(READOUTS)}")
    return name


def pool_tokens(out: dict[str, Any], readout: str, brain_fractions: Any = None) -> Any:
    """``forward_features`` output -> ``(B, F)`` torch features: ``cls`` / ``mean_patch`` / ``brain_max`` (D)
    or ``cls+mean`` (2D). ``brain_max`` needs the patches' ``(B, N)`` intracranial fractions
    (:func:`fmct.preprocess.brain_mask.input_patch_fractions`)."""
    import torch

    readout = canonical_readout(readout)
    if readout == "brain_max":
        from fmct.preprocess.brain_mask import brain_max_tokens

        if brain_fractions is None:
            raise ValueError("the brain_max readout needs the patches' intracranial fractions")
        return brain_max_tokens(out["patch"], brain_fractions)
    if readout == "cls":
        return out["cls"]
    mean = out["patch"].mean(1)
    return mean if readout == "mean_patch" else torch.cat([out["cls"], mean], dim=-1)


def readout_width(readout: str, dim: int) -> int:
    """Feature width of ``readout`` for tokens of width ``dim``."""
    return 2 * dim if canonical_readout(readout) == "cls+mean" else dim
