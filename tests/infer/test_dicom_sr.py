"""The findings SR: read back with pydicom and highdicom, filed with the source study, validated by dciodvfy."""

import highdicom as hd
import pydicom
import pytest
from pydicom.uid import Comprehensive3DSRStorage

from fmct.infer.dicom_content import NOT_FOR_CLINICAL_USE, ModelFacts
from fmct.infer.dicom_out import save_dataset
from fmct.infer.dicom_sr import findings_sr
from fmct.io.dicom_source import read_source_series, series_by_scan_id

PROBS = {"ich": 0.83, "sdh": 0.61, "edh": 0.04, "midline_shift": 0.35}


@pytest.fixture(scope="module")
def written(dicom_series, classifier, tmp_path_factory):
    (ref,) = series_by_scan_id([dicom_series]).values()
    src = read_source_series(ref)
    facts = ModelFacts.of(classifier, {"sdh": 0.7})
    sr = findings_sr(src, PROBS, facts, warnings=["slice thickness 7.2 mm > 5 mm"])
    return save_dataset(sr, tmp_path_factory.mktemp("sr") / "sr.dcm"), src


def _texts(item) -> list[str]:
    """Every TEXT value in a content tree."""
    out = [str(item.TextValue)] if item.get("ValueType") == "TEXT" else []
    for child in item.get("ContentSequence", []):
        out += _texts(child)
    return out


def test_sr_references_the_source_study_series_and_instances(written, dicom_series, patient_study):
    path, src = written
    ds = pydicom.dcmread(path)
    assert ds.SOPClassUID == Comprehensive3DSRStorage and ds.Modality == "SR"
    source = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(dicom_series.iterdir())]
    assert ds.StudyInstanceUID == source[0].StudyInstanceUID  # filed with the study
    assert ds.SeriesInstanceUID != source[0].SeriesInstanceUID  # in a series of its own
    for keyword, value in patient_study.items():  # the patient and study modules of the source
        assert str(ds.get(keyword)) == value, keyword
    (study,) = ds.CurrentRequestedProcedureEvidenceSequence
    assert study.StudyInstanceUID == source[0].StudyInstanceUID
    (series,) = study.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source[0].SeriesInstanceUID
    referenced = {i.ReferencedSOPInstanceUID for i in series.ReferencedSOPSequence}
    assert referenced == {s.SOPInstanceUID for s in source}
    assert {i.ReferencedSOPClassUID for i in series.ReferencedSOPSequence} == {source[0].SOPClassUID}


def test_sr_holds_findings_probabilities_model_and_thresholds(written, classifier):
    path, _ = written
    sr = hd.sr.srread(path)  # highdicom parses it back as a TID 1500 measurement report
    assert isinstance(sr.content, hd.sr.MeasurementReport)
    groups = sr.content.get_image_measurement_groups()
    assert [g.tracking_identifier for g in groups] == [f"fmct {f}" for f in PROBS]
    for group, (finding, p) in zip(groups, PROBS.items(), strict=True):
        (measurement,) = group.get_measurements()
        assert measurement.name.meaning == "Probability" and measurement.value == pytest.approx(p)
        (evaluation,) = group.get_qualitative_evaluations()
        threshold = 0.7 if finding == "sdh" else 0.5
        assert evaluation.value.meaning == ("Present" if p >= threshold else "Absent"), finding
        params = {
            str(i.ConceptNameCodeSequence[0].CodeMeaning): str(i.TextValue)
            for i in group[0].ContentSequence
            if i.ValueType == "TEXT"
        }
        assert params["Algorithm Name"] == "tiny-test" and params["Algorithm Version"] == classifier_version(
            classifier
        )
        assert params["Algorithm Parameters"].startswith(f"operating threshold {threshold:g} (")
    assert groups[0].finding_type.value == "1386000"  # ich: SNOMED CT "Intracranial hemorrhage"


def classifier_version(classifier) -> str:
    from fmct.infer.predict import model_info

    return str(model_info(classifier)["version"])


def test_sr_says_not_for_clinical_use(written):
    path, _ = written
    ds = pydicom.dcmread(path)
    texts = _texts(ds)
    assert NOT_FOR_CLINICAL_USE in texts and any("NOT FOR CLINICAL USE" in t for t in texts)
    assert "warning: slice thickness 7.2 mm > 5 mm" in texts
    assert "NOT FOR CLINICAL USE" in ds.SeriesDescription
    assert ds.ContentQualification == "RESEARCH"
    assert ds.PreliminaryFlag == "PRELIMINARY" and ds.VerificationFlag == "UNVERIFIED"
    assert ds.ConceptNameCodeSequence[0].CodeMeaning == "Imaging Measurement Report"


def test_sr_passes_dciodvfy(written, dciodvfy):
    path, _ = written
    assert dciodvfy(path) == []
