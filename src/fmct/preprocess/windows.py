"""HU → windowed channels in ``[0, 1]`` (DESIGN.md: brain, subdural, bone)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

#: Default (level, width) windows in HU, channel order fixed: brain, subdural, bone.
DEFAULT_WINDOWS: tuple[tuple[float, float], ...] = ((40.0, 80.0), (80.0, 200.0), (600.0, 2800.0))


def apply_windows(hu, windows: Sequence[Sequence[float]] = DEFAULT_WINDOWS):
    """Map HU to one channel per window, clipped to ``[0, 1]``.

    Args:
        hu: array or tensor of any shape ``S`` (HU).
        windows: sequence of ``(level, width)`` in HU.

    Returns:
        ``float32`` array/tensor of shape ``(len(windows), *S)``; same kind as ``hu``.
    """
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported; numpy callers skip it
    if torch is not None and isinstance(hu, torch.Tensor):
        x = hu.float()
        chans = [((x - (lv - w / 2.0)) / w).clamp_(0.0, 1.0) for lv, w in windows]
        return torch.stack(chans, 0)
    x = np.asarray(hu, dtype=np.float32)
    return np.stack([np.clip((x - (lv - w / 2.0)) / w, 0.0, 1.0) for lv, w in windows], 0).astype(np.float32)
