"""The scanner: sample the rendered head on a site's acquisition grid and add the site's artefacts.

Geometry (DICOM LPS for the tags, RAS for :class:`~fmct.io.volume.Volume`): an axial image of
``size x size`` pixels (pixel spacing = FOV / size) centred on the isocentre, row direction +L, column
direction +P rotated about the left-right axis by the gantry tilt. With ``shear=True`` (DICOM, a real
tilted gantry) successive slices move along the table (patient z), so the volume is sheared; with
``shear=False`` (NIfTI) slices step along the slice normal (an oblique but orthogonal grid).

Signal chain: slab-averaged trilinear sampling (slice thickness) -> calibration (HU offset and
beam-hardening cupping inside the body) -> additive noise -> in-plane kernel
(Gaussian blur, optional unsharp-mask sharpening; the noise gets the kernel's texture) -> posterior-fossa
streaks -> clip to [-1024, 3071] HU -> quantise to integers with the site's rescale intercept.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from fmct.io.dicom_geometry import LPS_TO_RAS
from fmct.synth.anatomy import Grid, bounding_box
from fmct.synth.sites import Site

HU_MIN, HU_MAX = -1024.0, 3071.0


@dataclass
class Pose:
    """Head placement in the scanner: ``world_RAS = rotation @ head + offset`` (mm)."""

    rotation: np.ndarray  # (3, 3)
    offset: np.ndarray  # (3,)
    angles_deg: tuple[float, float, float]  # yaw (about z), pitch (about x), roll (about y)

    @property
    def head_to_world(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.offset
        return m


def _rot(axis: int, deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def sample_pose(rng: np.random.Generator) -> Pose:
    """Rotation (yaw ±8°, pitch -15..+10°, roll ±6°) and an offset in the FOV (head on the head rest)."""
    yaw, pitch, roll = rng.uniform(-8, 8), rng.uniform(-15, 10), rng.uniform(-6, 6)
    r = _rot(2, yaw) @ _rot(0, pitch) @ _rot(1, roll)
    off = np.array([rng.uniform(-10, 10), rng.uniform(-14, 6), 0.0])
    return Pose(rotation=r, offset=off, angles_deg=(float(yaw), float(pitch), float(roll)))


@dataclass
class Geometry:
    """One scan's acquisition grid.

    Attributes:
        size: in-plane matrix (rows = columns = size).
        n_slices: number of slices.
        pixel_mm: pixel spacing (mm).
        spacing_mm: distance between slice planes along their normal (mm).
        thickness_mm: slice thickness (slab width, mm).
        tilt_deg: gantry tilt.
        row_lps, col_lps: DICOM ImageOrientationPatient direction cosines (LPS).
        step_lps: vector between successive slice positions (LPS mm).
        first_lps: ImagePositionPatient of slice 0 (LPS mm).
    """

    size: int
    n_slices: int
    pixel_mm: float
    spacing_mm: float
    thickness_mm: float
    tilt_deg: float
    row_lps: np.ndarray
    col_lps: np.ndarray
    step_lps: np.ndarray
    first_lps: np.ndarray

    @property
    def normal_lps(self) -> np.ndarray:
        return np.cross(self.row_lps, self.col_lps)

    @property
    def affine(self) -> np.ndarray:
        """Voxel ``(column, row, slice)`` -> RAS mm, i.e. the :class:`Volume` affine of the scan."""
        a = np.eye(4)
        a[:3, 0] = self.row_lps * self.pixel_mm
        a[:3, 1] = self.col_lps * self.pixel_mm
        a[:3, 2] = self.step_lps
        a[:3, 3] = self.first_lps
        return LPS_TO_RAS @ a

    def position_lps(self, k: int) -> np.ndarray:
        """ImagePositionPatient of slice ``k``."""
        return self.first_lps + k * self.step_lps


def make_geometry(
    site: Site, size: int, rng: np.random.Generator, head_z: float, shear: bool = True
) -> Geometry:
    """The acquisition grid of one scan; ``head_z`` is the world z (mm) of the head-frame origin."""
    fov = rng.uniform(*site.fov_mm)
    pixel = fov / size
    spacing = max(site.slice_thickness_mm, pixel) if size < 256 else site.slice_thickness_mm
    thickness = spacing
    tilt = float(rng.uniform(*site.tilt_deg)) if site.tilt_deg[1] > 0 else 0.0
    t = np.deg2rad(tilt)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(t), -np.sin(t)])
    normal = np.cross(row, col)
    n = int(round(site.coverage_mm / spacing))
    step = np.array([0.0, 0.0, spacing / np.cos(t)]) if shear else normal * spacing
    z0 = head_z - 78.0 + rng.uniform(-6.0, 4.0)
    centre0 = np.array([0.0, 0.0, z0])
    first = centre0 - (size - 1) / 2 * pixel * (row + col)
    return Geometry(
        size=size,
        n_slices=n,
        pixel_mm=float(pixel),
        spacing_mm=float(spacing),
        thickness_mm=float(thickness),
        tilt_deg=tilt,
        row_lps=row,
        col_lps=col,
        step_lps=step,
        first_lps=first,
    )


def output_to_internal(geom: Geometry, pose: Pose, grid: Grid) -> np.ndarray:
    """``(4, 4)`` map from output voxel index to internal-grid voxel index."""
    return np.linalg.inv(grid.affine) @ np.linalg.inv(pose.head_to_world) @ geom.affine


def slab_offsets(geom: Geometry, h: float) -> np.ndarray:
    """Sub-slice offsets (in slice-index units along the normal) that average a slab of the slice thickness."""
    n_sub = int(min(5, max(1, np.ceil(geom.thickness_mm / (1.25 * h)))))
    if n_sub == 1:
        return np.zeros(1)
    along_normal = float(np.dot(geom.step_lps, geom.normal_lps))
    fr = ((np.arange(n_sub) + 0.5) / n_sub - 0.5) * geom.thickness_mm
    return fr / along_normal


def resample(
    volume: np.ndarray,
    m: np.ndarray,
    out_shape,
    offsets: np.ndarray,
    order: int = 1,
    cval: float = -1000.0,
    start: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """Sample ``volume`` at ``m @ (index + start)`` for every output index, averaged over slab ``offsets``.

    Args:
        volume: ``(X, Y, Z)`` float32 source.
        m: ``(4, 4)`` output voxel index -> source voxel index.
        out_shape: output shape ``(X', Y', Z')``.
        offsets: sub-slice offsets along the output's third index (slab averaging); at least one.
        order: 1 = trilinear (torch ``grid_sample``), other orders use ``scipy.ndimage.affine_transform``.
        cval: value outside ``volume`` (constant padding: interpolation blends towards it at the border).
        start: output index of the first output voxel (to sample a sub-box of a larger output grid).

    Returns:
        ``out_shape`` float32; for ``order=1`` its memory is slice-major (``out.transpose(2, 1, 0)`` is
        C-contiguous, see :meth:`LinearSampler.sample`).
    """
    if order == 1:
        return LinearSampler(volume, cval).sample(m, tuple(int(v) for v in out_shape), offsets, start)
    out = np.zeros(out_shape, dtype=np.float32)
    for off in offsets:
        st = np.asarray(start, dtype=np.float64) + np.array([0.0, 0.0, off])
        offset = m[:3, :3] @ st + m[:3, 3]
        out += ndi.affine_transform(
            volume,
            m[:3, :3],
            offset=offset,
            output_shape=out_shape,
            order=order,
            mode="constant",
            cval=cval,
            output=np.float32,
            prefilter=False,
        )
    if len(offsets) > 1:
        out /= len(offsets)
    return out


class LinearSampler:
    """Trilinear sampling of one source volume with ``torch.nn.functional.grid_sample`` on one thread.

    ``volume - cval`` is sampled with zero padding and ``cval`` added back; points outside the source's
    index range are moved far outside, so they read ``cval`` exactly as scipy's
    ``affine_transform(mode="constant")`` does (no blending towards ``cval`` beyond the edge voxels).
    The source is prepared once, so several output boxes can be sampled from it.

    Most of a head CT's field of view is air (about 30 % of a 256² x 144 scan is not), so the output is
    cut into blocks of ``BLOCK``³ voxels and a block is only sampled if the source voxels it can read
    (its trilinear footprint, slab included) hold something other than ``cval``; the others are ``cval``
    exactly. The test uses a summed-area table of the non-``cval`` voxels counted per cell of ``CELL``³
    source voxels (conservative: a block near the head is sampled even if it only touches air).

    Args:
        volume: ``(X, Y, Z)`` source (any real dtype; sampled as float32).
        cval: value outside the source.
        skip_air: skip the blocks that read only ``cval`` (False samples every block; same result, slower:
            ``benchmarks/synth_speed.py`` compares the two).
    """

    BLOCK = 8  # output voxels per block side
    CELL = 4  # source voxels per occupancy cell side
    BLOCKS_PER_CALL = 96  # blocks per grid_sample call (~50k points)

    def __init__(self, volume: np.ndarray, cval: float, skip_air: bool = True) -> None:
        import torch

        src = np.asarray(volume, dtype=np.float32)
        if min(src.shape) < 2:  # normalised coordinates need >= 2 samples per axis; pad with cval (exact)
            src = np.pad(src, [(0, max(0, 2 - n)) for n in src.shape], constant_values=np.float32(cval))
        src = src - np.float32(cval) if cval != 0 else np.ascontiguousarray(src)
        self.cval = float(cval)
        # (low, high) faces of source axes 2, 1, 0 (grid components 0, 1, 2) holding something other than cval
        self.faces = [
            (bool(np.any(np.take(src, 0, axis=d))), bool(np.any(np.take(src, -1, axis=d)))) for d in (2, 1, 0)
        ]
        self.norm = np.array([2.0 / (n - 1) for n in src.shape])
        self.occupancy = _cell_counts(src != 0, self.CELL) if skip_air else None
        #: share of output blocks sampled by the last :meth:`sample` call (the rest were cval)
        self.sampled_fraction = 0.0
        #: output-index box ``(X, Y, Z)`` slices of the blocks sampled by the last :meth:`sample` call
        #: (every voxel outside it is cval), or None when no block was sampled
        self.sampled_box: tuple[slice, slice, slice] | None = None
        # tensor (N=1, C=1, D=X, H=Y, W=Z): grid component 0 addresses W (= source axis 2), 2 addresses D
        self.src = torch.from_numpy(src)[None, None]

    def sample(
        self,
        m: np.ndarray,
        out_shape: tuple[int, int, int],
        offsets: np.ndarray,
        start: tuple[int, int, int] = (0, 0, 0),
    ) -> np.ndarray:
        """Values at ``m @ (index + start + (0, 0, off))`` averaged over ``offsets``: ``out_shape`` float32.

        The result is a ``(X, Y, Z)`` view of slice-major memory (``out.transpose(2, 1, 0)`` is a C-contiguous
        ``(Z, Y, X)`` array): the acquisition filters each slice in place and DICOM stores slices row by
        row, so neither has to transpose the volume.

        Coordinates are float32 normalised units (``align_corners=True``: index ``i`` of a size-``n`` axis
        is ``2 i / (n - 1) - 1``), built per block as the block origin plus a shared in-block pattern.
        The points of a block are visited z fastest (along the source's contiguous axis: ~1.3x faster
        sampling than x fastest); each sampled block is transposed to ``(k, j, i)`` before it is stored.
        """
        import torch
        import torch.nn.functional as F  # noqa: N812

        nx, ny, nz = (int(v) for v in out_shape)
        if nx == 0 or ny == 0 or nz == 0:
            return np.zeros((nx, ny, nz), dtype=np.float32)
        bs = self.BLOCK
        nb = [-(-n // bs) for n in (nx, ny, nz)]
        offsets = np.asarray(offsets, dtype=np.float64).reshape(-1)
        m3, t = m[:3, :3], m[:3, 3] + m[:3, :3] @ np.asarray(start, dtype=np.float64)
        origins = np.stack(np.meshgrid(*[np.arange(k) * bs for k in nb], indexing="ij"), -1).reshape(-1, 3)
        if self.occupancy is None:
            todo = np.arange(len(origins))
        else:
            todo = np.nonzero(self._may_touch(origins, m3, t, offsets))[0]
        self.sampled_fraction = float(len(todo)) / len(origins)
        self.sampled_box = None
        if len(todo):
            lo, hi = origins[todo].min(0), np.minimum(origins[todo].max(0) + bs, (nx, ny, nz))
            self.sampled_box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        # slice-major (Z, Y, X) memory; blocks[bx, by, bz] is the (k, j, i) block at that block index (a view)
        padded = np.full((nb[2] * bs, nb[1] * bs, nb[0] * bs), np.float32(self.cval), dtype=np.float32)
        blocks = padded.reshape(nb[2], bs, nb[1], bs, nb[0], bs).transpose(4, 2, 0, 1, 3, 5)
        a = m3 * self.norm[:, None]  # output index -> normalised source coordinate (source axis order)
        local = np.stack(np.meshgrid(*[np.arange(bs, dtype=np.float64)] * 3, indexing="ij"), -1) @ a.T
        # in-block offsets (bs, bs, bs, 3) [i, j, k] in grid_sample's component order (source z, y, x)
        local = np.ascontiguousarray(local[..., ::-1], dtype=np.float32)
        local_lo, local_hi = local.reshape(-1, 3).min(0), local.reshape(-1, 3).max(0)
        local_t = torch.from_numpy(local)
        with _torch_threads(1), torch.no_grad():
            for c0 in range(0, len(todo), self.BLOCKS_PER_CALL):
                sel = todo[c0 : c0 + self.BLOCKS_PER_CALL]
                acc = None
                for off in offsets:
                    base = (origins[sel] @ a.T) + (t + m3[:, 2] * off) * self.norm - 1.0  # (n, 3)
                    xyz = np.ascontiguousarray(base[:, ::-1], dtype=np.float32)
                    grid = torch.from_numpy(xyz)[:, None, None, None, :] + local_t
                    self._outside_to_far(grid, xyz.min(0) + local_lo, xyz.max(0) + local_hi)
                    res = F.grid_sample(
                        self.src,
                        grid.reshape(1, -1, bs, bs, 3),
                        mode="bilinear",
                        padding_mode="zeros",
                        align_corners=True,
                    )[0, 0]
                    acc = res if acc is None else acc + res
                # [i, j, k] -> [k, j, i]: the blocks of slice-major memory
                vals = acc.numpy().reshape(len(sel), bs, bs, bs).transpose(0, 3, 2, 1)
                if len(offsets) > 1:
                    vals = vals / np.float32(len(offsets))
                if self.cval != 0:
                    vals = vals + np.float32(self.cval)
                blocks[np.unravel_index(sel, nb)] = vals
        return np.ascontiguousarray(padded[:nz, :ny, :nx]).transpose(2, 1, 0)

    def _may_touch(
        self, origins: np.ndarray, m3: np.ndarray, t: np.ndarray, offsets: np.ndarray
    ) -> np.ndarray:
        """``(n,)`` bool: may the output block at ``origins (n, 3)`` read a source voxel other than cval?"""
        bs = self.BLOCK
        half = np.array([(bs - 1) / 2, (bs - 1) / 2, (bs - 1) / 2 + np.abs(offsets).max()])
        centre = origins + np.array([(bs - 1) / 2] * 3)
        c_src = centre @ m3.T + t
        ext = np.abs(m3) @ half
        # trilinear footprint: voxels floor(lo) .. floor(hi) + 1; as occupancy cells, clipped to the source
        cells = self.occupancy.shape
        lo = np.floor(np.floor(c_src - ext) / self.CELL).astype(np.int64)
        hi = np.floor((np.floor(c_src + ext) + 1) / self.CELL).astype(np.int64)
        inside = np.all((hi >= 0) & (lo < np.array(cells) - 1), axis=1)
        lo = np.clip(lo, 0, np.array(cells) - 2)
        hi = np.clip(hi, 0, np.array(cells) - 2) + 1
        s = self.occupancy
        count = (
            s[hi[:, 0], hi[:, 1], hi[:, 2]]
            - s[lo[:, 0], hi[:, 1], hi[:, 2]]
            - s[hi[:, 0], lo[:, 1], hi[:, 2]]
            - s[hi[:, 0], hi[:, 1], lo[:, 2]]
            + s[lo[:, 0], lo[:, 1], hi[:, 2]]
            + s[lo[:, 0], hi[:, 1], lo[:, 2]]
            + s[hi[:, 0], lo[:, 1], lo[:, 2]]
            - s[lo[:, 0], lo[:, 1], lo[:, 2]]
        )
        return inside & (count > 0)

    def _outside_to_far(self, grid, lo, hi) -> None:
        """Move points outside the source (in place) where a face is not cval and the chunk crosses it."""
        outside = None
        for g, (f_lo, f_hi) in enumerate(self.faces):
            if f_lo and lo[g] < -1.0:
                o = grid[..., g] < -1.0
                outside = o if outside is None else outside | o
            if f_hi and hi[g] > 1.0:
                o = grid[..., g] > 1.0
                outside = o if outside is None else outside | o
        if outside is not None:
            grid.masked_fill_(outside[..., None], 4.0)


def _cell_counts(occupied: np.ndarray, cell: int) -> np.ndarray:
    """Summed-area table of ``occupied (X, Y, Z)`` counted per cell of ``cell``³ voxels.

    Returns ``(cx + 1, cy + 1, cz + 1)`` int64 with a zero first plane per axis: the number of occupied
    cells in ``[a, b)`` per axis is the usual 8-term inclusion-exclusion of its corners.
    """
    pad = [(0, (-n) % cell) for n in occupied.shape]
    occ = np.pad(occupied, pad) if any(p[1] for p in pad) else occupied
    cx, cy, cz = (n // cell for n in occ.shape)
    per_cell = occ.reshape(cx, cell, cy, cell, cz, cell)
    # "any" over each cell, one axis at a time, as elementwise ORs of strided views
    # (``any(axis=(1, 3, 5))`` gives the same, ~10x slower: 15 ms for 149 x 187 x 168)
    per_cell = functools.reduce(np.logical_or, (per_cell[:, i] for i in range(cell)))  # (cx, cy, c, cz, c)
    per_cell = functools.reduce(np.logical_or, (per_cell[:, :, i] for i in range(cell)))  # (cx, cy, cz, c)
    per_cell = functools.reduce(np.logical_or, (per_cell[..., i] for i in range(cell)))  # (cx, cy, cz)
    out = np.zeros((cx + 1, cy + 1, cz + 1), dtype=np.int64)
    out[1:, 1:, 1:] = per_cell.cumsum(0).cumsum(1).cumsum(2)
    return out


def _streaks(
    geom: Geometry, pose: Pose, site: Site, rng: np.random.Generator
) -> list[tuple[int, np.ndarray]]:
    """Beam-hardening streaks in the slices through the posterior fossa: ``[(slice, (X, Y) HU), ...]``."""
    if site.streak_hu <= 0:
        return []
    aff = geom.affine
    head_z = pose.offset[2]
    ks = [k for k in range(geom.n_slices) if -58.0 < (aff @ [0, 0, k, 1])[2] - head_z < -22.0]
    if not ks:
        return []
    n = geom.size
    jj = np.arange(n, dtype=np.float32)[:, None] * geom.pixel_mm
    ii = np.arange(n, dtype=np.float32)[None, :] * geom.pixel_mm
    out = []
    amp = site.streak_hu * rng.uniform(0.6, 1.4)
    lines = []
    for _ in range(int(rng.integers(3, 7))):
        c = np.array([rng.uniform(0.35, 0.65), rng.uniform(0.45, 0.7)]) * n * geom.pixel_mm
        a = rng.uniform(0, np.pi)
        lines.append((c, np.array([np.cos(a), np.sin(a)]), rng.choice([-1.0, 1.0]), rng.uniform(1.0, 3.0)))
    pattern = np.zeros((n, n), dtype=np.float32)
    for c, d, sgn, w in lines:
        dist = (jj - c[0]) * d[1] - (ii - c[1]) * d[0]
        pattern += sgn * np.exp(-(dist * dist) / (2 * w * w))
    pattern *= np.float32(amp)
    for k in ks:
        out.append((k, pattern * np.float32(rng.uniform(0.3, 1.0))))
    return out


#: Slices that :func:`acquire` takes through calibration, noise, kernel, streaks and quantisation
#: together (about 1 MB at 256², so the chain runs in cache: the acquisition takes 0.25 s instead of
#: 0.28 s with whole-volume passes, measured here). It also fixes the order in which the noise is drawn.
SLICES_PER_CHUNK = 4


def acquire(
    hu_internal: np.ndarray, grid: Grid, geom: Geometry, pose: Pose, site: Site, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Scan the head.

    The signal chain runs in place on slice-major memory (``(Z, Y, X)``, C-contiguous), where the in-plane
    kernel filters along contiguous rows and the DICOM writer reads each slice without a transpose; after
    the sampling, every step (calibration, noise, kernel, streaks, quantisation) is in-plane, so it runs
    :data:`SLICES_PER_CHUNK` slices at a time.

    Returns:
        stored: ``(size, size, n_slices)`` integer pixel values (int16 or uint16, column/row/slice order).
        hu: the same image in HU (float32) = ``stored + site.rescale_intercept``.
        Both are ``(X, Y, Z)`` views of slice-major arrays (``a.transpose(2, 1, 0)`` is C-contiguous).
    """
    m = output_to_internal(geom, pose, grid)
    shape = (geom.size, geom.size, geom.n_slices)
    sampler = LinearSampler(hu_internal, -1000.0)
    img = _c_contiguous(sampler.sample(m, shape, slab_offsets(geom, grid.h)).transpose(2, 1, 0))
    body = sampler.sampled_box  # air (-1000 HU) outside
    bias = _calibration_bias(geom, site) if body is not None else None
    sigma = site.kernel_sigma_mm / geom.pixel_mm
    noise_sd = site.noise_hu * np.sqrt(site.slice_thickness_mm / geom.thickness_mm)
    # white noise scaled so that after the kernel its standard deviation is ``noise_sd``
    probe = rng.standard_normal((64, 64, 1), dtype=np.float32)
    probe_k = _kernel(probe, sigma, site.sharpen, geom.pixel_mm, slice_major=False)
    gain = noise_sd / max(float(probe_k[8:-8, 8:-8].std()), 1e-6)
    noise = _noise_generator(rng)
    streaks = {k: streak.T for k, streak in _streaks(geom, pose, site, rng)}  # (row, column) per slice
    stored = np.empty(img.shape, dtype=np.int16 if site.pixel_signed else np.uint16)
    with _torch_threads(1):
        for z0 in range(0, img.shape[0], SLICES_PER_CHUNK):
            part = img[z0 : z0 + SLICES_PER_CHUNK]
            if bias is not None:
                _calibrate(part, z0, bias, body)
            _add_noise(part, gain, noise)
            _kernel(part, sigma, site.sharpen, geom.pixel_mm, slice_major=True)
            for k in range(z0, z0 + len(part)):
                if k in streaks:
                    part[k - z0] += streaks[k]
            _quantise(part, site, out=stored[z0 : z0 + SLICES_PER_CHUNK])
    return stored.transpose(2, 1, 0), img.transpose(2, 1, 0)


def _c_contiguous(a: np.ndarray) -> np.ndarray:
    """``a`` itself when it is C-contiguous, else a C-contiguous copy."""
    return a if a.flags.c_contiguous else np.ascontiguousarray(a)


def _quantise(img: np.ndarray, site: Site, out: np.ndarray | None = None) -> np.ndarray:
    """Quantise ``img`` (HU, float32) in place; returns the stored pixel values (int16 / uint16, written
    into ``out`` when given).

    stored = ``rint(clip(img, HU_MIN, HU_MAX) - rescale_intercept)`` clipped to the pixel type, and
    ``img`` becomes ``stored + rescale_intercept`` (float32, exact). The intercept is subtracted before
    the clip (clipping to the shifted range gives the same values: rounding is monotone).
    """
    intercept = np.float32(site.rescale_intercept)
    dtype = np.int16 if site.pixel_signed else np.uint16
    info = np.iinfo(dtype)
    if intercept != 0:
        img -= intercept
    lo, hi = max(HU_MIN - float(intercept), info.min), min(HU_MAX - float(intercept), info.max)
    np.clip(img, lo, hi, out=img)
    np.rint(img, out=img)
    if out is None:
        out = np.empty(img.shape, dtype=dtype)
    elif out.dtype != dtype:
        raise TypeError(f"out must be {np.dtype(dtype)}, got {out.dtype}")
    np.copyto(out, img, casting="unsafe")
    if intercept != 0:
        img += intercept  # == out.astype(float32) + intercept, bit for bit
    return out


def _noise_generator(rng: np.random.Generator):
    """A torch generator seeded from ``rng`` (one draw) for :func:`_add_noise`."""
    import torch

    return torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))


