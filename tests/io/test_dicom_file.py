"""read_dicom: Part 10 files, and files written without the 128-byte preamble (File Meta present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError

from fmct.io.dicom import discover, read_series
from fmct.io.dicom_file import preamble_missing, read_dicom
from fmct.io.errors import InvalidScan


def _strip_preamble(path, keep_dicm: bool = False) -> None:
    """Rewrite ``path`` without its 128-byte preamble (and without ``DICM`` unless ``keep_dicm``)."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    path.write_bytes((b"DICM" if keep_dicm else b"") + data[132:])


@pytest.mark.parametrize("keep_dicm", [False, True])
def test_series_without_preamble_is_read(factory, keep_dicm):
    s = factory.ct(n=12)
    for f in s.files:
        _strip_preamble(f, keep_dicm)
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(s.files[0])  # what a plain reader makes of these files
    found = discover([s.folder])
    assert found.rejected == [] and len(found.series) == 1 and found.series[0].n_files == 12
    vol = read_series(found.series[0])
    np.testing.assert_allclose(vol.array, s.hu, atol=1e-3)
    np.testing.assert_allclose(vol.affine, s.affine, atol=1e-4)
    assert str(read_dicom(s.files[0]).filename) == str(s.files[0])


def test_junk_is_still_not_dicom(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x02\x00\x10\x00hello, this is not DICOM at all" * 4)
    text = tmp_path / "notes.txt"
    text.write_text("DICM? no.")
    assert preamble_missing(text) is None
    found = discover([tmp_path])
    assert found.series == []
    assert {r.path.name for r in found.rejected} == {"junk", "notes.txt"}
    assert all("DICOM" in r.reason for r in found.rejected)


REAL = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "dcm_qa_ct"


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real DICOM fixtures not present at {REAL}")
def test_real_series_without_preamble_reads_the_same(tmp_path):
    """The Philips 5 mm head series, rewritten without preambles in tmp_path, gives the same volume; a
    truncated file in it is named (the originals are read in place and never modified)."""
    real = REAL / "Philips" / "S21570" / "S2010"
    copy = tmp_path / "S2010"
    copy.mkdir()
    for f in sorted(real.glob("I*")):
        (copy / f.name).write_bytes(f.read_bytes()[132:])
    want = read_series(discover([real]).series[0])
    found = discover([copy])
    assert found.rejected == [] and [s.n_files for s in found.series] == [28]
    got = read_series(found.series[0])
    np.testing.assert_array_equal(got.array, want.array)
    np.testing.assert_allclose(got.affine, want.affine)
    victim = copy / "I100"
    victim.write_bytes(victim.read_bytes()[:-20000])
    with pytest.raises(InvalidScan, match=r"^S2010/I100: pixel data truncated \("):
        read_series(discover([copy]).series[0])
