"""fmct's Python API: one function per ``fmct`` command, returning objects instead of printing.

::

    import fmct

    s = fmct.ingest(["/data/pacs_export"], "store", deface=True)                  # IngestSummary
    run = fmct.pretrain("configs/demo-cpu.yaml", "store", "runs/ssl", {"max_steps": 30})  # PretrainSummary
    emb = fmct.embed(run.model, "store", "emb.parquet")       # DataFrame: one row per scan (cls, mean_patch ...)
    rep = fmct.evaluate({"ssl": run.model}, "labels.csv", "store", "eval_out")     # EvaluationReport
    pred = fmct.predict("clf", ["/data/case_folder"])         # DataFrame: one row per input, one column per finding
    clf = fmct.load_model("clf")                              # ClassifierModel / BackboneModel (dir or Hub repo id)

The ``fmct`` commands call these and only parse options and print. Errors are one sentence naming the file:
``FileNotFoundError`` (a path or model that is not there), :class:`UsageError` (arguments that do not fit
together) and ``ValueError`` (data that cannot be used). Names are imported on first use, so that
``import fmct`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_LAZY = {
    "load_model": ("fmct.api.models", "load_model"),
    "ingest": ("fmct.api.ingestion", "ingest"),
    "pretrain": ("fmct.api.pretraining", "pretrain"),
    "PretrainSummary": ("fmct.api.pretraining", "PretrainSummary"),
    "embed": ("fmct.api.embedding", "embed"),
    "evaluate": ("fmct.api.evaluation", "evaluate"),
    "EvaluationReport": ("fmct.api.evaluation", "EvaluationReport"),
    "predict": ("fmct.api.prediction", "predict"),
    "UsageError": ("fmct.api.errors", "UsageError"),
    "IngestSummary": ("fmct.ingest.summary", "IngestSummary"),
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(import_module(module), attr)
    raise AttributeError(f"module 'fmct.api' has no attribute {name!r}")
