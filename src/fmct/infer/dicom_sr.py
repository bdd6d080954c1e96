"""The findings of one prediction as a DICOM Comprehensive 3D SR (highdicom), filed by a PACS with its study.

The document follows TID 1500 *Measurement Report* (the template DICOM and IHE AI Results use for
algorithm output), title "Imaging Measurement Report", procedure "CT Head" (LOINC 24725-4):

* observer: the device "fmct" with the model's name (observation context);
* the source images: every SOP instance of the source series, with its study and series UIDs, in the
  Current Requested Procedure Evidence Sequence (no TID 1600 image library: its per-image descriptors
  cost ~4.5 kB and ~80 ms per image, 30 s for a 300-slice series, and no content item points at an image);
* one measurement group (TID 1501) per finding: finding type (:mod:`fmct.infer.dicom_content` codes),
  the algorithm (model name, version, the finding's operating threshold as its parameter), the probability
  (NUM, DCM 122157 "Probability", unit "1"), and a qualitative evaluation "present" / "absent" (SNOMED CT
  52101004 / 272519000) from that threshold;
* a "Qualitative Evaluations" container with TEXT comments: "NOT FOR CLINICAL USE ..." and the scan's
  warnings (outside what the model saw).

The SR copies the patient and study modules of the source series (highdicom takes them from the first
source dataset), is PRELIMINARY / UNVERIFIED / PARTIAL and its Content Qualification is RESEARCH.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fmct.infer.dicom_content import (
    NOT_FOR_CLINICAL_USE,
    ModelFacts,
    coding_schemes,
    finding_code,
    quiet_highdicom,
)
from fmct.io.dicom_source import SourceSeries

#: Series number of fmct's SR series (any free number works; PACS sort by it).
SR_SERIES_NUMBER = 9901

SERIES_DESCRIPTION = "fmct findings - NOT FOR CLINICAL USE"


def _finding_group(finding: str, probability: float, facts: ModelFacts) -> Any:
    """TID 1501 measurement group of one finding: probability + present/absent at its threshold."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    code = finding_code(finding)
    present = probability >= facts.thresholds[finding]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"fmct {finding}"),
        finding_type=code,
        algorithm_id=hd.sr.AlgorithmIdentification(
            name=facts.name, version=facts.version, parameters=[facts.threshold_text(finding)]
        ),
        measurements=[
            hd.sr.Measurement(name=codes.DCM.Probability, value=float(probability), unit=codes.UCUM.NoUnits)
        ],
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(name=code, value=codes.SCT.Present if present else codes.SCT.Absent)
        ],
    )


def _comments(texts: Sequence[str]) -> Any:
    """TID 1500's "Qualitative Evaluations" container (UMLS C0034375) holding TEXT "Comment" items."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    container = hd.sr.ContainerContentItem(
        name=hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations"),
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    container.ContentSequence = hd.sr.ContentSequence(
        [
            hd.sr.TextContentItem(
                name=codes.DCM.Comment,
                value=text[:1024],
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
            for text in texts
        ]
    )
    return container


def findings_report(
    source: SourceSeries, probabilities: Mapping[str, float], facts: ModelFacts, warnings: Sequence[str] = ()
) -> Any:
    """The TID 1500 content tree (``highdicom.sr.MeasurementReport``) of one prediction."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=facts.device_uid(), name="fmct", manufacturer_name="fmct", model_name=facts.name[:64]
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.HeadCT,
        imaging_measurements=[
            _finding_group(f, p, facts) for f, p in probabilities.items() if f in facts.thresholds
        ],
        title=codes.cid7021.ImagingMeasurementReport,
    )
    report[0].ContentSequence.append(_comments([NOT_FOR_CLINICAL_USE, *(f"warning: {w}" for w in warnings)]))
    return report


def findings_sr(
    source: SourceSeries,
    probabilities: Mapping[str, float],
    facts: ModelFacts,
    warnings: Sequence[str] = (),
    series_number: int = SR_SERIES_NUMBER,
) -> Any:
    """A ``highdicom.sr.Comprehensive3DSR`` of one prediction (see the module doc).

    Args:
        source: the source series (:func:`fmct.io.dicom_source.read_source_series`).
        probabilities: finding -> probability in ``[0, 1]`` (a predict result's ``"probabilities"``).
        facts: the model's name, version and thresholds (:meth:`ModelFacts.of`).
        warnings: the prediction's warnings (free of patient identifiers), added as comments.
    """
    import highdicom as hd

    with quiet_highdicom():
        return hd.sr.Comprehensive3DSR(
            evidence=source.datasets,
            content=findings_report(source, probabilities, facts, warnings),
            series_instance_uid=hd.UID(),
            series_number=series_number,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="fmct",
            series_description=SERIES_DESCRIPTION,
            content_qualification="RESEARCH",
            coding_schemes=coding_schemes(),
        )