def _add_noise(img: np.ndarray, gain: float, generator) -> None:
    """Add ``gain`` x standard normal float32 noise from ``generator`` to ``img`` (C-contiguous float32).

    torch's vectorised ``randn``: ~0.03 s for 256² x 144 on one thread against 0.08-0.15 s for numpy's
    ``standard_normal`` (measured here).
    """
    import torch

    noise = torch.randn(img.shape, generator=generator, dtype=torch.float32)
    noise *= float(np.float32(gain))
    torch.from_numpy(img).add_(noise)


@contextlib.contextmanager
def _torch_threads(n: int):
    """Run the block with torch limited to ``n`` threads (per-core throughput; fork-safe in cohort workers)."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _calibration_bias(geom: Geometry, site: Site) -> np.ndarray | None:
    """Scanner calibration as an in-plane ``(row, column)`` float32 bias (HU) for the voxels inside the
    body: a HU offset and a radial beam-hardening cupping; None when the site has neither."""
    if site.hu_offset == 0 and site.cupping_hu == 0:
        return None
    n = geom.size
    c = (np.arange(n, dtype=np.float32) - (n - 1) / 2) * np.float32(geom.pixel_mm)
    rho2 = (c[:, None] ** 2 + c[None, :] ** 2) / np.float32(80.0**2)
    bias = (np.float32(site.hu_offset) - np.float32(site.cupping_hu) * np.clip(1.0 - rho2, 0.0, 1.0)).astype(
        np.float32
    )
    return bias.T


def _calibrate(img: np.ndarray, z0: int, bias: np.ndarray, box: tuple[slice, slice, slice]) -> None:
    """Add ``bias`` (:func:`_calibration_bias`) in place to the voxels above -300 HU (the body) of ``img``:
    slices ``z0, z0 + 1, ...`` of a slice-major volume that is air outside ``box`` (``(X, Y, Z)`` slices)."""
    bx, by, bz = box
    k0, k1 = max(bz.start - z0, 0), min(bz.stop - z0, len(img))
    if k1 > k0:
        sub = img[k0:k1, by, bx]
        np.add(sub, bias[None, by, bx], out=sub, where=sub > -300.0)


def _kernel(img: np.ndarray, sigma: float, sharpen: float, pixel_mm: float, slice_major: bool) -> np.ndarray:
    """In-plane reconstruction kernel: Gaussian blur (``sigma`` px) then unsharp masking (``sharpen``).

    ``img`` is float32, ``(X, Y, Z)`` or, with ``slice_major``, C-contiguous ``(Z, Y, X)``; filtered in
    place (and returned). Each Gaussian (mode ``nearest``, truncated at 3 sigma) runs along x then y,
    value for value what ``gaussian_filter(img, (s, s, 0))`` gives on ``(X, Y, Z)``.
    """

    def blur(src: np.ndarray, s: float, out: np.ndarray) -> np.ndarray:
        if not slice_major:
            ndi.gaussian_filter1d(src, s, axis=0, mode="nearest", truncate=3.0, output=out)
            return ndi.gaussian_filter1d(out, s, axis=1, mode="nearest", truncate=3.0, output=out)
        ndi.gaussian_filter1d(src, s, axis=2, mode="nearest", truncate=3.0, output=out)
        return _gaussian_columns(out, s, out)

    if img.dtype != np.float32:
        raise TypeError(f"kernel expects float32, got {img.dtype}")
    if sigma > 0.05:
        blur(img, sigma, img)
    if sharpen > 0:
        s = max(0.8 / pixel_mm, 0.5)
        detail = blur(img, s, np.empty_like(img))
        np.subtract(img, detail, out=detail)
        detail *= np.float32(sharpen)
        img += detail
    return img


def _gaussian_weights(sigma: float, truncate: float = 3.0) -> np.ndarray:
    """float64 taps of a Gaussian of ``sigma`` samples truncated at ``truncate`` sigma, summing to 1, as
    ``scipy.ndimage.gaussian_filter1d`` builds them."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x**2)
    return phi / phi.sum()


