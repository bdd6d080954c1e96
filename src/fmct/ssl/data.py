"""Pretraining data: scans from the store -> cached head cubes -> multi-crop batches, deterministically.

Sample number ``p`` (``p = step * global_batch + rank * batch + i``) fully determines which scan is used
(epoch ``p // n`` permutation of the scans from ``seed``) and the augmentation RNG (seeded from
``(seed, p)``), so a resumed run sees exactly the batches an uninterrupted run would, whatever
``num_workers`` is. Each head is cubed once at ``cache_size³`` (~1.5x the global view) and kept in memory
(per worker process), so cropping never touches the full-resolution scan again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from fmct.preprocess.model_input import cube_hu
from fmct.ssl.augment import AugmentConfig, MultiCrop

_MIX_A = 0x9E3779B97F4A7C15
_MIX_B = 0xBF58476D1CE4E5B9


def sample_seed(seed: int, p: int, salt: int = 0) -> int:
    """A 63-bit RNG seed derived from ``(seed, sample number, salt)`` (splitmix-style mixing)."""
    z = (int(seed) * _MIX_A + int(p) * _MIX_B + int(salt) * 0x94D049BB133111EB) & (2**64 - 1)
    z ^= z >> 31
    z = (z * 0xD6E8FEB86659FD93) & (2**64 - 1)
    z ^= z >> 32
    return z & (2**63 - 1)


class SSLDataset(Dataset):
    """Map-style dataset indexed by sample number ``p`` -> ``{"global", "local", "scan_id", "p"}``.

    ``global``: ``(n_global, C, G, G, G)``; ``local``: ``(n_local, C, l, l, l)`` float32 in ``[0, 1]``.
    """

    def __init__(
        self,
        store: Any,
        scan_ids: Sequence[str],
        aug: AugmentConfig,
        cache_size: int,
        seed: int = 0,
        augment: bool = True,
    ) -> None:
        if not scan_ids:
            raise ValueError("no scans to pretrain on (the store has no scan with status ok)")
        self.store = store
        self.scan_ids = list(scan_ids)
        self.aug = aug
        self.crop = MultiCrop(aug)
        self.cache_size = int(cache_size)
        self.seed = int(seed)
        self.augment = augment
        self._cubes: dict[str, torch.Tensor] = {}
        self._perms: dict[int, list[int]] = {}

    def __len__(self) -> int:  # nominal; indices are unbounded sample numbers
        return 2**62

    def scan_for(self, p: int) -> str:
        """Scan id used for sample number ``p`` (epoch-wise permutation of the scan list)."""
        n = len(self.scan_ids)
        epoch, pos = divmod(int(p), n)
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(sample_seed(self.seed, epoch, salt=1))
            self._perms = {epoch: torch.randperm(n, generator=g).tolist()}
        return self.scan_ids[self._perms[epoch][pos]]

    def cube(self, scan_id: str) -> torch.Tensor:
        """Cached ``(L, L, L)`` int16 HU cube of the whole head (``L = cache_size``)."""
        c = self._cubes.get(scan_id)
        if c is None:
            hu, _ = cube_hu(self.store.load(scan_id), self.cache_size)
            c = hu.round().clamp(-32768, 32767).to(torch.int16)
            self._cubes[scan_id] = c
        return c

    def __getitem__(self, p: int) -> dict[str, Any]:
        sid = self.scan_for(p)
        if not self.augment:  # crops are made on the training device by augment_batch
            return {"cube": self.cube(sid), "scan_id": sid, "p": int(p)}
        g = torch.Generator().manual_seed(sample_seed(self.seed, p, salt=2))
        crops = self.crop(self.cube(sid), g)
        return {"global": crops["global"], "local": crops["local"], "scan_id": sid, "p": int(p)}


class StepBatchSampler(Sampler[list[int]]):
    """Yields, for ``step`` in ``[start_step, max_steps)``, this rank's sample numbers of that step.

    ``p = step * batch * world + rank * batch + i`` — a deterministic DistributedSampler-like split.
    """

    def __init__(self, start_step: int, max_steps: int, batch: int, rank: int = 0, world: int = 1) -> None:
        self.start, self.stop, self.batch, self.rank, self.world = start_step, max_steps, batch, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        gb = self.batch * self.world
        for step in range(self.start, self.stop):
            base = step * gb + self.rank * self.batch
            yield list(range(base, base + self.batch))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def augment_batch(batch: dict[str, Any], crop: MultiCrop, seed: int, device: torch.device) -> dict[str, Any]:
    """Make the crops of a batch of cubes (``batch["cube"]`` ``(B, L, L, L)`` int16) on ``device``.

    Same RNG derivation as :meth:`SSLDataset.__getitem__`, so results match the loader path up to
    floating-point differences between devices. Returns the layout of :func:`collate_views`.
    """
    items = []
    cubes = batch["cube"].to(device, non_blocking=True)
    for i, p in enumerate(batch["p"].tolist()):
        g = torch.Generator().manual_seed(sample_seed(seed, p, salt=2))
        items.append({**crop(cubes[i], g), "scan_id": batch["scan_ids"][i], "p": p})
    return collate_views(items)


def collate_views(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack view-major: ``global`` ``(n_global * B, C, G, G, G)`` with rows ``[view0 of all, view1 of all]``,
    ``local`` likewise ``(n_local * B, ...)``; ``scan_ids`` list of B; ``p`` ``(B,)`` long."""
    if "cube" in items[0]:
        return {
            "cube": torch.stack([it["cube"] for it in items]),
            "scan_ids": [it["scan_id"] for it in items],
            "p": torch.tensor([it["p"] for it in items], dtype=torch.long),
        }
    return {
        "global": torch.cat(
            [torch.stack([it["global"][v] for it in items]) for v in range(len(items[0]["global"]))]
        )
        if len(items[0]["global"])
        else torch.zeros(0),
        "local": torch.cat(
            [torch.stack([it["local"][v] for it in items]) for v in range(len(items[0]["local"]))]
        )
        if len(items[0]["local"])
        else torch.zeros(0),
        "scan_ids": [it["scan_id"] for it in items],
        "p": torch.tensor([it["p"] for it in items], dtype=torch.long),
    }


def make_loader(
    dataset: SSLDataset,
    start_step: int,
    max_steps: int,
    batch: int,
    rank: int = 0,
    world: int = 1,
    num_workers: int = 0,
) -> torch.utils.data.DataLoader:
    """DataLoader over :class:`StepBatchSampler`; no global RNG is consumed (fixed loader generator)."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=StepBatchSampler(start_step, max_steps, batch, rank, world),
        collate_fn=collate_views,
        num_workers=num_workers,
        persistent_workers=False,
        prefetch_factor=2 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(0),
    )
