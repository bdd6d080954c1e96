"""torch.distributed setup for ``torchrun``: DDP (gloo on CPU, NCCL on GPU), optional FSDP2.

Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) everything runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from fmct.device import resolve_device


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun; pick the device.

    ``device``: see :func:`fmct.device.resolve_device` (``auto`` and ``cuda`` pick the GPU of ``LOCAL_RANK``);
    a GPU asked for but not there raises :class:`fmct.device.DeviceUnavailable`.
    """

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank=local)
    use_cuda = dev.type == "cuda"
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local, dev)


def wrap_student(module: nn.Module, info: DistInfo, strategy: str = "ddp") -> nn.Module:
    """DDP (default) or FSDP2 ``fully_shard`` (per block, then the root; best effort) when distributed."""
    if not info.enabled:
        return module
    if strategy == "ddp":
        ids = [info.device.index] if info.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        backbone = getattr(module, "backbone", None)
        for blk in getattr(backbone, "blocks", []):
            fully_shard(blk)
        fully_shard(module)
        return module
    raise ValueError(f"distributed.strategy must be 'ddp' or 'fsdp', got {strategy!r}")


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean over ranks (in place); identity when not distributed."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
