"""fmct: 3D self-supervised foundation models for head CT.

Public API::

    import fmct
    vol = fmct.preprocess("scan_folder/")          # DICOM folder / NIfTI -> RAS 1 mm head-cropped Volume
    model = fmct.load_model("run/model")           # BackboneModel or ClassifierModel (safetensors only)
    probs = model.predict("scan_folder/")          # ClassifierModel: {finding: probability}
"""

from fmct import omp_policy

omp_policy.apply_default()  # before anything imports torch: OpenMP threads sleep when idle (see module)

from fmct import preprocess  # noqa: E402, F401  (callable package: fmct.preprocess(path_or_volume, cfg))
from fmct.api import load_model  # noqa: E402

__version__ = "0.1.0"
__all__ = ["load_model", "preprocess", "__version__"]
