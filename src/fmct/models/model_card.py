"""Model card (README.md with YAML front matter) for a saved fmct model directory."""

from __future__ import annotations

import json
from typing import Any

import yaml

from fmct.models.model_index import PIPELINE_TAGS, model_index, recorded_results
from fmct.preprocess.windows import DEFAULT_WINDOWS

INTENDED_USE = "research only, not for clinical use"

DEFAULT_LIMITATIONS = [
    "Research only, not for clinical use: not a medical device, not validated prospectively, and it must not "
    "guide diagnosis or treatment.",
    "Performance measured on the evaluation data below may not transfer to other scanners, sites, protocols, "
    "populations or reconstruction kernels; check calibration and accuracy on local data first.",
    "Head CT volumes (and models that memorise or reconstruct them) contain the face: 3D renderings of the "
    "skin surface can re-identify patients. Deface inputs where sharing is involved and treat embeddings, "
    "saliency maps and reconstructions (e.g. MAE outputs) as potentially identifying.",
    "Inputs must be preprocessed exactly as listed under Preprocessing (fmct.preprocess does this); other "
    "windows, spacing or orientation silently degrade outputs.",
]


def _md_table(rows: list[dict[str, Any]]) -> str:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}"
        return str(v).replace("|", "\\|") if v is not None else ""

    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def evaluation_table(evaluation: Any) -> str:
    """Markdown for an evaluation given as rows (list of dicts), ``{row_name: {metric: value}}`` or text."""
    if evaluation is None:
        return ""
    if isinstance(evaluation, str):
        return evaluation
    if isinstance(evaluation, dict):
        rows = [{"": k, **(v if isinstance(v, dict) else {"value": v})} for k, v in evaluation.items()]
        return _md_table(rows)
    return _md_table(list(evaluation))


def render_model_card(
    config: dict[str, Any], card: dict[str, Any] | None = None, n_params: int | None = None
) -> str:
    """README.md text for a model directory: YAML front matter, then intended use, model, training data,
    preprocessing, evaluation, limitations, how to use and citation sections.

    Args:
        config: the config.json dict (kind, name, architecture, preprocessing, labels, head, training).
        card: optional extra fields: ``description``, ``training_data``, ``evaluation`` (see
            :func:`evaluation_table`), ``results`` and ``dataset`` (evaluation numbers for the
            ``model-index`` metadata: :mod:`fmct.models.model_index`), ``limitations`` (list, appended to the
            defaults), ``license``, ``tags``, ``citation``.
        n_params: parameter count to report.

    Raises:
        ValueError: a ``results`` entry without a metric or a numeric value.
    """
    card = dict(card or {})
    parts = ["---", yaml.safe_dump(_front_matter(config, card), sort_keys=False).rstrip(), "---", ""]
    parts += [f"# {config.get('name', 'fmct model')}", ""]
    if card.get("description"):
        parts += [str(card["description"]), ""]
    parts += _intended_use(config) + _model_section(config, n_params) + _training_section(config, card)
    parts += _preprocessing_section(config)
    table = _evaluation_section_table(config, card)
    if table:
        parts += ["## Evaluation", "", table, ""]
    parts += ["## Limitations", ""]
    parts += [f"- {s}" for s in [*DEFAULT_LIMITATIONS, *card.get("limitations", [])]]
    parts += _how_to_use(config)
    parts += [
        "",
        "## Citation",
        "",
        card.get("citation", "FM-CT: 3D foundation model for head CT, arXiv:2502.02779."),
        "",
    ]
    return "\n".join(parts)