def _gaussian_columns(img: np.ndarray, sigma: float, out: np.ndarray) -> np.ndarray:
    """Gaussian along axis 1 of a C-contiguous float32 ``(Z, Y, X)`` volume into ``out`` (may be ``img``).

    Mode ``nearest``, truncated at 3 sigma, and the arithmetic of ``scipy.ndimage.correlate1d`` for a
    symmetric filter (float64: centre tap, then the pairs of neighbours from the outermost in, rounded to
    float32 once), so the result equals ``gaussian_filter1d(img, sigma, axis=1, ...)``. Run slice by slice
    on whole rows: 0.03 s against scipy's 0.04 s along this strided axis for 256² x 144 (measured here).
    """
    w = _gaussian_weights(sigma)
    r = len(w) // 2
    ny = img.shape[1]
    padded = np.empty((ny + 2 * r, img.shape[2]))
    acc, pair = np.empty(img.shape[1:]), np.empty(img.shape[1:])
    for k in range(img.shape[0]):
        padded[r : r + ny] = img[k]
        padded[:r], padded[r + ny :] = img[k, :1], img[k, -1:]  # nearest: repeat the edge rows
        np.multiply(padded[r : r + ny], w[r], out=acc)
        for d in range(r, 0, -1):
            np.add(padded[r - d : r - d + ny], padded[r + d : r + d + ny], out=pair)
            pair *= w[r - d]
            acc += pair
        out[k] = acc
    return out


