"""What fmct's DICOM objects (the findings SR, the saliency SEG) say about the model and its findings.

* Findings are coded with SNOMED CT where DICOM's own code tables (as pydicom ships them) hold the concept
  (``ich``: Intracranial hemorrhage 1386000, ``mass``: Mass 4147007, ``edema``: Edema 79654002), and with
  the private coding scheme ``99FMCT`` otherwise (code value = fmct's finding name; the scheme is declared in
  each object's Coding Scheme Identification Sequence). Map them to your site's codes where a PACS needs it.
* The model is identified by name and version (DICOM's Algorithm Identification), with the operating
  threshold of each finding: the ``"thresholds"`` object (finding -> probability) of the model directory's
  config.json or ``model.thresholds`` where the model records them, else 0.5, said as such in every object.
* Every object says it is research output: Content Qualification RESEARCH, "NOT FOR CLINICAL USE" in the
  series description and, in the SR, a text item.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

#: The default operating threshold of a finding when the model records none.
DEFAULT_THRESHOLD = 0.5

#: Private coding scheme of fmct's finding names (a designator starting with 99 is private by definition).
FMCT_SCHEME = "99FMCT"

NOT_FOR_CLINICAL_USE = (
    "NOT FOR CLINICAL USE. Research software output (fmct): not a medical device, not reviewed by a "
    "physician; do not use for diagnosis or treatment."
)

#: Finding name -> (code value, scheme, meaning); names not listed get ``(name, 99FMCT, name)``.
FINDING_CODES: dict[str, tuple[str, str, str]] = {
    "ich": ("1386000", "SCT", "Intracranial hemorrhage"),
    "iph": ("iph", FMCT_SCHEME, "Intraparenchymal hemorrhage"),
    "ivh": ("ivh", FMCT_SCHEME, "Intraventricular hemorrhage"),
    "sdh": ("sdh", FMCT_SCHEME, "Subdural hemorrhage"),
    "edh": ("edh", FMCT_SCHEME, "Epidural hemorrhage"),
    "sah": ("sah", FMCT_SCHEME, "Subarachnoid hemorrhage"),
    "mass": ("4147007", "SCT", "Mass"),
    "hydrocephalus": ("hydrocephalus", FMCT_SCHEME, "Hydrocephalus"),
    "edema": ("79654002", "SCT", "Edema"),
    "infarct": ("infarct", FMCT_SCHEME, "Infarct"),
    "fracture": ("fracture", FMCT_SCHEME, "Skull fracture"),
    "midline_shift": ("midline_shift", FMCT_SCHEME, "Midline shift"),
}


@contextmanager
def quiet_highdicom() -> Iterator[None]:
    """Silence highdicom's warnings while it copies a source's headers: they quote header values (e.g. "The
    string 'DOE' is unlikely to represent the intended person name"), which must not reach a console or log."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"highdicom(\..*)?$")
        yield


def finding_code(name: str) -> Any:
    """The coded concept (``pydicom.sr.coding.Code``) of a finding name."""
    from pydicom.sr.coding import Code

    value, scheme, meaning = FINDING_CODES.get(name, (name[:16], FMCT_SCHEME, name[:64]))
    return Code(value, scheme, meaning)


def coding_schemes() -> list[Any]:
    """The Coding Scheme Identification items of the private scheme (highdicom's ``coding_schemes``)."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem

    return [
        CodingSchemeIdentificationItem(
            designator=FMCT_SCHEME,
            name="fmct finding names",
            responsible_organization="fmct (open-source research software)",
        )
    ]


@dataclass(frozen=True)
class ModelFacts:
    """The model as its DICOM objects name it.

    Attributes:
        name, version: the model's name and version (``fmct.infer.predict.model_info``).
        thresholds: finding -> operating threshold (probability at or above which the finding is "present").
        recorded: the findings whose threshold the model records (the others use :data:`DEFAULT_THRESHOLD`).
    """

    name: str
    version: str
    thresholds: Mapping[str, float]
    recorded: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls, model: Any, thresholds: Mapping[str, float] | None = None, labels: Sequence[str] | None = None
    ) -> ModelFacts:
        """Facts of a loaded classifier. Operating thresholds, per finding: ``thresholds`` (e.g. the
        ``"thresholds"`` object of the model directory's config.json), else ``model.thresholds``, else
        :data:`DEFAULT_THRESHOLD`."""
        from fmct.infer.predict import model_info

        info = model_info(model)
        labels = list(labels if labels is not None else model.labels)
        recorded = dict(getattr(model, "thresholds", None) or {})
        recorded.update(thresholds or {})
        for f, t in recorded.items():
            if not isinstance(t, (int, float)) or not 0.0 <= float(t) <= 1.0:
                raise ValueError(f"operating threshold of {f!r} must be a probability in [0, 1], got {t!r}")
        values = {f: float(recorded.get(f, DEFAULT_THRESHOLD)) for f in labels}
        version = str(info["version"] or "unknown")
        return cls(info["name"], version, values, frozenset(f for f in labels if f in recorded))

    def threshold_text(self, finding: str) -> str:
        """``"operating threshold 0.5 (default; the model records none)"`` and the like."""
        how = "recorded in the model" if finding in self.recorded else "default; the model records none"
        return f"operating threshold {self.thresholds[finding]:g} ({how})"

    def positive(self, probabilities: Mapping[str, float]) -> list[str]:
        """Findings whose probability reaches their operating threshold, in the given order."""
        return [f for f, p in probabilities.items() if f in self.thresholds and p >= self.thresholds[f]]

    def device_uid(self) -> str:
        """A UID fixed by the model's name and version (the SR's observer device)."""
        from pydicom.uid import generate_uid

        return str(generate_uid(entropy_srcs=["fmct", self.name, self.version]))
