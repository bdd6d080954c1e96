"""Export a classifier to TorchScript (or ONNX when the ``onnx`` package is installed).

The exported graph is backbone + head + sigmoid: ``(B, C, S, S, S)`` windowed input in ``[0, 1]`` ->
``(B, L)`` probabilities. Preprocessing (reading, 1 mm resampling, head crop, windows, cube resize)
stays outside the graph; its parameters and the label names are stored next to it (TorchScript: in the
archive's ``extra/fmct.json``; ONNX: in the model's ``metadata_props``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMATS: tuple[str, ...] = ("torchscript", "onnx")
EXTRA_NAME = "fmct.json"


class ProbabilityModel(nn.Module):
    """``(B, C, S, S, S) -> (B, L)`` sigmoid probabilities of a classifier's logits."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.classifier(x))


def example_input(model: Any, batch: int = 1) -> torch.Tensor:
    """A random ``(batch, C, S, S, S)`` input matching the model's preprocessing."""
    pre = getattr(model, "preprocessing", {}) or {}
    size = int(pre.get("input_size") or model.input_size)
    channels = len(pre.get("windows") or ()) or int(getattr(model.backbone.config, "in_chans", 3))
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, channels, size, size, size, generator=g)


def export_metadata(model: Any) -> dict[str, Any]:
    """Labels, preprocessing, model name and I/O description stored with the export."""
    return {
        "name": getattr(model, "name", None),
        "labels": list(model.labels),
        "preprocessing": getattr(model, "preprocessing", {}),
        "input": "float32 (B, C, S, S, S) windowed HU in [0, 1], RAS+ cube (fmct.preprocess.model_input)",
        "output": "float32 (B, L) sigmoid probabilities, columns = labels",
    }


def check_exportable(model: Any) -> None:
    """Raise ``ValueError`` for a classifier whose forward pass leaves the torch graph.

    A brain-readout head (``brain_max``, ``brain_stats``) finds the cranial cavity of each input with scipy
    (a connected-component mask, :mod:`fmct.preprocess.brain_mask`): a traced or ONNX graph would freeze the
    mask of the example input and silently apply it to every scan.
    """
    from fmct.models.readout import BRAIN_READOUTS

    head = getattr(model, "head_config", {}) or {}
    if head.get("pooling") in BRAIN_READOUTS:
        raise ValueError(
            f"a {head['pooling']} classifier cannot be exported: its cranial-cavity mask is computed outside "
            "the torch graph; use it through fmct predict / fmct.load_model, or export a classifier saved "
            "with --feature cls, mean_patch or cls+mean"
        )


def _tmp_next_to(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    return Path(tmp)


def export_torchscript(model: Any, out: str | Path, check: bool = True) -> Path:
    """Trace ``model`` (a ClassifierModel) with ``torch.jit.trace`` and save it atomically.

    With ``check``, the traced module is run on a batch of 2 and compared to the eager model
    (max abs difference <= 1e-4), raising ``RuntimeError`` otherwise. Raises ``ValueError`` for a
    ``brain_max`` / ``brain_stats`` classifier (:func:`check_exportable`).
    """
    check_exportable(model)
    out = Path(out)
    model.eval()
    wrapped = ProbabilityModel(model).eval()
    x = example_input(model)
    with torch.no_grad(), warnings.catch_warnings():
        # shape arithmetic is constant for a fixed input size; only the batch axis varies
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # torch.jit is deprecated but still the most portable format for a traced CPU graph
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(wrapped, x, check_trace=False)
        if check:
            x2 = example_input(model, batch=2)
            diff = float((traced(x2) - wrapped(x2)).abs().max())
            if diff > 1e-4:
                raise RuntimeError(f"traced model differs from the eager model (max abs diff {diff:.2e})")
    tmp = _tmp_next_to(out)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(traced, str(tmp), _extra_files={EXTRA_NAME: json.dumps(export_metadata(model))})
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def load_torchscript(path: str | Path) -> tuple[torch.jit.ScriptModule, dict[str, Any]]:
    """Load an exported TorchScript file: ``(module, metadata)``."""
    extra = {EXTRA_NAME: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return module, json.loads(extra[EXTRA_NAME] or "{}")


def onnx_available() -> bool:
    """Whether the ``onnx`` package is importable (torch's ONNX export needs it)."""
    return importlib.util.find_spec("onnx") is not None


def export_onnx(model: Any, out: str | Path, opset: int = 17) -> Path:
    """Export to ONNX with a dynamic batch axis (needs the ``onnx`` package).

    Raises:
        RuntimeError: ``onnx`` is not installed.
    """
    check_exportable(model)
    if not onnx_available():
        raise RuntimeError(
            "ONNX export needs the 'onnx' package, which is not installed; "
            "use --format torchscript or install onnx"
        )
    import onnx

    out = Path(out)
    model.eval()
    wrapped = ProbabilityModel(model).eval()
    tmp = _tmp_next_to(out)
    try:
        torch.onnx.export(
            wrapped,
            (example_input(model),),
            str(tmp),
            input_names=["input"],
            output_names=["probabilities"],
            dynamic_axes={"input": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
        proto = onnx.load(str(tmp))
        meta = proto.metadata_props.add()
        meta.key, meta.value = EXTRA_NAME, json.dumps(export_metadata(model))
        onnx.save(proto, str(tmp))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_model(model: Any, out: str | Path, fmt: str = "torchscript") -> Path:
    """Export in ``fmt`` (``torchscript`` | ``onnx``); see :func:`export_torchscript` / :func:`export_onnx`."""
    if fmt == "torchscript":
        return export_torchscript(model, out)
    if fmt == "onnx":
        return export_onnx(model, out)
    raise ValueError(f"unknown export format {fmt!r}; choose one of {FORMATS}")
