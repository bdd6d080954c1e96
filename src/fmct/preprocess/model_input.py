"""From a preprocessed head volume to the cube the network sees, and back.

Every path that feeds a network (embedding, fine-tuning, predict, saliency) uses
:func:`to_model_input` (or its two steps, :func:`cube_hu` then ``apply_windows``, where the HU cube is needed
too, as for the ``brain_max`` readout), so the mapping is defined once. The head (already cropped by
:func:`fmct.preprocess.preprocess`) is centred in a cube of side ``max(shape)`` padded with air,
then resized to ``size³`` voxels: aspect ratio is kept, nothing is cut off (``fit="resize"``, fmct's own).
A model trained elsewhere may expect its voxels at their spacing instead (``fit="pad_crop"``, MONAI's
``ResizeWithPadOrCrop``, CT-FM's): the volume is centred in a ``size³`` cube, padded with air where it is
smaller and cropped where it is larger. A model directory records it as ``preprocessing["input_fit"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fmct.io.volume import AIR_HU, Volume
from fmct.preprocess.pipeline import PreprocessConfig, preprocess
from fmct.preprocess.windows import DEFAULT_WINDOWS, apply_windows

#: Values of ``fit`` / ``preprocessing["input_fit"]`` (see the module docstring); the first is the default.
INPUT_FITS = ("resize", "pad_crop")


def input_fit(preprocessing: dict[str, Any] | None) -> str:
    """``preprocessing["input_fit"]`` of a model (``"resize"`` when absent); ``ValueError`` if unknown."""
    fit = (preprocessing or {}).get("input_fit") or INPUT_FITS[0]
    if fit not in INPUT_FITS:
        raise ValueError(f"preprocessing input_fit must be one of {list(INPUT_FITS)}, got {fit!r}")
    return str(fit)


def _pad_crop(volume: Volume, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """The volume's voxels centred in a ``size³`` cube (MONAI ``ResizeWithPadOrCrop``: symmetric padding
    with air, the extra voxel after; centre crop from ``s // 2 - size // 2``)."""
    arr = torch.from_numpy(np.ascontiguousarray(volume.array)).float()
    starts = [max(s // 2 - size // 2, 0) for s in arr.shape]
    arr = arr[tuple(slice(b, b + size) for b in starts)]
    before = [(size - s) // 2 for s in arr.shape]
    pads: list[int] = []
    for s, b in reversed(list(zip(arr.shape, before, strict=True))):
        pads += [b, size - s - b]
    cube = F.pad(arr[None, None], pads, value=AIR_HU)[0, 0]
    to_vol = np.eye(4)
    to_vol[:3, 3] = np.asarray(starts, dtype=np.float64) - np.asarray(before, dtype=np.float64)
    return cube, volume.affine @ to_vol


def cube_hu(volume: Volume, size: int, fit: str = "resize") -> tuple[torch.Tensor, np.ndarray]:
    """The whole volume resized into a ``size³`` cube of HU (``fit="pad_crop"``: kept at its spacing,
    centred, padded or cropped; see the module docstring).

    Returns:
        hu: ``(size, size, size)`` float32 tensor of HU.
        grid_affine: ``(4, 4)`` affine mapping cube voxel indices to RAS mm (world).
    """
    if input_fit({"input_fit": fit}) == "pad_crop":
        return _pad_crop(volume, int(size))
    arr = torch.from_numpy(np.ascontiguousarray(volume.array)).float()
    n = max(arr.shape)
    pad_before = [(n - s) // 2 for s in arr.shape]
    pads: list[int] = []
    for s, b in reversed(list(zip(arr.shape, pad_before, strict=True))):
        pads += [b, n - s - b]
    cube = F.pad(arr[None, None], pads, value=AIR_HU)
    if n != size:
        cube = F.interpolate(cube, size=(size, size, size), mode="trilinear", align_corners=False)
    scale = n / size
    # cube index m -> padded index p = (m + 0.5) * scale - 0.5 -> volume index p - pad_before
    to_vol = np.eye(4)
    to_vol[:3, :3] *= scale
    to_vol[:3, 3] = 0.5 * scale - 0.5 - np.asarray(pad_before, dtype=np.float64)
    return cube[0, 0], volume.affine @ to_vol


def to_model_input(
    volume: Volume, size: int, windows: Sequence[Sequence[float]] = DEFAULT_WINDOWS, fit: str = "resize"
) -> tuple[torch.Tensor, np.ndarray]:
    """Windowed network input for one scan (``fit``: see :func:`cube_hu`).

    Returns:
        x: ``(C, size, size, size)`` float32 in ``[0, 1]``, one channel per window.
        grid_affine: ``(4, 4)`` affine of the cube grid (cube voxel index -> RAS mm).
    """
    hu, grid_affine = cube_hu(volume, size, fit)
    return apply_windows(hu, windows), grid_affine


def preprocess_config_of(preprocessing: dict[str, Any]) -> Any:
    """:class:`fmct.preprocess.PreprocessConfig` from a model's preprocessing dict (its other keys, such as
    ``input_size``, ignored)."""

    names = {f.name for f in dataclasses.fields(PreprocessConfig)}
    return PreprocessConfig.from_dict({k: v for k, v in preprocessing.items() if k in names})


def model_input_for(
    scan: Any, preprocessing: dict[str, Any], reuse: bool = False
) -> tuple[torch.Tensor, np.ndarray, Volume]:
    """THE path from a scan to what a model directory's network sees, used by ``ClassifierModel.predict``
    and ``fmct predict`` alike: :func:`fmct.preprocess.preprocess` with the model's recorded preprocessing
    (skipped when ``reuse``: a store scan already on the model's grid), then :func:`to_model_input`.

    Args:
        scan: a :class:`Volume`, or a path ``fmct.preprocess`` reads (NIfTI file, DICOM folder).
        preprocessing: the model's ``config.json`` preprocessing (``input_size`` and ``windows`` included).

    Returns:
        ``x (C, S, S, S)``, the cube grid's affine ``(4, 4)`` and the preprocessed volume.
    """

    processed = scan if reuse else preprocess(scan, preprocess_config_of(preprocessing))
    windows = preprocessing.get("windows") or DEFAULT_WINDOWS
    x, grid_affine = to_model_input(
        processed, int(preprocessing["input_size"]), windows, input_fit(preprocessing)
    )
    return x, grid_affine, processed