def _front_matter(config: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """The card's YAML front matter (Hugging Face model-card fields plus fmct's kind and version)."""
    front: dict[str, Any] = {
        "library_name": "fmct",
        "license": card.get("license", "apache-2.0"),
        "tags": [
            "medical-imaging",
            "ct",
            "head-ct",
            "3d",
            "self-supervised",
            "research-only",
            *card.get("tags", []),
        ],
        "intended_use": INTENDED_USE,
        "model_name": config.get("name"),
        "fmct_kind": config.get("kind"),
        "architecture": config.get("architecture", {}).get("type", "vit3d"),
        "fmct_version": config.get("fmct_version"),
    }
    if config.get("kind") in PIPELINE_TAGS:
        front["pipeline_tag"] = PIPELINE_TAGS[config["kind"]]
    if config.get("labels"):
        front["labels"] = list(config["labels"])
    index = model_index(config, card)
    if index:
        front["model-index"] = index
    return front


def _intended_use(config: dict[str, Any]) -> list[str]:
    """Lines of the "Intended use" section (research only; what the model outputs)."""
    return [
        "## Intended use",
        "",
        f"**{INTENDED_USE.capitalize()}.** "
        "A 3D self-supervised foundation model component for head CT research (FM-CT style). "
        + (
            "It outputs a probability per finding."
            if config.get("kind") == "classifier"
            else "It outputs embeddings for probing, retrieval and fine-tuning."
        ),
        "",
    ]


def _model_section(config: dict[str, Any], n_params: int | None) -> list[str]:
    """Lines of the "Model" section: kind, architecture, parameter count, head, output labels."""
    arch = config.get("architecture", {})
    lines = ["## Model", "", f"- kind: `{config.get('kind')}`", f"- architecture: `{json.dumps(arch)}`"]
    if n_params is not None:
        lines.append(f"- parameters: {n_params:,}")
    if config.get("head"):
        lines.append(f"- head: `{json.dumps(config['head'])}`")
    if config.get("labels"):
        lines.append(f"- labels (output order): {', '.join(config['labels'])}")
    lines.append("")
    return lines


def _training_section(config: dict[str, Any], card: dict[str, Any]) -> list[str]:
    """Lines of the "Training data" section: the trainer's description and config.json's ``training``."""
    lines = ["## Training data", ""]
    lines.append(
        str(card["training_data"]) if card.get("training_data") else "Not documented by the trainer."
    )
    if config.get("training"):
        lines += ["", "```json", json.dumps(config["training"], indent=2, default=str), "```"]
    return lines


def _preprocessing_section(config: dict[str, Any]) -> list[str]:
    """Lines of the "Preprocessing" section: in words, then config.json's preprocessing as JSON."""
    return [
        "",
        "## Preprocessing",
        "",
        *preprocessing_lines(config.get("preprocessing", {})),
        "",
        "Apply exactly this (`fmct.preprocess` and `fmct predict` read it from config.json):",
        "",
        "```json",
        json.dumps(config.get("preprocessing", {}), indent=2, default=str),
        "```",
        "",
    ]


def _evaluation_section_table(config: dict[str, Any], card: dict[str, Any]) -> str:
    """Markdown of the "Evaluation" section: the card's ``evaluation``, else the recorded results."""
    results = recorded_results(config, card)
    return evaluation_table(card.get("evaluation")) or evaluation_table(
        [{k: r[k] for k in ("name", "metric", "value", "dataset", "split")} for r in results] or None
    )


def _how_to_use(config: dict[str, Any]) -> list[str]:
    """Lines of the "How to use" section: load the directory, then predict (classifier) or embed."""
    lines = [
        "",
        "## How to use",
        "",
        "```python",
        "import fmct",
        "",
        'model = fmct.load_model("path/to/model")  # or a Hugging Face Hub repo id "owner/name"',
    ]
    if config.get("kind") == "classifier":
        lines.append('probs = model.predict("scan.nii.gz")  # {finding: probability}')
    else:
        lines.append("out = model.embed(x)  # x: (B, C, S, S, S) windowed input; out['cls'], out['patch']")
    return lines + ["```"]


def preprocessing_lines(pre: dict[str, Any]) -> list[str]:
    """Bullets that say in words what the preprocessing dict of config.json does."""

    names = {
        tuple(map(float, w)): n for n, w in zip(("brain", "subdural", "bone"), DEFAULT_WINDOWS, strict=True)
    }
    windows = [
        f"{names.get(tuple(map(float, w)), 'window')} ({w[0]:g}, {w[1]:g})" for w in pre.get("windows", [])
    ]
    size = pre.get("input_size")
    lo, hi = pre.get("clip_hu", (-1024, 3071))
    crop = "- cropped to the head" if pre.get("crop_head", True) else "- not cropped to the head"
    if pre.get("crop_head", True) and pre.get("crop_margin_mm"):
        crop += f" with a {pre['crop_margin_mm']:g} mm margin"
    lines = [
        f"- orientation RAS+, resampled to {pre.get('spacing', 1.0):g} mm isotropic voxels, HU clipped to "
        f"[{lo:g}, {hi:g}]",
        crop,
        "- defaced (the face set to air)" if pre.get("deface") else "- not defaced",
    ]
    if windows:
        lines.append(
            f"- {len(windows)} channels, HU windows (level, width): {', '.join(windows)}, scaled to [0, 1]"
        )
    if size:
        lines.append(
            f"- network input: the head centred in a cube padded with air, resized to {size}³ voxels"
        )
    return lines


def parse_front_matter(text: str) -> dict[str, Any]:
    """The YAML front matter of a model card as a dict (empty if there is none)."""
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end < 0:
        return {}
    return yaml.safe_load(text[4:end]) or {}
