"""discover on the real CT series in ../shared/realdata (read in place, never copied)."""

from pathlib import Path

import pytest

from fmct.io.dicom import discover

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "dcm_qa_ct"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real DICOM fixtures not present at {REAL}")


@needs_real
def test_real_philips_dicomdir_rows_and_series_numbers():
    """The Philips export holds a DICOMDIR index (named DIRFILE) per series folder: each is a row, and the
    series are told apart by SeriesNumber and file count."""
    found = discover([REAL / "Philips" / "S21570"])
    by_number = {s.series_number: s for s in found.series}
    assert sorted(by_number) == [100, 201, 401]
    assert by_number[201].n_files == 28 and by_number[401].n_files == 6
    assert by_number[201].description == "STD BRAIN 5MM"
    index = sorted(r.path.parent.name for r in found.rejected if r.reason.startswith("DICOMDIR index"))
    assert index == ["S1000", "S2010", "S4010"] and len(found.rejected) == 3


def test_discover_files_is_discover_of_the_walked_files(mixed):
    """A caller that walked the folders already (fmct ingest's plan) gets what discover gives."""
    from fmct.io.dicom import discover, discover_files
    from fmct.io.dicom_discover import iter_files
    from fmct.io.nifti import is_nifti
    from fmct.io.sources import SourceNamer

    files = [f for f in iter_files(mixed) if not is_nifti(f)]
    walked, found = discover_files(files, SourceNamer(mixed)), discover(mixed)
    assert [(s.scan_id, s.files, s.n_files, s.description) for s in walked.series] == [
        (s.scan_id, s.files, s.n_files, s.description) for s in found.series
    ]
    assert walked.rejected == found.rejected and len(found.series) >= 4
    assert [walked.series[0].name_of(f) for f in walked.series[0].files] == [
        found.series[0].name_of(f) for f in found.series[0].files
    ]
