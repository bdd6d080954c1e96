"""Released weights of a MONAI network -> an fmct model directory (``fmct import-model``).

The network is built from its name and arguments (:class:`fmct.models.monai_net.MonaiBackbone`), the local
safetensors file is matched key by key against it (a mismatch names the keys), and the model directory
records the preprocessing the model was trained with (spacing, HU range -> channel, input size, how the scan
fills the cube, and in the architecture the axis codes), so that ``fmct embed`` / ``probe`` / ``evaluate`` /
``predict`` feed it what it expects. Nothing is downloaded: the user brings the file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fmct.models.hub import file_sha256, save_pretrained
from fmct.models.monai_net import MonaiBackbone, MonaiNetConfig
from fmct.preprocess.model_input import input_fit
from fmct.preprocess.pipeline import PreprocessConfig

#: Batch-norm counters some exporters leave out; the network's own (zero) values are used for them.
_OPTIONAL_SUFFIX = ".num_batches_tracked"
#: Names shown per kind of mismatch.
_SHOW = 8


@dataclass
class ImportSpec:
    """What to build and how its inputs were made (from the model's card).

    ``hu_ranges``: one ``(lo, hi)`` per input channel, HU mapped linearly to ``[0, 1]`` and clipped (MONAI
    ``ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0, b_max=1, clip=True)``, fmct window ``((lo + hi) / 2,
    hi - lo)``). ``input_fit``: ``pad_crop`` or ``resize`` (:func:`fmct.preprocess.model_input.cube_hu`).
    ``card``: model-card fields (``description``, ``citation``, ``license``, ``limitations``).
    """

    network: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    hu_ranges: list[tuple[float, float]] = field(default_factory=lambda: [(-1024.0, 2048.0)])
    input_size: int = 96
    input_fit: str = "pad_crop"
    spacing: float = 1.0
    axcodes: str = "RAS"
    layer: str = ""
    name: str = "imported-monai"
    source: str = ""
    card: dict[str, Any] = field(default_factory=dict)

    def replace(self, **changes: Any) -> ImportSpec:
        """A copy with ``changes`` (``None`` values ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


#: Fields of :class:`ImportSpec` that define the network or its input (compared by :func:`deviations`).
_DEFINING = ("network", "kwargs", "hu_ranges", "input_size", "input_fit", "spacing", "axcodes", "layer")


def deviations(spec: ImportSpec, card: ImportSpec) -> list[str]:
    """``["input_size 48 (card: 320)", ...]``: where ``spec`` departs from the published ``card`` spec."""
    out = []
    for name in _DEFINING:
        mine, theirs = getattr(spec, name), getattr(card, name)
        if name == "kwargs":
            for k in sorted(set(mine) | set(theirs)):
                if mine.get(k) != theirs.get(k):
                    out.append(f"{k}={mine.get(k)!r} (card: {theirs.get(k)!r})")
        elif mine != theirs:
            out.append(f"{name} {mine!r} (card: {theirs!r})")
    return out


def windows_of(hu_ranges: list[tuple[float, float]]) -> list[list[float]]:
    """fmct windows ``[level, width]`` of HU ranges ``(lo, hi)``; ``ValueError`` unless ``lo < hi``."""
    out = []
    for lo, hi in hu_ranges:
        if not float(lo) < float(hi):
            raise ValueError(f"HU range {lo:g},{hi:g}: the low end must be below the high end")
        out.append([(float(lo) + float(hi)) / 2.0, float(hi) - float(lo)])
    return out


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a local ``.safetensors`` file (pickled checkpoints are refused: they can run code)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"no such weights file: {path}")
    if path.suffix != ".safetensors":
        raise ValueError(
            f"{path}: not a .safetensors file; pickled checkpoints (.bin, .pt, .pth, .ckpt) are refused "
            "because loading them can run code. Convert it with a trusted tool first."
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path}: unreadable safetensors file ({e})") from None


def _names(keys: list[str]) -> str:
    more = f" … and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return ", ".join(keys[:_SHOW]) + more


