"""read_labels: bad labels files fail with the file, the column and the reason; blanks are unlabelled."""

import numpy as np
import pytest

from fmct.labels.table import keep_matched, label_matrix, read_labels, unmatched_note


def _csv(tmp_path, text: str):
    p = tmp_path / "labels.csv"
    p.write_text(text)
    return p


def test_blank_is_unlabelled_and_ids_align(tmp_path):
    df = read_labels(_csv(tmp_path, "scan_id,patient_id,ich,sdh\ns1,p1,1,\ns2,p2,0,1\n"))
    m = label_matrix(df, ["s2", "s1", "missing"], ["ich", "sdh"])
    np.testing.assert_array_equal(m[:2], [[0, 1], [1, np.nan]])
    assert np.isnan(m[2]).all()


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("scan_id,ich\n", "no rows"),
        ("scan_id,ich\ns1,yes\ns2,0\n", r"column ich: 'yes' \(scan s1\) is not 0, 1 or empty"),
        ("scan_id,ich,sdh\ns1,0,2\ns2,1,3\n", r"column sdh: .*2 such value"),
        ("scan_id,foo\ns1,1\n", "no finding column"),
        ("patient_id,ich\np1,1\n", "no scan_id column"),
        ("scan_id,ich\ns1,1\ns1,0\n", "duplicated scan_id s1"),
    ],
)
def test_bad_labels_are_refused_with_the_reason(tmp_path, text, match):
    with pytest.raises(ValueError, match=match) as err:
        read_labels(_csv(tmp_path, text))
    assert "labels.csv" in str(err.value)


def test_unmatched_ids_are_counted_with_up_to_five_examples():
    wanted = [f"s{i}" for i in range(10)]
    warned: list[str] = []
    assert keep_matched(wanted, wanted[3:], "embedding", warned.append) == wanted[3:]
    assert warned == ["3 of 10 labelled scan(s) have no embedding and are left out (e.g. s0, s1, s2)"]
    assert unmatched_note(wanted, ["s9"], "embedding").endswith("(e.g. s0, s1, s2, s3, s4, ...)")
    assert unmatched_note(wanted, wanted, "embedding") is None
    with pytest.raises(ValueError, match="none of the 10 labelled scans has an embedding"):
        keep_matched(wanted, ["x"], "embedding", warned.append)
