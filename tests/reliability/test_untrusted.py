"""Untrusted model files: pickle payloads are refused (never unpickled) by ``fmct.load_model``,
``fmct predict`` and the checkpoint loader; every loader call in src/ is pickle-free (AST scan)."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import torch
from reliakit import write_head
from typer.testing import CliRunner

import fmct
from fmct.cli import app
from fmct.models.hub import ClassifierModel
from fmct.models.vit3d import ViT3D, ViT3DConfig
from fmct.train.checkpoint import load_checkpoint

SRC = Path(fmct.__file__).resolve().parent
PREPROCESSING = {"spacing": 1.0, "crop_head": True, "deface": False,
                 "windows": [[40.0, 80.0], [80.0, 200.0], [600.0, 2800.0]], "input_size": 16}  # fmt: skip


class Payload:
    """Unpickling this creates ``marker`` (stands in for arbitrary code execution)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def good_model(tmp_path: Path) -> Path:
    vit = ViT3D(ViT3DConfig(img_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2))
    clf = ClassifierModel.from_backbone(vit, ["ich", "mass"], preprocessing=PREPROCESSING)
    return clf.save_pretrained(tmp_path / "good")


def _pickle_dir(good: Path, dest: Path, marker: Path) -> Path:
    """A model directory whose only weights are a torch.save pickle carrying a payload."""
    dest.mkdir()
    shutil.copy(good / "config.json", dest / "config.json")
    torch.save({"backbone.cls_token": torch.zeros(1), "evil": Payload(marker)}, dest / "pytorch_model.bin")
    return dest


def test_load_model_refuses_pickle_weights(good_model, tmp_path) -> None:
    marker = tmp_path / "pwned"
    bad = _pickle_dir(good_model, tmp_path / "bad", marker)
    with pytest.raises(ValueError, match="pickle"):
        fmct.load_model(bad)
    # config.json pointing at the pickle (next to a valid safetensors file) is refused too
    cfg = json.loads((good_model / "config.json").read_text())
    shutil.copy(good_model / "model.safetensors", bad / "model.safetensors")
    (bad / "config.json").write_text(json.dumps({**cfg, "weights": "pytorch_model.bin"}))
    with pytest.raises(ValueError, match="pickle"):
        fmct.load_model(bad)
    # a pickle renamed to model.safetensors is not unpickled either
    (bad / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "weights_sha256"}))
    shutil.copy(bad / "pytorch_model.bin", bad / "model.safetensors")
    with pytest.raises(ValueError, match="safetensors"):
        fmct.load_model(bad)
    assert not marker.exists()
    assert fmct.load_model(good_model).labels == ["ich", "mass"]


def test_predict_refuses_pickle_model(good_model, tmp_path) -> None:
    marker = tmp_path / "pwned"
    bad = _pickle_dir(good_model, tmp_path / "bad", marker)
    scan = write_head(tmp_path / "scan.nii.gz", seed=0, shape=(24, 24, 12))
    out = tmp_path / "result.json"
    res = CliRunner().invoke(app, ["predict", str(scan), "--model", str(bad), "--out", str(out)])
    assert res.exit_code != 0
    assert "pickle" in res.output and str(bad) in res.output
    assert "Traceback" not in res.output
    assert not out.exists() and not marker.exists()


def test_checkpoint_loader_never_unpickles_code(tmp_path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"step": 3, "model": Payload(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        load_checkpoint(tmp_path)
    assert not marker.exists()


def _call_name(node: ast.Call) -> str:
    parts = []
    f = node.func
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return ".".join(reversed(parts))


def _kw(node: ast.Call, name: str):
    for k in node.keywords:
        if k.arg == name:
            return k.value.value if isinstance(k.value, ast.Constant) else "<expr>"
    return None


FORBIDDEN = {"pickle.load", "pickle.loads", "pickle.Unpickler", "joblib.load", "dill.load", "dill.loads",
             "pd.read_pickle", "pandas.read_pickle", "torch.jit.load", "cloudpickle.load", "cloudpickle.loads"}  # fmt: skip


#: Reviewed exceptions: ``load_torchscript`` reads back a TorchScript program the user exported with
#: ``fmct export`` (its own restricted unpickler); no model-directory, checkpoint or store path reaches it.
ALLOWED = {("infer/export.py", "torch.jit.load")}


def test_no_pickle_loading_in_src() -> None:
    """Every torch.load passes weights_only=True; np.load never allow_pickle=True; no pickle/joblib loads."""
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    problems, n_torch_load = [], 0
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if not isinstance(node, ast.Call):
                continue
            name, where = _call_name(node), f"{f.relative_to(SRC)}:{node.lineno}"
            if name == "torch.load":
                n_torch_load += 1
                if _kw(node, "weights_only") is not True:
                    problems.append(f"{where}: torch.load without weights_only=True")
            elif name in ("np.load", "numpy.load") and _kw(node, "allow_pickle") not in (None, False):
                problems.append(f"{where}: np.load(allow_pickle=True)")
            elif name in FORBIDDEN and (str(f.relative_to(SRC)), name) not in ALLOWED:
                problems.append(f"{where}: {name}")
    assert not problems, "\n".join(problems)
    assert n_torch_load >= 1  # the checkpoint loader
