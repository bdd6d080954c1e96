"""--device on every command that runs a network: one option, one resolver, one error (exit 2, one sentence)
before any work; a GPU is simulated as absent so the tests say the same on machines with one."""

import re

import pytest
import torch
from typer.testing import CliRunner

from fmct.cli import app

runner = CliRunner()

#: Each command with arguments that would otherwise get further (inputs that do not exist are fine: the
#: device is checked first).
COMMANDS = {
    "embed": ["--model", "m", "--data", "d", "--out", "e.parquet"],
    "probe": ["--embeddings", "e.parquet", "--labels", "l.csv", "--out", "p", "--method", "attentive"],
    "finetune": ["--model", "m", "--data", "d", "--labels", "l.csv", "--out", "o"],
    "evaluate": ["--model", "a=m", "--labels", "l.csv", "--data", "d"],
    "predict": ["--model", "m", "scan.nii.gz"],
}


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_missing_gpu_is_a_usage_error_before_any_work(no_gpu, tmp_path, monkeypatch, command) -> None:
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, [command, *COMMANDS[command], "--device", "cuda"])
    assert r.exit_code == 2, r.output
    assert r.output.strip() == (
        f"fmct {command}: --device: 'cuda' asked for but no CUDA GPU is visible "
        "(torch.cuda.is_available() is False); use 'cpu' or 'auto'"
    )
    r = runner.invoke(app, [command, *COMMANDS[command], "--device", "tpu"])
    assert r.exit_code == 2 and r.output.startswith(f"fmct {command}: --device: unknown device 'tpu'")
    assert not list(tmp_path.iterdir())  # nothing was written


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_documents_device(command) -> None:
    r = runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"}, terminal_width=300)
    assert r.exit_code == 0
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", r.output).split())
    assert (
        "--device" in text and "auto (the GPU when one is visible, else the CPU), cpu, cuda or cuda:N" in text
    )


def test_evaluate_takes_the_device_of_its_config_unless_the_flag_names_one(no_gpu, tmp_path) -> None:
    cfg = tmp_path / "eval.yaml"
    cfg.write_text("models: {a: m}\nlabels: l.csv\ndata: d\nprotocol: {device: 'cuda:1'}\n")
    r = runner.invoke(app, ["evaluate", "--config", str(cfg)])
    assert r.exit_code == 2 and "--device: 'cuda:1' asked for but no CUDA GPU" in r.output, r.output
    r = runner.invoke(app, ["evaluate", "--config", str(cfg), "--device", "cpu"])  # the flag wins
    assert r.exit_code == 2 and "d: not an fmct store" in r.output, r.output
