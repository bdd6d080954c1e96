"""The model card's ``model-index``: evaluation results in the Hugging Face Hub's metadata format.

Results come from what was recorded with the model: the card's ``results`` (one dict per number, e.g. the
demo's macro AUROC per test set) and, for a fine-tuned classifier, the validation macro AUROC of its best
epoch (``training.best_val_macro_auroc`` in config.json). ``huggingface_hub`` builds and validates the
YAML, so the Hub (and ``huggingface_hub.ModelCard``) reads it back as ``EvalResult`` objects.

A result dict: ``metric`` (Hub metric id: ``roc_auc``, ``average_precision``, ``accuracy`` ...), ``value``
(a number), and optional ``name`` (shown on the Hub, e.g. "macro AUROC, 10 % labels"), ``dataset`` (name),
``dataset_type`` (a Hub dataset id or ``custom``), ``split`` (``test``, ``validation`` ...). Missing dataset
fields come from the card's ``dataset`` entry (a name, or ``{"name", "type"}``).
"""

from __future__ import annotations

import math
from typing import Any

#: (Hub task id, task name) per model kind.
TASKS = {
    "classifier": ("image-classification", "Head CT findings (multi-label)"),
    "backbone": ("image-feature-extraction", "Head CT embeddings"),
}

#: The pipeline tag of each kind (the Hub's task filter).
PIPELINE_TAGS = {kind: task for kind, (task, _) in TASKS.items()}

UNNAMED_DATASET = {"name": "local head CT data (not named when the model was saved)", "type": "custom"}


def _dataset(card: dict[str, Any]) -> dict[str, str]:
    d = card.get("dataset")
    if isinstance(d, str):
        return {"name": d, "type": "custom"}
    if isinstance(d, dict) and d.get("name"):
        return {"name": str(d["name"]), "type": str(d.get("type") or "custom")}
    return dict(UNNAMED_DATASET)


def recorded_results(config: dict[str, Any], card: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The result dicts (module docstring) recorded for this model, dataset fields filled in.

    Raises:
        ValueError: a card result without ``metric`` or a numeric ``value``.
    """
    card = dict(card or {})
    default = _dataset(card)
    out: list[dict[str, Any]] = []
    for i, r in enumerate(card.get("results") or []):
        value = r.get("value") if isinstance(r, dict) else None
        if not isinstance(r, dict) or not r.get("metric") or not isinstance(value, int | float):
            raise ValueError(f"model card result {i}: needs 'metric' and a numeric 'value', got {r!r}")
        if math.isfinite(float(value)):
            out.append(
                {
                    "metric": str(r["metric"]),
                    "value": round(float(value), 4),
                    "name": str(r.get("name") or r["metric"]),
                    "dataset": str(r.get("dataset") or default["name"]),
                    "dataset_type": str(r.get("dataset_type") or default["type"]),
                    "split": str(r.get("split") or "test"),
                }
            )
    training = config.get("training") or {}
    best = training.get("best_val_macro_auroc")
    if training.get("task") == "finetune" and isinstance(best, int | float) and math.isfinite(best):
        n_val = training.get("n_val")
        out.append(
            {
                "metric": "roc_auc",
                "value": round(float(best), 4),
                "name": "macro AUROC, validation split (best epoch)" + (f", {n_val} scans" if n_val else ""),
                "dataset": default["name"],
                "dataset_type": default["type"],
                "split": "validation",
            }
        )
    return out


def model_index(config: dict[str, Any], card: dict[str, Any] | None = None) -> list[dict[str, Any]] | None:
    """The ``model-index`` front-matter entry for :func:`recorded_results` (None when there are none)."""
    results = recorded_results(config, card)
    if not results:
        return None
    from huggingface_hub.repocard_data import EvalResult, eval_results_to_model_index

    task_type, task_name = TASKS.get(str(config.get("kind")), TASKS["classifier"])
    evals = [
        EvalResult(
            task_type=task_type,
            task_name=task_name,
            dataset_type=r["dataset_type"],
            dataset_name=r["dataset"],
            dataset_split=r["split"],
            metric_type=r["metric"],
            metric_value=r["value"],
            metric_name=r["name"],
        )
        for r in results
    ]
    return eval_results_to_model_index(str(config.get("name") or "fmct-model"), evals)
