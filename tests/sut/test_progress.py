"""sut.progress: the progress line of a LoadGen test, driven with made-up
times and counts (no clock, no sleeping), written into strings."""

from __future__ import annotations

import io

import pytest

from sut import progress
from sut.progress import Line, LoadGenProgress
from sut.settings import Plan


class Terminal(io.StringIO):
    def isatty(self):
        return True


def lines(tty: bool, enabled: bool = True):
    err, out = (Terminal() if tty else io.StringIO()), io.StringIO()
    return Line(enabled, tty_stream=err, plain_stream=out), err, out


#: 1000 SingleStream queries expected in 10 s
PLAN = Plan("queries", 1000, 1, 10.0, 0.0)


# --- Line ---------------------------------------------------------------------------

def test_terminal_line_is_rewritten_in_place_on_stderr_and_ended_once():
    line, err, out = lines(tty=True)
    assert line.tty and line.interval == progress.TTY_INTERVAL_S
    line.show("first long text", 0.0)
    line.show("second", 1.0)
    line.end("final")
    assert err.getvalue() == "\rfirst long text\rsecond         \rfinal \n"
    assert out.getvalue() == ""
    line.end("again")  # a second end adds nothing but the text (already on a new line)
    assert err.getvalue().endswith("\n")


def test_terminal_line_is_ended_even_without_a_final_text():
    line, err, _ = lines(tty=True)
    line.show("running", 0.0)
    line.end()
    assert err.getvalue() == "\rrunning\n"


def test_nothing_shown_means_nothing_to_end():
    line, err, out = lines(tty=True)
    line.end()
    assert err.getvalue() == "" and out.getvalue() == ""


def test_plain_lines_go_to_stdout_every_interval_and_stderr_stays_clean():
    line, err, out = lines(tty=False)
    assert not line.tty and line.interval == progress.PLAIN_INTERVAL_S
    shown = []
    for now in range(0, 31):
        if line.due(float(now)):
            line.show(f"at {now}", float(now))
            shown.append(now)
    assert shown == [10, 20, 30]  # nothing at the start: a short test stays quiet
    line.end("final")
    assert out.getvalue() == "at 10\nat 20\nat 30\nfinal\n"
    assert err.getvalue() == ""


def test_a_short_plain_test_prints_nothing_at_all():
    line, err, out = lines(tty=False)
    assert not line.due(1.0)
    line.end("final")
    assert out.getvalue() == "" and err.getvalue() == ""


def test_disabled_line_writes_nothing():
    line, err, out = lines(tty=True, enabled=False)
    assert not line.due(100.0)
    line.show("x", 1.0)
    line.end("y")
    assert err.getvalue() == "" and out.getvalue() == ""


def test_a_closed_stream_never_fails_the_run():
    line, err, _ = lines(tty=True)
    err.close()
    line.show("x", 0.0)
    line.end("y")


def test_terminal_line_is_cut_to_the_terminal_width(monkeypatch):
    monkeypatch.setattr(progress.shutil, "get_terminal_size", lambda fallback: type("S", (), {"columns": 20})())
    line, err, _ = lines(tty=True)
    line.show("x" * 50, 0.0)
    assert len(err.getvalue()) == 1 + 19


# --- LoadGenProgress -------------------------------------------------------------------

def test_text_shows_elapsed_expected_count_rate_and_eta():
    bar = LoadGenProgress("SingleStream", "performance", PLAN, lines(tty=True)[0], start=0.0)
    bar.text(1.0, 100)
    text = bar.text(2.0, 200)
    assert text == ("SingleStream performance  2.0 s / ~10.0 s  200/1000 queries  100 queries/s "
                    "(10 ms/query)  ETA 8.0 s")


def test_offline_counts_samples_and_multistream_counts_queries_of_its_samples():
    offline = LoadGenProgress("Offline", "performance", Plan("samples", 400, 1, 4.0, 0.0), Line(False), start=0.0)
    assert offline.text(1.0, 100).startswith("Offline performance  1.0 s / ~4.0 s  100/400 samples  100 samples/s")
    multi = LoadGenProgress("MultiStream", "performance", Plan("queries", 50, 8, 5.0, 0.0), Line(False), start=0.0)
    assert "10/50 queries  10 queries/s (100 ms/query)" in multi.text(1.0, 80)


def test_eta_waits_for_min_duration_and_stops_at_max_duration():
    with_min = Plan("queries", 100, 1, 60.0, 0.0, min_seconds=60.0)
    bar = LoadGenProgress("SingleStream", "performance", with_min, Line(False), start=0.0)
    assert bar.text(10.0, 100).endswith("ETA 50.0 s")  # the count is reached, the duration is not
    with_max = Plan("queries", 1000, 1, 5.0, 5.0)
    bar = LoadGenProgress("Server", "performance", with_max, Line(False), start=0.0)
    assert bar.text(4.0, 40).endswith("ETA 1.0 s")


def test_long_times_read_as_minutes():
    bar = LoadGenProgress("SingleStream", "performance", Plan("queries", 10**6, 1, 600.0, 0.0), Line(False), start=0.0)
    assert "1:15 min / ~10:00 min" in bar.text(75.0, 1000)


def test_rate_follows_the_last_seconds_not_the_whole_run():
    bar = LoadGenProgress("Server", "performance", Plan("queries", 10**6, 1, 0.0, 0.0), Line(False), start=0.0)
    for t in range(0, 11):  # 100 queries/s for 10 s
        bar.text(float(t), 100 * t)
    for t in range(11, 15):  # then 10 queries/s
        text = bar.text(float(t), 1000 + 10 * (t - 10))
    assert "10 queries/s" in text
    assert " / ~" not in text  # no expected length known


@pytest.mark.parametrize("state", ["done", "failed", "interrupted"])
def test_finish_ends_the_line_with_the_final_count_and_state(state):
    line, err, _ = lines(tty=True)
    bar = LoadGenProgress("Offline", "accuracy", Plan("samples", 260, 1, 3.0, 0.0), line, start=0.0)
    bar.update(0.5, 10)
    bar.finish(2.0, 260 if state == "done" else 30, state)
    final = err.getvalue().split("\r")[-1]
    assert final.rstrip(" \n").endswith(state) and final.endswith("\n")
    assert ("260 samples" if state == "done" else "30 samples") in final
