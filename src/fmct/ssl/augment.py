"""3D multi-crop augmentation for head CT, in torch, driven by an explicit ``torch.Generator``.

Input: one head as a HU cube ``(L, L, L)`` (from :func:`fmct.preprocess.model_input.cube_hu`, axes RAS
X, Y, Z). Each crop is one ``affine_grid`` + ``grid_sample`` (crop box + flip + rotation + resize in a
single trilinear resampling, batched over the crops of one size); then CT-specific intensity changes:
HU noise and Gaussian blur, window level/width jitter on the HU -> channel step, gamma on the channels.

Outputs are ``(n, C, S, S, S)`` float32 in ``[0, 1]`` (C = number of windows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F

from fmct.io.volume import AIR_HU
from fmct.preprocess.windows import DEFAULT_WINDOWS


@dataclass
class AugmentConfig:
    """Multi-crop settings. Scales are fractions of the head-cube volume; angles in degrees; HU in HU."""

    global_size: int = 64
    local_size: int = 32
    n_global: int = 2
    n_local: int = 4
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.3)
    flip_p: float = 0.5
    rotate_deg: float = 10.0
    window_level_jitter: float = 0.1  # fraction of the window width
    window_width_jitter: float = 0.2  # log-scale: width * exp(U(-j, j))
    noise_p: float = 0.5
    noise_hu: float = 15.0
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.3, 1.0)  # voxels of the output crop
    gamma_p: float = 0.3
    gamma: tuple[float, float] = (0.75, 1.33)
    windows: tuple[tuple[float, float], ...] = field(default_factory=lambda: tuple(DEFAULT_WINDOWS))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AugmentConfig:
        """Build from a dict, ignoring keys that are not augmentation settings; lists become tuples."""
        names = {f.name for f in fields(cls)}
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k in names:
                kw[k] = (
                    tuple(tuple(w) for w in v) if k == "windows" else (tuple(v) if isinstance(v, list) else v)
                )
        return cls(**kw)


def _uniform(g: torch.Generator, lo: float, hi: float, n: int = 1) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _rotation(angles: torch.Tensor) -> torch.Tensor:
    """``(3,)`` radians about x, y, z -> ``(3, 3)`` rotation ``Rz @ Ry @ Rx``."""
    cx, cy, cz = torch.cos(angles).tolist()
    sx, sy, sz = torch.sin(angles).tolist()
    rx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=torch.float64)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=torch.float64)
    rz = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=torch.float64)
    return rz @ ry @ rx


def crop_thetas(
    n: int, scale: Sequence[float], rotate_deg: float, flip_p: float, g: torch.Generator
) -> torch.Tensor:
    """Random crop transforms for ``affine_grid``: ``(n, 3, 4)`` float32.

    In normalised coordinates ``[-1, 1]`` along array axes (X, Y, Z): a box of side ``s = scale^(1/3)``
    (volume fraction ``scale``) at a random centre that keeps the box inside, rotated by up to
    ``rotate_deg`` about each axis and flipped left-right (X) with probability ``flip_p``. Rows/columns are
    then reordered to grid_sample's (W, H, D) = (Z, Y, X) convention.
    """
    out = torch.empty(n, 3, 4, dtype=torch.float64)
    rev = [2, 1, 0]
    for i in range(n):
        s = float(_uniform(g, scale[0], scale[1])) ** (1.0 / 3.0)
        s = min(s, 1.0)
        centre = _uniform(g, -1.0, 1.0, 3) * (1.0 - s)
        ang = _uniform(g, -1.0, 1.0, 3) * math.radians(rotate_deg)
        m = s * _rotation(ang)
        if float(torch.rand((), generator=g)) < flip_p:
            m = m @ torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
        out[i, :, :3] = m[rev][:, rev]
        out[i, :, 3] = centre[rev]
    return out.float()


def resample_crops(cube: torch.Tensor, thetas: torch.Tensor, size: int) -> torch.Tensor:
    """Sample ``(n, size, size, size)`` HU crops of a ``(L, L, L)`` HU cube; outside the cube is air."""
    n = thetas.shape[0]
    src = (cube.float() - AIR_HU)[None, None].expand(n, 1, *cube.shape)
    grid = F.affine_grid(thetas, [n, 1, size, size, size], align_corners=False)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0] + AIR_HU


def blur_volume(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of one ``(X, Y, Z)`` volume; ``sigma`` in voxels; edges replicate."""
    r = max(1, int(math.ceil(2.0 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    v = x[None, None]
    for dim in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + dim] = k.numel()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - dim)] = r
        pad[2 * (2 - dim) + 1] = r
        v = F.conv3d(F.pad(v, pad, mode="replicate"), k.view(shape))
    return v[0, 0]


