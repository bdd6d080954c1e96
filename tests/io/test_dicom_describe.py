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


def test_remembered_description_equals_a_fresh_one(tmp_path):
    """Files with the same description bytes share one memo entry; different identifying bytes (another
    patient) or another character set get their own, so the result is what a fresh cleaning gives."""
    import warnings

    import pydicom

    from fmct.io.dicom_describe import IDENTIFYING_TAGS

    def written(name: str, patient: str, charset: str = "ISO_IR 100") -> Dataset:
        ds = _ds(SpecificCharacterSet=charset, SeriesDescription="Kopf Müller 5mm", PatientName=patient)
        ds.preamble = b"\0" * 128
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(tmp_path / name, implicit_vr=False, little_endian=True)
        return pydicom.dcmread(tmp_path / name)

    memo: dict = {}
    for name, patient, charset in [("a", "MÜLLER^ANNA", "ISO_IR 100"), ("b", "MÜLLER^ANNA", "ISO_IR 100"),
                                   ("c", "SCHMIDT^ANNA", "ISO_IR 100"), ("d", "MÜLLER^ANNA", "ISO_IR 192")]:  # fmt: skip
        assert clean_description(written(name, patient, charset), memo) == clean_description(
            written(name, patient, charset)
        )
    assert len(memo) == 3
    assert clean_description(written("e", "MÜLLER^ANNA"), memo) == "Kopf * 5mm"
    assert clean_description(written("f", "SCHMIDT^ANNA"), memo) == "Kopf Müller 5mm"
    recorder_seen: set[str] = set()

    class Recorder(Dataset):
        def get(self, key, default=None):
            recorder_seen.add(key)
            return super().get(key, default)

    rec = Recorder()
    rec.update(written("g", "MÜLLER^ANNA"))
    clean_description(rec)
    charset = 0x00080005  # pydicom reads it to decode: in the memo's key too
    assert recorder_seen <= {"SeriesDescription", *IDENTIFYING_TAGS, charset}
