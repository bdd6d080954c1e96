"""`fmct import-model`: released weights of a published model or of any MONAI network -> a model directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

FITS = ("pad_crop", "resize")


def _network_args(items: list[str]) -> dict[str, Any]:
    """``["init_filters=32", "blocks_down=[1,2,2,4]"]`` -> ``{"init_filters": 32, "blocks_down": [1, 2, 2,
    4]}`` (values read as YAML)."""
    import yaml

    from fmct.commands._common import usage

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            usage(f"--arg {item!r}: expected KEY=VALUE, e.g. --arg init_filters=32")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            usage(f"--arg {item!r}: the value is not valid YAML")
    return out


def _hu_ranges(items: list[str]) -> list[tuple[float, float]]:
    """``["-1024,2048"]`` -> ``[(-1024.0, 2048.0)]``."""
    from fmct.commands._common import parse_list, usage

    out = []
    for item in items:
        vals = parse_list(item, float, "--hu-range")
        if len(vals) != 2 or not vals[0] < vals[1]:
            usage(f"--hu-range {item!r}: expected LO,HI with LO < HI, e.g. --hu-range=-1024,2048")
        out.append((vals[0], vals[1]))
    return out


def import_model(
    weights: Path = typer.Argument(..., help="The released weights: a local .safetensors file."),
    out: Path = typer.Option(..., "--out", "-o", help="Model directory to write."),
    preset: str = typer.Option(
        None, "--preset", help="A published model whose card fmct knows: ct-fm (CT-FM's feature extractor)."
    ),
    monai: str = typer.Option(
        None,
        "--monai",
        help="Any MONAI network by class name: SegResNet, DenseNet121, segresnet_ds.SegResEncoder, ...",
    ),
    arg: list[str] = typer.Option(
        None,
        "--arg",
        metavar="KEY=VALUE",
        help="Network argument (YAML value; repeat): --arg init_filters=32 --arg blocks_down=[1,2,2,4].",
    ),
    hu_range: list[str] = typer.Option(
        None,
        "--hu-range",
        metavar="LO,HI",
        help="HU scaled to [0, 1] and clipped, one input channel each (repeat): --hu-range=-1024,2048.",
    ),
    orientation: str = typer.Option(
        None, "--orientation", help="Axis codes the network expects its input in: RAS, LPS, SPL ... (RAS)."
    ),
    spacing: float = typer.Option(None, "--spacing", min=0.01, help="Voxel size in mm (1.0)."),
    input_size: int = typer.Option(None, "--input-size", min=8, help="Edge of the input cube in voxels."),
    fit: str = typer.Option(
        None,
        "--fit",
        help="pad_crop: voxels kept at --spacing, centred, padded with air or cropped (MONAI "
        "ResizeWithPadOrCrop; the default); resize: the head resized into the cube (fmct's own).",
    ),
    layer: str = typer.Option(
        None, "--layer", help="Submodule whose output is the feature map (default: the network's output)."
    ),
    name: str = typer.Option(None, "--name", help="Model name in config.json and the model card."),
) -> None:
    """Import released weights so that embed / probe / evaluate / predict treat them as an fmct backbone.

    A published model:  fmct import-model model.safetensors --preset ct-fm --out models/ct-fm

    Any MONAI network:  fmct import-model w.safetensors --monai SegResNet --arg init_filters=16
    --layer down_layers.3 --hu-range=-1024,2048 --input-size 96 --orientation LPS --out models/mine

    (--layer picks the encoder's last feature map: a segmentation network's own output is its logits.)

    The network is built from its name and arguments and the file's keys must match its state dict (a
    mismatch lists the keys). The model directory records the model's own preprocessing (preset: from its
    card; otherwise the options), and its card how it was imported. Options given with --preset override
    the card's values. Pickled checkpoints are refused; nothing is downloaded.
    """
    from fmct.commands._common import run_or_fail, usage
    from fmct.models.importer import ImportSpec, import_model
    from fmct.models.presets import PRESETS

    if (preset is None) == (monai is None):
        usage("give either --preset NAME or --monai NETWORK")
    if preset is not None and preset not in PRESETS:
        usage(f"unknown --preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    if fit is not None and fit not in FITS:
        usage(f"--fit must be one of {', '.join(FITS)}, got {fit!r}")
    if monai is not None and (not hu_range or input_size is None):
        usage("--monai needs the model's --hu-range (one per input channel) and --input-size, from its card")
    if not weights.is_file():
        usage(f"{weights}: no such weights file")
    spec = PRESETS[preset] if preset is not None else ImportSpec(network=monai, name=f"imported-{monai}")
    kwargs = {**spec.kwargs, **_network_args(list(arg or []))}
    ranges = _hu_ranges(list(hu_range or [])) or None
    spec = spec.replace(kwargs=kwargs, hu_ranges=ranges, axcodes=orientation, spacing=spacing,
                        input_size=input_size, input_fit=fit, layer=layer, name=name)  # fmt: skip
    path = run_or_fail(import_model, spec, weights, out, PRESETS.get(preset or ""))
    from fmct.models.hub import read_config

    cfg = read_config(path)
    a, p = cfg["architecture"], cfg["preprocessing"]
    typer.echo(
        f"wrote {path}: {cfg['name']} ({a['network']}, {a['embed_dim']}-dim tokens; input {a['axcodes']}, "
        f"{p['spacing']:g} mm, {p['input_size']}³ {p['input_fit']}, windows {p['windows']})"
    )
