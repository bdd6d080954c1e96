"""THE preprocessing every entry point uses (ingest, embed, predict, the model card).

``preprocess(path_or_volume, cfg)``: clip HU -> reorient to RAS + resample to isotropic ``spacing``
(trilinear, float32, one pass over the head's region of the source) -> crop to the head -> optional deface (then crop again) -> int16 HU.
The exact :class:`PreprocessConfig` goes into the store and into every model's ``config.json``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from fmct.io import load_volume
from fmct.io.errors import InvalidScan
from fmct.io.volume import AIR_HU, Volume
from fmct.preprocess.windows import DEFAULT_WINDOWS
from fmct.timing import stage

#: Bumped when the output of ``preprocess`` changes for the same config.
PREPROCESS_VERSION = 1


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of :func:`preprocess` (all JSON-able through :meth:`to_dict`).

    Attributes:
        spacing: output isotropic voxel size in mm.
        crop_head: crop to the head (largest body above ``foreground_hu``; table and air removed).
        deface: set the face in front of and below the brain to air (see :mod:`fmct.preprocess.deface`).
        windows: ``(level, width)`` HU windows for the model input channels (used downstream, stored here
            so a model's config carries the whole input definition).
        foreground_hu: threshold for the head mask.
        crop_margin_mm: margin kept around the head's bounding box.
        clip_hu: HU clipped to this range before resampling (padding outside the scan circle such as
            -3024 would otherwise bleed into the head edges).
        deface_margin_mm: tissue within this distance of the brain survives defacing.
    """

    spacing: float = 1.0
    crop_head: bool = True
    deface: bool = False
    windows: tuple[tuple[float, float], ...] = DEFAULT_WINDOWS
    foreground_hu: float = -500.0
    crop_margin_mm: float = 5.0
    clip_hu: tuple[float, float] = (-1024.0, 3071.0)
    deface_margin_mm: float = 15.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", tuple((float(lv), float(w)) for lv, w in self.windows))
        object.__setattr__(self, "clip_hu", tuple(float(v) for v in self.clip_hu))
        if not self.spacing > 0:
            raise ValueError(f"spacing must be > 0 mm, got {self.spacing}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists) with a ``version`` key."""
        d = asdict(self)
        d["windows"] = [list(w) for w in self.windows]
        d["clip_hu"] = list(self.clip_hu)
        d["version"] = PREPROCESS_VERSION
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; missing keys take defaults, unknown keys raise ``ValueError``."""
        d = dict(d or {})
        d.pop("version", None)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown preprocess keys: {unknown} (known: {sorted(known)})")
        return cls(**d)


def _load(path: str | os.PathLike) -> Volume:
    return load_volume(path)


def _to_int16(arr: np.ndarray) -> np.ndarray:
    """Rounded, saturated int16 copy (C order); rounds ``arr`` in place (always preprocess' own array)."""
    out = np.rint(arr, out=arr) if arr.dtype == np.float32 and arr.flags.writeable else np.rint(arr)
    np.clip(out, -32768, 32767, out=out)
    return np.ascontiguousarray(out.astype(np.int16))


def preprocess(path_or_volume: str | os.PathLike | Volume, cfg: PreprocessConfig | None = None) -> Volume:
    """Preprocess one scan the way fmct stores and feeds it.

    Args:
        path_or_volume: a :class:`Volume` (any orientation and spacing, HU), a NIfTI file, or a folder
            holding one DICOM series.
        cfg: parameters; default ``PreprocessConfig()``.

    Returns:
        ``Volume`` with ``array (X, Y, Z)`` int16 HU in RAS at ``cfg.spacing`` mm isotropic, head-cropped,
        ``affine = diag(spacing) + origin`` (voxel -> RAS mm), and ``meta["preprocess"]`` recording the
        config and what was done (source shape/spacing, resampling path, crop box, defacing).

    Raises:
        SkipScan: nothing above the foreground threshold. InvalidScan: NaN/Inf voxel values (a Volume
        passed in directly; readers already refuse them), values that are not HU (no voxel below
        -500, see :mod:`fmct.preprocess.hu_check`), or defacing asked for but no brain.
    """
    from fmct.preprocess.crop import crop_head
    from fmct.preprocess.deface import deface as deface_volume
    from fmct.preprocess.geometry import to_ras_isotropic
    from fmct.preprocess.hu_check import check_looks_like_hu

    cfg = cfg or PreprocessConfig()
    vol = path_or_volume if isinstance(path_or_volume, Volume) else _load(path_or_volume)
    del path_or_volume  # the source is freed once resampled unless the caller holds it (ingest hands it over)
    with stage("hu check"):
        if np.asarray(vol.array).dtype.kind in "fc" and not np.isfinite(vol.array).all():
            raise InvalidScan("volume contains NaN/Inf voxel values")
        check_looks_like_hu(vol.array)
    record: dict[str, Any] = {
        **cfg.to_dict(),
        "source_shape": list(vol.shape),
        "source_spacing_mm": [round(s, 4) for s in vol.spacing],
    }
    src, world_box = vol, None
    if cfg.crop_head:  # cheap pre-crop on the source grid: resample only the head (plus slack)
        with stage("crop"):
            src, world_box = _head_region(vol, cfg)
    # one pass: clip, reorient, resample (tilt included) over the head's region only, from the source dtype
    with stage("resample"):
        out, path = to_ras_isotropic(src, cfg.spacing, world_box, clip=cfg.clip_hu)
    meta = dict(vol.meta)
    del src, vol
    record["resampling"] = path
    # trilinear weights are convex: every value is a clipped source value or air, up to float32 rounding
    within = (min(cfg.clip_hu[0], AIR_HU), max(cfg.clip_hu[1], AIR_HU))
    if cfg.crop_head:  # the last step before storing rounds to int16 as it copies the crop out
        with stage("crop"):
            out, box = crop_head(out, cfg.foreground_hu, cfg.crop_margin_mm, not cfg.deface, within)
        record["crop_box"] = box
    if cfg.deface:
        with stage("deface"):  # sets voxels to air: still within
            out, info = deface_volume(out, margin_mm=cfg.deface_margin_mm)
            record["deface"] = info
            if cfg.crop_head:
                out, _ = crop_head(out, cfg.foreground_hu, cfg.crop_margin_mm, True, within)
    meta["preprocess"] = record
    with stage("int16"):
        arr = out.array if out.array.dtype == np.int16 else _to_int16(out.array)
        return Volume(arr, out.affine, meta)


def _head_region(vol: Volume, cfg: PreprocessConfig) -> tuple[Volume, tuple[np.ndarray, np.ndarray] | None]:
    """The head's box on the source grid (a view) and, when that view is resampled on the oblique path (the
    only one that uses it), its world box (RAS mm, with slack), from ~2 mm; ``None`` otherwise."""
    from fmct.preprocess.crop import crop_view, head_box
    from fmct.preprocess.geometry import aligned_axes

    slack = cfg.crop_margin_mm + 2.0 * cfg.spacing
    box, head, _, stride = head_box(vol.array, vol.spacing, cfg.foreground_hu, slack)
    region = crop_view(vol, box)
    if aligned_axes(region, cfg.spacing) is not None:
        return region, None
    # World extent of the head's voxel centres. A linear map takes its extremes over a column of voxels
    # at the column's first or last voxel, so those (two per column) stand in for all of them.
    j, k = np.nonzero(head.any(axis=0))
    first = np.argmax(head, axis=0)[j, k]
    last = head.shape[0] - 1 - np.argmax(head[::-1], axis=0)[j, k]
    idx = np.r_[np.c_[first, j, k], np.c_[last, j, k]]
    centres = idx * np.asarray(stride) + (np.asarray(stride) - 1) / 2.0
    world = centres @ vol.affine[:3, :3].T + vol.affine[:3, 3]
    pad = slack + float(np.max(np.asarray(stride) * np.asarray(vol.spacing)))
    return region, (world.min(0) - pad, world.max(0) + pad)