def sample_mask(
    mask_internal: np.ndarray, values: list[int], grid: Grid, geom: Geometry, pose: Pose
) -> np.ndarray:
    """Put the internal label map on the acquisition grid (partial volume >= 0.5 per label).

    A label present internally is never lost: if no output voxel reaches 0.5, the voxel with the largest
    partial volume gets it. Larger regions are painted first so small ones stay visible.
    """
    m = output_to_internal(geom, pose, grid)
    minv = np.linalg.inv(m)
    shape = (geom.size, geom.size, geom.n_slices)
    out = np.zeros(shape, dtype=np.uint8)
    offsets = slab_offsets(geom, grid.h)
    best: list[tuple[int, tuple[int, int, int]]] = []
    regions = []
    for v in values:
        sel = mask_internal == v
        n_v = np.count_nonzero(sel)
        if n_v:
            regions.append((n_v, v, sel))
    for _, v, sel in sorted(regions, key=lambda t: -t[0]):
        box = bounding_box(sel)
        assert box is not None  # the region is not empty
        # the region's index range, one voxel wider on each side (inclusive)
        lo = np.array([b.start for b in box]) - 1
        hi = np.array([b.stop for b in box])
        corners = np.array(
            [[a, b, c, 1.0] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]
        )
        oc = (minv @ corners.T).T[:, :3]
        o_lo = np.clip(np.floor(oc.min(0)).astype(int) - 2, 0, np.array(shape) - 1)
        o_hi = np.clip(np.ceil(oc.max(0)).astype(int) + 3, 1, np.array(shape))
        if np.any(o_hi <= o_lo):
            continue
        lo_c = np.maximum(lo, 0)
        crop = sel[lo_c[0] : hi[0] + 1, lo_c[1] : hi[1] + 1, lo_c[2] : hi[2] + 1].astype(np.float32)
        mc = m.copy()
        mc[:3, 3] -= lo_c
        frac = resample(crop, mc, tuple(o_hi - o_lo), offsets, cval=0.0, start=tuple(o_lo))
        hit = frac >= 0.5
        sub = out[o_lo[0] : o_hi[0], o_lo[1] : o_hi[1], o_lo[2] : o_hi[2]]
        sub[hit] = v
        if frac.max() > 0:
            best.append(
                (
                    v,
                    tuple(
                        int(a) + int(b)
                        for a, b in zip(np.unravel_index(int(frac.argmax()), frac.shape), o_lo, strict=True)
                    ),
                )
            )
    # a label covered by others or thinner than a voxel keeps its most covered voxel
    for v, at in best:
        if not (out == v).any():
            out[at] = v
    return out
