"""fmct: 3D self-supervised foundation models for head CT.

Public API::

    import fmct
    vol = fmct.preprocess("scan_folder/")          # DICOM folder / NIfTI -> RAS 1 mm head-cropped Volume
    model = fmct.load_model("run/model")           # BackboneModel or ClassifierModel (safetensors only)
    probs = model.predict("scan_folder/")          # ClassifierModel: {finding: probability}
"""

from __future__ import annotations

from typing import Any

from fmct import omp_policy

omp_policy.apply_default()  # before anything imports torch: OpenMP threads sleep when idle (see module)

from fmct.api import load_model  # noqa: E402

__version__ = "0.1.0"
__all__ = ["load_model", "preprocess", "__version__"]


def __getattr__(name: str) -> Any:
    """``fmct.preprocess`` is imported on first use (it pulls numpy, scipy and pydicom), so that ``import
    fmct`` and ``fmct --help`` stay fast. It is a callable package: ``fmct.preprocess(path_or_volume, cfg)``."""
    if name == "preprocess":
        import importlib

        return importlib.import_module("fmct.preprocess")
    raise AttributeError(f"module 'fmct' has no attribute {name!r}")
