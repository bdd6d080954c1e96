import pytest
import torch
from typer.testing import CliRunner

from fmct.cli import app
from fmct.infer.export import export_torchscript, load_torchscript, onnx_available


def test_torchscript_matches_eager(make_classifier, tmp_path):
    for head_type in ("linear", "attentive"):
        model = make_classifier(seed=5, head_type=head_type)
        path = export_torchscript(model, tmp_path / f"{head_type}.pt")
        module, meta = load_torchscript(path)
        assert meta["labels"] == model.labels and meta["preprocessing"]["input_size"] == 32
        x = torch.rand(3, 3, 32, 32, 32)  # a different batch size than the trace
        with torch.no_grad():
            expected = torch.sigmoid(model(x))
        torch.testing.assert_close(module(x), expected, atol=1e-5, rtol=1e-5)


def test_export_cli(model_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "m.pt"
    res = runner.invoke(
        app, ["export", "--model", str(model_dir), "--format", "torchscript", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert out.is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    res = runner.invoke(
        app, ["export", "--model", str(model_dir), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]
    )
    if onnx_available():
        assert res.exit_code == 0, res.output
    else:
        assert res.exit_code == 2 and "needs the 'onnx' package" in res.output
    res = runner.invoke(app, ["export", "--model", str(model_dir), "--format", "tflite", "--out", str(out)])
    assert res.exit_code == 2 and "unknown format" in res.output


@pytest.mark.parametrize("pooling", ["brain_max", "brain_stats"])
def test_brain_readout_classifier_is_refused_not_frozen(make_classifier, tmp_path, pooling):
    model = make_classifier(seed=5, pooling=pooling)
    with pytest.raises(ValueError, match=f"a {pooling} classifier cannot be exported"):
        export_torchscript(model, tmp_path / "m.pt")
    assert not list(tmp_path.iterdir())
