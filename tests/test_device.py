"""fmct.device: what --device values resolve to (a GPU is simulated: the CI machines have none), and the
inference precision on each kind of device."""

import contextlib
import warnings

import pytest
import torch

from fmct.device import DeviceUnavailable, inference_autocast, module_device, place, resolve_device


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.mark.parametrize("spec", ["auto", None, "AUTO", " cpu ", "cpu", torch.device("cpu")])
def test_without_a_gpu_auto_and_cpu_give_the_cpu(no_gpu, spec) -> None:
    assert resolve_device(spec) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:1"])
def test_a_gpu_asked_for_without_one_is_a_clear_error(no_gpu, spec) -> None:
    with pytest.raises(DeviceUnavailable, match=r"no CUDA GPU is visible .*use 'cpu' or 'auto'") as e:
        resolve_device(spec)
    assert f"'{spec}' asked for" in str(e.value) and "\n" not in str(e.value)


def test_with_gpus_auto_and_cuda_pick_one_and_an_index_must_exist(two_gpus) -> None:
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)  # a torchrun process's GPU
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")  # asked for: kept, GPUs or not
    with pytest.raises(DeviceUnavailable, match=r"'cuda:2' asked for but this machine shows 2 CUDA GPUs"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("spec", ["gpu", "mps", "cpu:1", "auto:0", "cuda:x", "cuda:-1", ""])
def test_unknown_names_are_refused_listing_the_accepted_ones(spec) -> None:
    with pytest.raises(ValueError, match="unknown device .*auto .*cpu, cuda or cuda:N") as e:
        resolve_device(spec)
    assert not isinstance(e.value, DeviceUnavailable)


def test_inference_runs_fp32_on_the_cpu_and_bf16_autocast_on_cuda() -> None:
    ctx = inference_autocast(torch.device("cpu"))
    assert isinstance(ctx, contextlib.nullcontext)  # never autocast on a CPU (no bf16 units: ~3x slower)
    with ctx:
        y = torch.nn.Linear(4, 3)(torch.ones(2, 4))
    assert y.dtype == torch.float32
    with warnings.catch_warnings():  # building a CUDA autocast on a machine without CUDA warns
        warnings.simplefilter("ignore")
        gpu = inference_autocast(torch.device("cuda", 0))
    assert isinstance(gpu, torch.autocast) and gpu.device == "cuda" and gpu.fast_dtype == torch.bfloat16


def test_place_moves_a_module_only_when_a_device_is_given(no_gpu) -> None:
    lin = torch.nn.Linear(2, 2)
    assert place(lin, None) == torch.device("cpu") == module_device(lin)
    assert place(lin, "auto") == torch.device("cpu")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")  # no parameter: the CPU
    assert module_device(object()) == torch.device("cpu")
    with pytest.raises(DeviceUnavailable):
        place(lin, "cuda")


def test_pretraining_resolves_its_device_with_the_same_helper(no_gpu) -> None:
    from fmct.train.config import resolve_config
    from fmct.train.distributed import init_distributed

    assert init_distributed("auto").device == torch.device("cpu")
    with pytest.raises(DeviceUnavailable):
        init_distributed("cuda")
    with pytest.raises(ValueError, match=r"config key 'device': 'cuda' asked for but no CUDA GPU"):
        resolve_config(None, ["device=cuda"])
    assert resolve_config(None, ["device=cpu"])["device"] == "cpu"
