"""Released weights -> model directory: CT-FM's published architecture and key layout (random weights, saved
as its release is), the preprocessing of its card checked against MONAI's own transforms, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fmct.models.importer import import_model, match_weights
from fmct.models.monai_net import MonaiBackbone, MonaiNetConfig
from fmct.models.presets import CT_FM

#: CT-FM's published architecture at 4 instead of 32 filters: the same keys, small enough for a test.
SMALL = {**CT_FM.kwargs, "init_filters": 4}


def _release(path: Path, kwargs: dict, rename=lambda k: k) -> dict[str, torch.Tensor]:
    """A random SegResEncoder saved as the CT-FM release is: its own state-dict keys, in safetensors."""
    from monai.networks.nets.segresnet_ds import SegResEncoder

    torch.manual_seed(1)
    net = SegResEncoder(**kwargs)
    for m in net.modules():  # non-trivial batch-norm statistics, as a trained network has
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    sd = {rename(k): v.contiguous() for k, v in net.state_dict().items()}
    save_file(sd, str(path))
    return sd


def test_ct_fm_preset_is_the_published_architecture() -> None:
    """The card's config (SegResEncoder, 1 channel, 32 filters, blocks 1-2-2-4-4): ~78 M parameters, 512-dim
    tokens at stride 16 (20³ at 320³), keys as in the release (no prefix). Built on the meta device."""
    with torch.device("meta"):
        bb = MonaiBackbone(MonaiNetConfig(CT_FM.network, CT_FM.kwargs, 1, 512, CT_FM.axcodes))
    keys = list(bb.net.state_dict())
    assert 77e6 < sum(p.numel() for p in bb.parameters()) < 78e6
    assert keys[:2] == ["conv_init.weight", "layers.0.blocks.0.norm1.weight"] and len(keys) == 161
    assert bb.grid_size((320, 320, 320)) == (20, 20, 20)
    assert (CT_FM.input_size, CT_FM.input_fit, CT_FM.axcodes, CT_FM.hu_ranges) == (
        320,
        "pad_crop",
        "SPL",
        [(-1024.0, 2048.0)],
    )


def test_imported_ct_fm_embeds_as_its_own_monai_pipeline_does(tiny_store, tmp_path) -> None:
    """Loading, preprocessing and embedding: fmct's embedding of a store scan equals CT-FM's recipe run with
    MONAI's transforms (Orientation SPL, ResizeWithPadOrCrop, ScaleIntensityRange -1024..2048 -> 0..1, the
    average pool of the last feature map) on the same scan, and every weight comes from the file. (MONAI pads
    after scaling, i.e. with -1024 HU; fmct with air, -1000 HU: the reference pads with air too.)"""
    from monai.data import MetaTensor
    from monai.transforms import Orientation, ResizeWithPadOrCrop, ScaleIntensityRange

    from fmct.evaluate.embed import embed_store, load_embeddings
    from fmct.models.hub import load_model
    from fmct.store.reader import open_store

    released = _release(tmp_path / "model.safetensors", SMALL)
    spec = CT_FM.replace(kwargs=SMALL, input_size=48)
    out = import_model(spec, tmp_path / "model.safetensors", tmp_path / "ctfm", card_spec=CT_FM)
    cfg = json.loads((out / "config.json").read_text())
    pre = cfg["preprocessing"]
    assert (pre["windows"], pre["spacing"], pre["input_size"], pre["input_fit"]) == (
        [[512.0, 3072.0]],
        1.0,
        48,
        "pad_crop",
    )
    assert cfg["architecture"]["axcodes"] == "SPL" and cfg["architecture"]["embed_dim"] == 64
    assert cfg["training"]["imported"]["differs_from_card"] == [
        "init_filters=4 (card: 32)",
        "input_size 48 (card: 320)",
    ]
    assert "differ from its card" in (out / "README.md").read_text()
    model = load_model(out)
    assert all(torch.equal(model.backbone.net.state_dict()[k], v) for k, v in released.items())

    emb = load_embeddings(embed_store(out, tiny_store, tmp_path / "emb.parquet", progress=False))
    vol = open_store(tiny_store).load("scan000")  # 36 x 40 x 34, RAS, 1 mm: padded evenly to 48³
    x = MetaTensor(torch.from_numpy(vol.array[None].astype(np.float32)), affine=torch.as_tensor(vol.affine))
    x = Orientation(axcodes="SPL", labels=None)(x)
    x = ScaleIntensityRange(-1024, 2048, 0.0, 1.0, clip=True)(
        ResizeWithPadOrCrop(48, constant_values=-1000)(x)
    )
    with torch.no_grad():
        ref = model.backbone.net(x.as_tensor()[None])[-1].mean(dim=(2, 3, 4))[0].numpy()
    assert emb.scan_ids[0] == "scan000" and np.isfinite(emb.feature("brain_max")).all()
    np.testing.assert_allclose(emb.cls[0], ref, rtol=1e-4, atol=1e-5)


def test_a_key_mismatch_names_the_keys(tmp_path) -> None:
    """Missing, unexpected and reshaped keys are each listed (and counted) before anything is written."""
    sd = _release(tmp_path / "ok.safetensors", SMALL)
    expected = {k: v.clone() for k, v in sd.items()}
    bad = dict(sd)
    del bad["layers.4.blocks.3.conv2.weight"]
    bad["layers.9.blocks.0.conv1.weight"] = torch.zeros(1)
    bad["conv_init.weight"] = torch.zeros(8, 1, 3, 3, 3)
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError) as err:
        import_model(CT_FM.replace(kwargs=SMALL, input_size=32), tmp_path / "bad.safetensors", tmp_path / "m")
    msg = str(err.value)
    assert "bad.safetensors: the weights do not fit the network" in msg
    assert "1 missing (layers.4.blocks.3.conv2.weight)" in msg
    assert "1 unexpected (layers.9.blocks.0.conv1.weight)" in msg
    assert "1 of another shape (conv_init.weight: file (8, 1, 3, 3, 3), network (4, 1, 3, 3, 3))" in msg
    assert not (tmp_path / "m").exists()
    many = {k: v for k, v in expected.items() if not k.startswith("layers.4")}
    with pytest.raises(ValueError, match=r"\d+ missing \(layers\.4\.[^)]* … and \d+ more\)"):
        match_weights(many, expected, "f")


def test_a_wrapper_prefix_is_stripped_and_recorded_and_batch_counters_may_be_absent(tmp_path) -> None:
    drop = "layers.0.blocks.0.norm1.num_batches_tracked"
    sd = _release(tmp_path / "full.safetensors", SMALL)
    save_file({f"model.{k}": v for k, v in sd.items() if k != drop}, str(tmp_path / "w.safetensors"))
    out = import_model(CT_FM.replace(kwargs=SMALL, input_size=32), tmp_path / "w.safetensors", tmp_path / "m")
    imported = json.loads((out / "config.json").read_text())["training"]["imported"]
    assert imported["key_prefix_stripped"] == "model." and imported["file"] == "w.safetensors"
    assert len(imported["sha256"]) == 64 and "differs_from_card" not in imported  # no card given


def test_pickled_checkpoints_and_missing_files_are_refused(tmp_path) -> None:
    torch.save({"w": torch.zeros(1)}, tmp_path / "model.pth")
    with pytest.raises(ValueError, match="pickled checkpoints .* are refused"):
        import_model(CT_FM, tmp_path / "model.pth", tmp_path / "m")
    with pytest.raises(FileNotFoundError, match="no such weights file"):
        import_model(CT_FM, tmp_path / "none.safetensors", tmp_path / "m")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="unreadable safetensors"):
        import_model(CT_FM, tmp_path / "junk.safetensors", tmp_path / "m")
