"""The model card's ``model-index`` metadata: what was recorded with a model, read back by huggingface_hub as
the Hub reads it; and the preprocessing said in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmct.models.hub import BackboneModel, ClassifierModel
from fmct.models.model_card import parse_front_matter, preprocessing_lines
from fmct.models.model_index import recorded_results

LABELS = ["ich", "sdh"]
DATASET = {"name": "fmct synthetic head-CT cohort", "type": "custom"}


def test_recorded_results_become_hub_eval_results(tmp_path: Path, tiny_vit, preprocessing) -> None:
    from huggingface_hub import ModelCard

    clf = ClassifierModel.from_backbone(tiny_vit, LABELS, preprocessing=preprocessing, name="clf-idx")
    clf.training_info = {"task": "finetune", "best_val_macro_auroc": 0.71234, "n_val": 30}
    card = {
        "dataset": DATASET,
        "results": [
            {"metric": "roc_auc", "value": 0.66, "name": "macro AUROC, ID test", "split": "test (ID)"},
            {"metric": "average_precision", "value": 0.41, "dataset": "CQ500", "dataset_type": "cq500"},
            {"metric": "roc_auc", "value": float("nan")},  # undefined (one class): not published
        ],
    }
    out = clf.save_pretrained(tmp_path / "c", card=card)
    hub = ModelCard.load(out / "README.md")
    assert hub.data.pipeline_tag == "image-classification" and hub.data.library_name == "fmct"
    got = {(r.metric_type, r.dataset_name, r.dataset_split, r.metric_value) for r in hub.data.eval_results}
    assert got == {
        ("roc_auc", DATASET["name"], "test (ID)", 0.66),
        ("average_precision", "CQ500", "test", 0.41),
        ("roc_auc", DATASET["name"], "validation", 0.7123),  # the fine-tuning's best epoch
    }
    assert {r.task_type for r in hub.data.eval_results} == {"image-classification"}
    assert hub.data.eval_results[0].metric_name == "macro AUROC, ID test"
    # without an evaluation table the card's body lists the same numbers
    assert "| macro AUROC, ID test | roc_auc | 0.660 |" in hub.text


def test_a_backbone_without_results_has_no_model_index(tmp_path: Path, tiny_vit, preprocessing) -> None:
    out = BackboneModel(tiny_vit, preprocessing).save_pretrained(tmp_path / "b")
    fm = parse_front_matter((out / "README.md").read_text())
    assert "model-index" not in fm and fm["pipeline_tag"] == "image-feature-extraction"
    assert recorded_results({"kind": "backbone", "training": {"task": "finetune"}}) == []


def test_a_malformed_result_is_refused_before_anything_is_written(
    tmp_path: Path, tiny_vit, preprocessing
) -> None:
    clf = ClassifierModel.from_backbone(tiny_vit, LABELS, preprocessing=preprocessing)
    with pytest.raises(ValueError, match="model card result 0: needs 'metric' and a numeric 'value'"):
        clf.save_pretrained(tmp_path / "c", card={"results": [{"metric": "roc_auc", "value": "high"}]})
    assert not (tmp_path / "c").exists() and not list(tmp_path.iterdir())


def test_preprocessing_in_words(preprocessing) -> None:
    lines = preprocessing_lines({**preprocessing, "spacing": 2.0, "deface": True, "crop_margin_mm": 5.0})
    assert lines[0].startswith("- orientation RAS+, resampled to 2 mm isotropic voxels")
    assert "- cropped to the head with a 5 mm margin" in lines and "- defaced (the face set to air)" in lines
    assert "brain (40, 80), subdural (80, 200), bone (600, 2800)" in lines[3]
    assert lines[4].endswith("resized to 16³ voxels")
