"""Model directories: round trips, pickle refusal, clear errors, model card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import fmct
from fmct.api import load_model as api_load_model
from fmct.models.baselines import ResNet3D
from fmct.models.hub import BackboneModel, ClassifierModel, load_model, save_pretrained
from fmct.models.model_card import parse_front_matter

LABELS = ["ich", "fracture", "mass"]


def test_backbone_roundtrip(tmp_path: Path, tiny_vit, preprocessing) -> None:
    out = save_pretrained(
        tiny_vit,
        tmp_path / "bb",
        kind="backbone",
        preprocessing=preprocessing,
        name="tiny-test",
        training={"method": "dino", "epochs": 1},
    )
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert not list(tmp_path.glob(".*tmp*"))  # temp dir cleaned up
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "backbone" and cfg["fmct_version"] == fmct.__version__
    assert cfg["architecture"]["type"] == "vit3d" and cfg["preprocessing"]["input_size"] == 16

    m = api_load_model(out)
    assert isinstance(m, BackboneModel) and not m.training
    assert m.input_size == 16 and m.preprocessing == preprocessing and m.name == "tiny-test"
    x = torch.rand(2, 3, 16, 16, 16)
    ref = tiny_vit.forward_features(x)
    e = m.embed(x)
    assert torch.equal(e["cls"], ref["cls"]) and torch.equal(e["patch"], ref["patch"])
    torch.testing.assert_close(e["mean_patch"], ref["patch"].mean(1))
    assert m.features(x, "cls+mean").shape == (2, 48)
    # BackboneModel round trip through its own save_pretrained, overwriting in place
    m.save_pretrained(out, card={"training_data": "synthetic cohort"})
    assert torch.equal(BackboneModel.from_pretrained(out).embed(x)["cls"], e["cls"])
    assert "synthetic cohort" in (out / "README.md").read_text()


@pytest.mark.parametrize(
    "head_type,pooling",
    [
        ("linear", "cls"),
        ("linear", "cls+mean"),
        ("linear", "brain_max"),
        ("linear", "brain_stats"),
        ("attentive", "cls"),
    ],
)
def test_classifier_roundtrip(tmp_path: Path, tiny_vit, preprocessing, head_type: str, pooling: str) -> None:
    torch.manual_seed(0)
    clf = ClassifierModel.from_backbone(
        tiny_vit, LABELS, head_type=head_type, pooling=pooling, num_heads=2, preprocessing=preprocessing
    ).eval()
    x = torch.rand(2, 3, 16, 16, 16)
    logits = clf(x)
    assert logits.shape == (2, 3)
    out = clf.save_pretrained(tmp_path / "clf", card={"evaluation": {"ich": {"auroc": 0.91, "ap": 0.5}}})
    m = load_model(out)
    assert isinstance(m, ClassifierModel) and m.labels == LABELS
    assert torch.equal(m(x), logits)
    p = m.predict_proba(x)
    torch.testing.assert_close(p, torch.sigmoid(logits))
    # predict on a ready model input returns one probability per finding
    res = m.predict(x[0].numpy())
    assert list(res) == LABELS and all(0.0 <= v <= 1.0 for v in res.values())
    assert res["ich"] == pytest.approx(float(p[0, 0]), abs=1e-6)
    # the backbone of a classifier dir loads as a BackboneModel
    bb = BackboneModel.from_pretrained(out)
    assert torch.equal(bb.embed(x)["cls"], tiny_vit.forward_features(x)["cls"])
    card = (out / "README.md").read_text()
    assert "| ich | 0.910 | 0.500 |" in card


def test_resnet_classifier_roundtrip(tmp_path: Path, preprocessing) -> None:
    r = ResNet3D(widths=(4, 8), blocks=(1, 1)).eval()
    clf = ClassifierModel.from_backbone(r, LABELS, preprocessing=preprocessing).eval()
    x = torch.rand(1, 3, 16, 16, 16)
    out = clf.save_pretrained(tmp_path / "res")
    m = load_model(out)
    assert json.loads((out / "config.json").read_text())["architecture"]["type"] == "resnet3d"
    assert torch.equal(m(x), clf(x))


def test_brain_max_pooling_needs_a_token_grid_and_a_wide_window(tiny_vit, preprocessing) -> None:
    r = ResNet3D(widths=(4, 8), blocks=(1, 1)).eval()  # its final 8³ feature map is the grid
    clf = ClassifierModel.from_backbone(r, LABELS, pooling="brain_max", preprocessing=preprocessing)
    assert clf(torch.rand(1, 3, 16, 16, 16)).shape == (1, 3)
    with pytest.raises(ValueError, match="token grid"):
        ClassifierModel.from_backbone(
            torch.nn.Linear(2, 2), LABELS, pooling="brain_max", preprocessing=preprocessing
        )
    narrow = {**preprocessing, "windows": [[40, 80]]}  # the brain window alone clips CSF and blood
    with pytest.raises(ValueError, match="spanning -5 to 110 HU"):
        ClassifierModel.from_backbone(tiny_vit, LABELS, pooling="brain_max", preprocessing=narrow)


def test_predict_uses_preprocess_pipeline(tmp_path: Path, tiny_vit, preprocessing, monkeypatch) -> None:
    """predict(path) = preprocess(path, the model's PreprocessConfig) -> to_model_input -> probabilities (through
    fmct.preprocess.model_input.model_input_for, the path `fmct predict` takes too)."""
    import fmct.preprocess.model_input as model_input
    import fmct.preprocess.pipeline as pipeline
    from fmct.io.volume import Volume

    calls: dict = {}

    def fake_preprocess(src, cfg):
        calls["src"], calls["cfg"] = src, cfg
        arr = np.full((20, 18, 14), -1000, np.int16)
        arr[4:16, 4:14, 3:11] = 40
        return Volume(arr, np.eye(4), {})

    monkeypatch.setattr(model_input, "preprocess", fake_preprocess)  # the one preprocess model input runs
    clf = ClassifierModel.from_backbone(tiny_vit, LABELS, preprocessing=preprocessing).eval()
    res = clf.predict("scan.nii.gz")
    assert calls["src"] == "scan.nii.gz" and isinstance(calls["cfg"], pipeline.PreprocessConfig)
    assert [list(w) for w in calls["cfg"].windows] == [list(w) for w in preprocessing["windows"]]
    assert list(res) == LABELS


def test_pickle_directory_refused(tmp_path: Path) -> None:
    d = tmp_path / "legacy"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match="pickle payloads are refused"):
        load_model(d)
    (d / "config.json").unlink()
    with pytest.raises(ValueError, match="pickle payloads are refused"):
        load_model(d)


def test_missing_and_broken_files(tmp_path: Path, tiny_vit, preprocessing) -> None:
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        load_model(tmp_path / "nope")
    out = save_pretrained(tiny_vit, tmp_path / "m", kind="backbone", preprocessing=preprocessing)
    (out / "model.safetensors").rename(tmp_path / "w.safetensors")
    with pytest.raises(FileNotFoundError, match="missing model.safetensors"):
        load_model(out)
    (tmp_path / "w.safetensors").rename(out / "model.safetensors")
    cfg_text = (out / "config.json").read_text()
    (out / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="missing config.json"):
        load_model(out)
    (out / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="invalid JSON"):
        load_model(out)
    # architecture changed behind the weights' back -> clear mismatch error
    cfg = json.loads(cfg_text)
    cfg["architecture"]["depth"] = 3
    (out / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="do not match the architecture"):
        load_model(out)
    # corrupted weights -> checksum error
    cfg["architecture"]["depth"] = 2
    (out / "config.json").write_text(json.dumps(cfg))
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        load_model(out)


def test_save_validates_before_writing(tmp_path: Path, tiny_vit, preprocessing) -> None:
    with pytest.raises(ValueError, match="input_size"):
        save_pretrained(tiny_vit, tmp_path / "a", kind="backbone", preprocessing={"spacing": 1.0})
    with pytest.raises(ValueError, match="do not match"):
        save_pretrained(
            tiny_vit,
            tmp_path / "b",
            kind="classifier",
            preprocessing=preprocessing,
            labels=LABELS,
            head={"type": "linear", "in_features": 24, "pooling": "cls"},
        )
    with pytest.raises(ValueError, match="kind"):
        save_pretrained(tiny_vit, tmp_path / "c", kind="detector", preprocessing=preprocessing)
    assert list(tmp_path.iterdir()) == []


def test_model_card_front_matter(tmp_path: Path, tiny_vit, preprocessing) -> None:
    clf = ClassifierModel.from_backbone(tiny_vit, LABELS, preprocessing=preprocessing, name="clf-x")
    out = clf.save_pretrained(
        tmp_path / "c",
        card={
            "training_data": "1000 synthetic scans, site A",
            "evaluation": [{"finding": "ich", "auroc": 0.8}],
        },
    )
    text = (out / "README.md").read_text()
    fm = parse_front_matter(text)
    assert fm["intended_use"] == "research only, not for clinical use"
    assert fm["fmct_kind"] == "classifier" and fm["labels"] == LABELS and fm["library_name"] == "fmct"
    for needle in (
        "## Training data",
        "1000 synthetic scans",
        "## Preprocessing",
        '"input_size": 16',
        "## Evaluation",
        "| finding | auroc |",
        "## Limitations",
        "face",
        "not for clinical use",
    ):
        assert needle in text, needle


def test_one_readout_list_and_old_mean_pooling_still_loads(tmp_path: Path, tiny_vit, preprocessing) -> None:
    """The readout names come from fmct.models.readout; a classifier saved with the older pooling name
    "mean" loads as "mean_patch" and pools the same; unknown names say the choices."""
    import json

    import torch

    from fmct.models.readout import READOUTS, canonical_readout

    assert READOUTS[0] == "brain_max" and canonical_readout("mean") == "mean_patch"
    with pytest.raises(ValueError, match="use one of brain_max, cls, mean_patch, cls\\+mean"):
        canonical_readout("max")
    clf = ClassifierModel.from_backbone(
        tiny_vit, LABELS, pooling="mean_patch", preprocessing=preprocessing
    ).eval()
    d = clf.save_pretrained(tmp_path / "c")
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["head"]["pooling"] == "mean_patch"
    cfg["head"]["pooling"] = "mean"  # as an older fmct wrote it
    (d / "config.json").write_text(json.dumps(cfg))
    old = load_model(d)
    x = torch.rand(1, 3, 16, 16, 16)
    torch.testing.assert_close(old.predict_proba(x), clf.predict_proba(x))


def test_load_model_places_the_model_on_the_device_asked_for(
    tmp_path: Path, tiny_vit, preprocessing, monkeypatch
) -> None:
    from fmct.device import DeviceUnavailable

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    d = ClassifierModel.from_backbone(tiny_vit, LABELS, preprocessing=preprocessing).save_pretrained(
        tmp_path / "c"
    )
    for where in ("cpu", "auto", torch.device("cpu")):
        m = api_load_model(d, map_location=where)
        assert {p.device.type for p in m.parameters()} == {"cpu"} and not m.training
    with pytest.raises(DeviceUnavailable, match="'cuda:0' asked for but no CUDA GPU is visible"):
        load_model(d, map_location="cuda:0")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        load_model(d, map_location="gpu")
