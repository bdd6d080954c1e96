"""Where models run: the one device resolver of every command (``--device``) and the inference precision.

``auto`` is the GPU when ``torch.cuda.is_available()``, else the CPU; ``cpu``, ``cuda`` and ``cuda:N`` are taken
as asked, and asking for a GPU that is not there is an error (:class:`DeviceUnavailable`), never a silent
fall-back to the CPU. Inference (embedding, prediction) runs under bf16 autocast on CUDA; CPUs always compute in
fp32 (on CPUs without bf16 units bf16 is ~3x slower), so CPU results do not depend on this module. Training
(fine-tuning, attentive probes) and saliency gradients stay in fp32 on every device.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported on use: the CLI reads DEVICE_CHOICES for its --help
    import torch

#: What ``--device`` accepts, for help texts and error messages.
DEVICE_CHOICES = "auto (the GPU when one is visible, else the CPU), cpu, cuda or cuda:N"

_SPEC = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


class DeviceUnavailable(ValueError):
    """A device was asked for that this machine does not have (``cuda`` without a visible GPU, ``cuda:3`` on
    a machine with two)."""


def resolve_device(spec: str | torch.device | None = "auto", local_rank: int | None = None) -> torch.device:
    """The ``torch.device`` a ``--device`` value names.

    Args:
        spec: ``"auto"`` (or None), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, or a ``torch.device``.
        local_rank: the GPU that ``auto`` / ``cuda`` without an index mean (a ``torchrun`` process's
            ``LOCAL_RANK``); default: GPU 0.

    Raises:
        DeviceUnavailable: ``cuda`` asked for without a visible GPU, or a GPU index that is not there.
        ValueError: anything else than the forms above.
    """
    import torch

    text = "auto" if spec is None else str(spec).strip().lower()
    m = _SPEC.match(text)
    if m is None or (m.group(1) != "cuda" and m.group(2) is not None):
        raise ValueError(f"unknown device {str(spec)!r}: use {DEVICE_CHOICES}")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu" or (kind == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceUnavailable(
            f"{text!r} asked for but no CUDA GPU is visible (torch.cuda.is_available() is False); "
            "use 'cpu' or 'auto'"
        )
    n = torch.cuda.device_count()
    i = int(index) if index is not None else int(local_rank or 0)
    if i >= n:
        raise DeviceUnavailable(
            f"'cuda:{i}' asked for but this machine shows {n} CUDA GPU{'s' if n != 1 else ''} "
            f"(cuda:0{f' to cuda:{n - 1}' if n > 1 else ''})"
        )
    return torch.device("cuda", i)


def module_device(module: Any) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for one that has none)."""
    import torch

    if hasattr(module, "parameters"):
        for t in itertools.chain(module.parameters(), module.buffers()):
            return t.device
    return torch.device("cpu")


def place(module: Any, device: str | torch.device | None) -> torch.device:
    """Move ``module`` to ``device`` (resolved with :func:`resolve_device`; None leaves it where it is) and
    return the device it is on."""
    if device is not None and hasattr(module, "to"):
        module.to(resolve_device(device))
    return module_device(module)


def inference_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for inference on CUDA; nothing (fp32) on the CPU (see :mod:`fmct.train.precision`)."""
    from fmct.train.precision import autocast, resolve_precision

    return autocast(resolve_precision("auto", device), device)
