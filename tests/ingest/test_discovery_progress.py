"""``fmct ingest`` shows the progress of discovery's header reading (files read / files found), as lines
when its output is a log."""

from __future__ import annotations

import io

from dicomkit import write_ball_series

from fmct.ingest import run_ingest
from fmct.ingest.discovery_progress import discovery_progress


def test_discovery_progress_writes_lines_to_a_log():
    out = io.StringIO()
    with discovery_progress(True, stream=out, every_s=0.0) as update:
        for done in (64, 128, 150):
            update(done, 150)
    lines = out.getvalue().splitlines()
    assert [line.split(" |")[0] for line in lines] == [
        "discover 64/150 (43 %) files",
        "discover 128/150 (85 %) files",
        "discover 150/150 (100 %) files",
    ]
    with discovery_progress(False) as update:
        assert update is None


def test_ingest_reports_the_files_discovery_read(tmp_path, capsys):
    write_ball_series(tmp_path / "in" / "a", n=14)
    (tmp_path / "in" / "readme.txt").write_text("not DICOM")
    summary = run_ingest([tmp_path / "in"], tmp_path / "store", progress=True)
    assert summary.ok == 1
    printed = capsys.readouterr().out
    assert "discover 15/15 (100 %) files" in printed
    assert printed.index("discover 15/15") < printed.index("ingest 1/1")
