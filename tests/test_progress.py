"""Progress lines in a log: periodic, with counts, rate-based time left, and a last line at the end."""

import io

from fmct.progress import LineProgress, log_progress, progress


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_line_progress_writes_periodic_lines_and_the_last() -> None:
    out, clock = io.StringIO(), Clock()
    with LineProgress(out, every_s=30, fields=lambda f: f"loss {f['loss']:.2f}", clock=clock) as p:
        task = p.add_task("pretrain", total=100, completed=0, loss=9.0)
        for step in range(1, 101):
            clock.t = step * 1.0  # one step per second
            p.update(task, completed=step, loss=10.0 / step)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4  # at 30, 60, 90 s and the end
    assert lines[0].startswith("pretrain 30/100 (30 %) loss 0.33 | 30 s elapsed, ~70 s left")
    assert lines[-1].startswith("pretrain 100/100 (100 %) loss 0.10 | 100 s elapsed")


def test_line_progress_every_n_and_progress_picks_lines_off_a_terminal() -> None:
    out = io.StringIO()  # not a terminal, as a SLURM log is not
    p = progress(lambda: [], fields=None, stream=out, every_n=25)
    assert isinstance(p, LineProgress)
    with p:
        task = p.add_task("ingest", total=60)
        for _ in range(60):
            p.advance(task)
    assert [ln.split(" |")[0] for ln in out.getvalue().splitlines()] == [
        "ingest 25/60 (42 %)",
        "ingest 50/60 (83 %)",
        "ingest 60/60 (100 %)",
    ]


def test_log_progress_reports_through_a_log_callable() -> None:
    """A (done, total) callback for code that only has a ``log``: lines every 30 s and the last, one per call
    of ``log``."""
    msgs: list[str] = []
    clock = Clock()
    report = log_progress(msgs.append, "embedding ssl", clock=clock)
    for done in range(0, 1201, 8):
        clock.t = done / 10.0  # 10 scans a second
        report(done, 1200)
    assert [m.split(" |")[0] for m in msgs] == [
        "embedding ssl 304/1200 (25 %)",
        "embedding ssl 608/1200 (51 %)",
        "embedding ssl 912/1200 (76 %)",
        "embedding ssl 1200/1200 (100 %)",
    ]
    assert msgs[0].endswith("30 s elapsed, ~90 s left") and msgs[-1].endswith("2 min elapsed")


def test_log_progress_starts_a_new_count_for_another_pass() -> None:
    """One callback serving two passes (loading 10 scans, then 40 training steps): each pass ends with its own
    last line."""
    msgs: list[str] = []
    report = log_progress(msgs.append, "fine-tuning", clock=Clock())
    for done in range(1, 11):
        report(done, 10)
    for done in range(1, 41):
        report(done, 40)
    assert [m.split(" |")[0] for m in msgs] == ["fine-tuning 10/10 (100 %)", "fine-tuning 40/40 (100 %)"]
