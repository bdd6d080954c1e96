"""fmct.timing: stages are free when nobody records, summed per name when someone does."""

from __future__ import annotations

import time

from fmct.timing import record, stage


def test_stage_without_recording_is_a_no_op():
    with stage("decode"):
        x = 1
    assert x == 1


def test_record_sums_stages_and_nests():
    with record() as outer:
        with stage("a"):
            time.sleep(0.01)
        with record() as inner:
            with stage("b"):
                pass
        with stage("a"):
            time.sleep(0.01)
    assert set(outer) == {"a"} and outer["a"] >= 0.02
    assert set(inner) == {"b"}


def test_stage_records_time_even_when_the_block_raises():
    with record() as times:
        try:
            with stage("read"):
                raise ValueError("bad file")
        except ValueError:
            pass
    assert "read" in times