def window_jitter(
    hu: torch.Tensor, windows: Sequence[Sequence[float]], level_j: float, width_j: float, g: torch.Generator
) -> torch.Tensor:
    """HU ``(S, S, S)`` -> ``(C, S, S, S)`` in ``[0, 1]`` with jittered (level, width) per window."""
    chans = []
    for level, width in windows:
        w = width * math.exp(float(_uniform(g, -width_j, width_j)))
        lv = level + float(_uniform(g, -level_j, level_j)) * width
        chans.append(((hu - (lv - w / 2.0)) / w).clamp(0.0, 1.0))
    return torch.stack(chans, 0)


def _randn_like(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Standard normal noise shaped like ``x`` on ``x``'s device, seeded from the CPU generator ``g``."""
    if x.device.type == "cpu":
        return torch.randn(x.shape, generator=g)
    dg = torch.Generator(device=x.device).manual_seed(int(torch.randint(0, 2**62, (), generator=g)))
    return torch.randn(x.shape, generator=dg, device=x.device)


def intensity_augment(hu: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """``(n, S, S, S)`` HU crops -> ``(n, C, S, S, S)`` channels with noise, blur, window jitter, gamma."""
    outs = []
    for i in range(hu.shape[0]):
        x = hu[i]
        if float(torch.rand((), generator=g)) < cfg.blur_p:
            x = blur_volume(x, float(_uniform(g, *cfg.blur_sigma)))
        if float(torch.rand((), generator=g)) < cfg.noise_p:
            sigma = float(_uniform(g, 0.0, cfg.noise_hu))
            x = x + sigma * _randn_like(x, g)
        c = window_jitter(x, cfg.windows, cfg.window_level_jitter, cfg.window_width_jitter, g)
        if float(torch.rand((), generator=g)) < cfg.gamma_p:
            lo, hi = cfg.gamma
            gamma = math.exp(float(_uniform(g, math.log(lo), math.log(hi))))
            c = c.clamp_min(1e-6).pow(gamma)
        outs.append(c)
    return torch.stack(outs, 0)


class MultiCrop:
    """``cube (L, L, L) HU`` -> ``{"global": (n_global, C, G, G, G), "local": (n_local, C, l, l, l)}``.

    Runs on the cube's device (CPU in loader workers, or CUDA with ``data.augment_device: cuda``); every
    random choice comes from the CPU generator ``g`` (noise on CUDA from a CUDA generator seeded by ``g``).
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg

    def __call__(self, cube: torch.Tensor, g: torch.Generator) -> dict[str, torch.Tensor]:
        c = self.cfg
        out: dict[str, torch.Tensor] = {}
        for key, n, size, scale in (
            ("global", c.n_global, c.global_size, c.global_scale),
            ("local", c.n_local, c.local_size, c.local_scale),
        ):
            if n == 0:
                out[key] = torch.zeros(0, len(c.windows), size, size, size, device=cube.device)
                continue
            thetas = crop_thetas(n, scale, c.rotate_deg, c.flip_p, g).to(cube.device)
            out[key] = intensity_augment(resample_crops(cube, thetas, size), c, g)
        return out
