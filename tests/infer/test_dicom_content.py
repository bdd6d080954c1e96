import pytest

from fmct.infer.dicom_content import DEFAULT_THRESHOLD, FMCT_SCHEME, ModelFacts, finding_code
from fmct.labels import FINDINGS


def test_model_facts_thresholds_default_recorded_and_checked(classifier):
    facts = ModelFacts.of(classifier)
    assert facts.name == "tiny-test" and facts.version  # the fmct version when the model has none
    assert dict(facts.thresholds) == {f: DEFAULT_THRESHOLD for f in FINDINGS} and not facts.recorded
    assert facts.threshold_text("ich") == "operating threshold 0.5 (default; the model records none)"
    facts = ModelFacts.of(classifier, {"ich": 0.2, "sdh": 1})
    assert (
        facts.thresholds["ich"] == 0.2 and facts.thresholds["sdh"] == 1.0 and facts.thresholds["edh"] == 0.5
    )
    assert facts.recorded == {"ich", "sdh"}
    assert facts.threshold_text("ich") == "operating threshold 0.2 (recorded in the model)"
    assert facts.positive({"ich": 0.2, "sdh": 0.99, "edh": 0.7, "iph": 0.1}) == ["ich", "edh"]
    with pytest.raises(ValueError, match="'ich' must be a probability"):
        ModelFacts.of(classifier, {"ich": 1.5})
    assert ModelFacts.of(classifier).device_uid() == facts.device_uid()  # fixed by name and version


def test_finding_codes():
    assert tuple(finding_code("ich"))[:3] == ("1386000", "SCT", "Intracranial hemorrhage")
    sdh = finding_code("sdh")
    assert (sdh.value, sdh.scheme_designator, sdh.meaning) == ("sdh", FMCT_SCHEME, "Subdural hemorrhage")
    other = finding_code("pneumocephalus")
    assert (other.value, other.scheme_designator) == ("pneumocephalus", FMCT_SCHEME)
    assert all(finding_code(f).meaning for f in FINDINGS)
