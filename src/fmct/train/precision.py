"""Mixed precision policy: bf16 autocast on CUDA, fp32 on CPU (bf16 is ~3x slower on CPUs without bf16 units)."""

from __future__ import annotations

import contextlib

import torch


def resolve_precision(setting: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` on CUDA, ``fp32`` elsewhere; ``fp32``/``bf16`` are kept as asked."""
    if setting not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {setting!r}")
    if setting == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return setting


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast context for the forward pass (a no-op for fp32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