def match_weights(
    found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], where: str
) -> tuple[dict[str, torch.Tensor], str]:
    """``found`` renamed to the network's keys, and the prefix stripped for it (``""``: none).

    A prefix shared by every key of the file (``model.``, ``module.``, ``encoder.`` …) is stripped when the
    rest then matches exactly. Batch-norm ``num_batches_tracked`` counters may be absent.

    Raises:
        ValueError: naming the missing keys, the unexpected keys and the keys whose shapes differ.
    """
    prefix = ""
    heads = {k.split(".", 1)[0] for k in found if "." in k}
    if set(found) != set(expected) and len(heads) == 1 and all("." in k for k in found):
        head = f"{heads.pop()}."
        stripped = {k[len(head) :]: v for k, v in found.items()}
        if set(stripped) <= set(expected):
            found, prefix = stripped, head
    missing = sorted(k for k in set(expected) - set(found) if not k.endswith(_OPTIONAL_SUFFIX))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(k for k in set(found) & set(expected) if found[k].shape != expected[k].shape)
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing ({_names(missing)})" if missing else "",
                 f"{len(unexpected)} unexpected ({_names(unexpected)})" if unexpected else "",
                 f"{len(shapes)} of another shape (" + _names([
                     f"{k}: file {tuple(found[k].shape)}, network {tuple(expected[k].shape)}"
                     for k in shapes]) + ")" if shapes else ""]  # fmt: skip
        raise ValueError(
            f"{where}: the weights do not fit the network: {'; '.join(p for p in parts if p)}. "
            "Check the network's arguments (--arg) against the ones it was trained with."
        )
    full = dict(expected)
    full.update(found)
    return full, prefix


def build_imported(spec: ImportSpec, weights: Path) -> tuple[Any, str]:
    """The network of ``spec`` with the file's weights, in eval mode, its token width measured; and the key
    prefix stripped from the file (``""``: none)."""

    n_in = len(spec.hu_ranges)
    if "in_channels" in spec.kwargs and int(spec.kwargs["in_channels"]) != n_in:
        raise ValueError(
            f"the network takes in_channels={spec.kwargs['in_channels']} but {n_in} HU range(s) were given "
            "(one input channel per range)"
        )
    found = read_weights(weights)  # before building the network: a bad file fails fast
    cfg = MonaiNetConfig(spec.network, spec.kwargs, n_in, 0, spec.axcodes, spec.layer)
    backbone = MonaiBackbone(cfg)
    state, prefix = match_weights(found, backbone.net.state_dict(), str(weights))
    backbone.net.load_state_dict(state)
    backbone.eval()
    probe = min(int(spec.input_size), 64)
    with torch.no_grad():
        width = int(backbone.feature_map(torch.zeros(1, n_in, probe, probe, probe)).shape[1])
    cfg.embed_dim = backbone.embed_dim = width
    return backbone, prefix


def import_model(
    spec: ImportSpec, weights: str | Path, out: str | Path, card_spec: ImportSpec | None = None
) -> Path:
    """Write ``out``: a backbone model directory of ``spec``'s network with the weights of ``weights``;
    where ``spec`` departs from a published ``card_spec`` (a preset), the model card says so.

    Raises:
        FileNotFoundError: no such weights file.
        ValueError: not safetensors, weights that do not fit the network (keys named), bad arguments.
    """

    weights = Path(weights)
    backbone, prefix = build_imported(spec, weights)
    prep = PreprocessConfig(spacing=float(spec.spacing), windows=windows_of(spec.hu_ranges)).to_dict()
    prep.update({"input_size": int(spec.input_size), "input_fit": input_fit({"input_fit": spec.input_fit})})
    imported = {"file": weights.name, "sha256": file_sha256(weights), "source": spec.source}
    if prefix:
        imported["key_prefix_stripped"] = prefix
    card = dict(spec.card)
    changed = deviations(spec, card_spec) if card_spec is not None else []
    if changed:
        imported["differs_from_card"] = changed
        note = "Imported with settings that differ from its card: " + "; ".join(changed) + "."
        card["limitations"] = [note, *card.get("limitations", [])]
    origin = spec.source or weights.name
    card.setdefault("training_data", f"Not trained by fmct: weights imported from {origin}.")
    return save_pretrained(
        backbone,
        out,
        kind="backbone",
        architecture=backbone.config.to_dict(),
        preprocessing=prep,
        name=spec.name,
        training={"method": "imported", "imported": imported},
        card=card,
    )
