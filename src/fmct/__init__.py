"""fmct: 3D self-supervised foundation models for head CT.

Public API (one function per ``fmct`` command, :mod:`fmct.api`)::

    import fmct
    fmct.ingest(["/data/pacs_export"], "store")           # -> IngestSummary
    run = fmct.pretrain("configs/demo-cpu.yaml", "store", "runs/ssl")   # -> PretrainSummary
    emb = fmct.embed(run.model, "store")                  # -> DataFrame, one row per scan
    rep = fmct.evaluate({"ssl": run.model}, "labels.csv", "store", "eval_out")  # -> EvaluationReport
    pred = fmct.predict("clf", ["scan_folder/"])          # -> DataFrame, one row per input
    vol = fmct.preprocess("scan_folder/")                 # DICOM folder / NIfTI -> RAS 1 mm head-cropped Volume
    model = fmct.load_model("run/model")                  # dir or Hub repo id -> BackboneModel / ClassifierModel
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from fmct import omp_policy

omp_policy.apply_default()  # before anything imports torch: OpenMP threads sleep when idle (see module)

__version__ = "0.1.0"

#: Names imported on first use, so that ``import fmct`` and ``fmct --help`` stay fast (no torch, numpy …).
_API = ("load_model", "pretrain", "embed", "predict")
#: Callable packages: ``fmct.ingest(inputs, out)``, ``fmct.preprocess(path)`` and ``fmct.evaluate(models, ...)``
#: call the function, while ``fmct.ingest.plan`` / ``fmct.evaluate.metrics`` stay the subpackages' modules.
_CALLABLE_PACKAGES = ("ingest", "preprocess", "evaluate")
__all__ = [*_API, *_CALLABLE_PACKAGES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module("fmct.api"), name)
    if name in _CALLABLE_PACKAGES:
        return import_module(f"fmct.{name}")
    raise AttributeError(f"module 'fmct' has no attribute {name!r}")
