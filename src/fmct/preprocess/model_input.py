"""From a preprocessed head volume to the cube the network sees, and back.

Every path that feeds a network (embedding, fine-tuning, predict, saliency) uses
:func:`to_model_input` (or its two steps, :func:`cube_hu` then ``apply_windows``, where the HU cube is needed
too, as for the ``brain_max`` readout), so the mapping is defined once. The head (already cropped by
:func:`fmct.preprocess.preprocess`) is centred in a cube of side ``max(shape)`` padded with air,
then resized to ``size³`` voxels: aspect ratio is kept, nothing is cut off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fmct.io.volume import Volume
from fmct.preprocess.windows import DEFAULT_WINDOWS, apply_windows

AIR_HU = -1000.0


def cube_hu(volume: Volume, size: int) -> tuple[torch.Tensor, np.ndarray]:
    """Resize the whole volume into a ``size³`` cube of HU.

    Returns:
        hu: ``(size, size, size)`` float32 tensor of HU.
        grid_affine: ``(4, 4)`` affine mapping cube voxel indices to RAS mm (world).
    """
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
    volume: Volume, size: int, windows: Sequence[Sequence[float]] = DEFAULT_WINDOWS
) -> tuple[torch.Tensor, np.ndarray]:
    """Windowed network input for one scan.

    Returns:
        x: ``(C, size, size, size)`` float32 in ``[0, 1]``, one channel per window.
        grid_affine: ``(4, 4)`` affine of the cube grid (cube voxel index -> RAS mm).
    """
    hu, grid_affine = cube_hu(volume, size)
    return apply_windows(hu, windows), grid_affine


def preprocess_config_of(preprocessing: dict[str, Any]) -> Any:
    """:class:`fmct.preprocess.PreprocessConfig` from a model's preprocessing dict (its other keys, such as
    ``input_size``, ignored)."""
    import dataclasses

    from fmct.preprocess.pipeline import PreprocessConfig

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
    from fmct.preprocess.pipeline import preprocess

    processed = scan if reuse else preprocess(scan, preprocess_config_of(preprocessing))
    windows = preprocessing.get("windows") or DEFAULT_WINDOWS
    x, grid_affine = to_model_input(processed, int(preprocessing["input_size"]), windows)
    return x, grid_affine, processed
