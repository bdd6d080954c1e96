"""SeriesNumber and the cleaned SeriesDescription (no words of the header's identifying attributes)."""

from pydicom.dataset import Dataset

from fmct.io.dicom_describe import clean_description, series_number


def _ds(**kw) -> Dataset:
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def test_series_number():
    assert series_number(_ds(SeriesNumber="12")) == 12
    assert series_number(_ds()) is None


def test_description_keeps_technical_words_and_drops_identifying_ones():
    ds = _ds(
        SeriesDescription="Head 5mm  Smith^John for dr Who 19700101 MRN123456",
        PatientName="SMITH^JOHN",
        ReferringPhysicianName="WHO^DOCTOR",
        PatientID="A77",
    )
    assert clean_description(ds) == "Head 5mm *^* for dr * * *"
    assert clean_description(_ds(SeriesDescription="  ")) is None
    assert clean_description(_ds()) is None


def test_description_reads_only_its_keywords(recording_dataset):
    """Discovery remembers descriptions by the bytes of DESCRIPTION_KEYWORDS: nothing else may be read."""
    from fmct.io.dicom_describe import DESCRIPTION_KEYWORDS

    ds, seen = recording_dataset(
        _ds(SeriesDescription="Head Smith", PatientName="SMITH^J", PatientID="A7", StudyDate="20200101")
    )
    assert clean_description(ds) == "Head *"
    assert seen and seen <= set(DESCRIPTION_KEYWORDS)
