"""`fmct import-model`: a released file through the command line, its messages and exit codes."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import save_file
from typer.testing import CliRunner

from fmct.cli import app

SMALL_ARGS = ["--arg", "init_filters=4", "--input-size", "32"]


@pytest.fixture
def release(tmp_path):
    """CT-FM's release layout at 4 filters (the encoder's own keys, safetensors)."""
    from monai.networks.nets.segresnet_ds import SegResEncoder

    net = SegResEncoder(spatial_dims=3, in_channels=1, init_filters=4, blocks_down=(1, 2, 2, 4, 4))
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def _run(*args: str):
    return CliRunner().invoke(app, ["import-model", *args])


def test_preset_and_any_monai_network_write_model_directories(release, tmp_path) -> None:
    r = _run(str(release), "--preset", "ct-fm", "--out", str(tmp_path / "ctfm"), *SMALL_ARGS)
    assert r.exit_code == 0, r.output
    assert (
        "ct-fm-feature-extractor (segresnet_ds.SegResEncoder, 64-dim tokens; input SPL, 1 mm, 32³ pad_crop"
        in r.output
    )
    r = _run(str(release), "--monai", "segresnet_ds.SegResEncoder", "--arg", "blocks_down=[1,2,2,4,4]",
             "--hu-range=-1024,2048", "--orientation", "LPS", "--fit", "resize",
             "--out", str(tmp_path / "any"), *SMALL_ARGS)  # fmt: skip
    assert r.exit_code == 0, r.output
    cfg = json.loads((tmp_path / "any" / "config.json").read_text())
    assert cfg["architecture"]["axcodes"] == "LPS" and cfg["preprocessing"]["input_fit"] == "resize"
    assert cfg["name"] == "imported-segresnet_ds.SegResEncoder"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "give either --preset NAME or --monai NETWORK"),
        (["--preset", "ct-fm", "--monai", "SegResNet"], 2, "give either --preset NAME or --monai NETWORK"),
        (["--preset", "merlin"], 2, "unknown --preset 'merlin'; known: ct-fm"),
        (["--monai", "SegResNet", "--input-size", "32"], 2, "--monai needs the model's --hu-range"),
        (["--preset", "ct-fm", "--arg", "init_filters"], 2, "expected KEY=VALUE"),
        (["--preset", "ct-fm", "--hu-range", "5"], 2, "expected LO,HI with LO < HI"),
        (["--preset", "ct-fm", "--fit", "stretch"], 2, "--fit must be one of pad_crop, resize"),
        (["--monai", "NoNet", "--hu-range=0,1", "--input-size", "32"], 1, "unknown MONAI network 'NoNet'"),
        (["--preset", "ct-fm", "--input-size", "32"], 1,
         "135 of another shape (conv_init.weight: file (4, 1, 3, 3, 3), network (32, 1, 3, 3, 3)"),
        (["--preset", "ct-fm", *SMALL_ARGS, "--hu-range=-1024,2048", "--hu-range=0,80"], 1,
         "in_channels=1 but 2 HU range(s)"),
    ],
)  # fmt: skip
def test_errors_are_one_line_with_usage_or_data_exit_codes(release, tmp_path, args, code, message) -> None:
    r = _run(str(release), "--out", str(tmp_path / "m"), *args)
    assert r.exit_code == code and message in r.output and "Traceback" not in r.output, r.output
    assert r.output.startswith("fmct import-model: ") and not (tmp_path / "m").exists()


def test_a_missing_weights_file_is_a_usage_error(tmp_path) -> None:
    r = _run(str(tmp_path / "none.safetensors"), "--preset", "ct-fm", "--out", str(tmp_path / "m"))
    assert r.exit_code == 2 and "none.safetensors: no such weights file" in r.output
