"""sut/results.py: run directories never overwrite, never look complete unless
they are, and the next run tells a dead run's directory from a live one."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import sys

import pytest

from sut import results
from sut.errors import ResultsError
from sut.results import OWNER, RunDirectory, abandon_stale, check_loadgen_logs


def test_runs_never_overwrite_and_partial_is_marked(tmp_path):
    a = RunDirectory(tmp_path, "demo")
    b = RunDirectory(tmp_path, "demo")
    assert a.path != b.path
    assert a.path.name.endswith(".partial")
    d = a.test_dir("sys", "model", "Offline", "performance")
    assert d.relative_to(a.path).parts == ("sys", "model", "Offline", "performance", "run_1")
    ok = a.finish(ok=True)
    failed = b.finish(ok=False)
    assert ok.exists() and not ok.name.endswith((".partial", ".failed"))
    assert failed.name.endswith(".failed")
    c = RunDirectory(tmp_path, "demo")
    assert c.run_id not in (ok.name, failed.name[:-len(".failed")])


def test_every_end_state_has_its_name_and_the_owner_record_goes(tmp_path):
    names = {}
    for state in ("complete", "failed", "interrupted"):
        run = RunDirectory(tmp_path, state)
        owner = json.loads((run.path / OWNER).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        assert run.final_path(state).name == run.run_id + results.SUFFIXES[state]
        final = run.finish(state=state)
        assert final == run.final_path(state) and final.is_dir() and not (final / OWNER).exists()
        assert run.finish(state="failed") == final  # finishing twice changes nothing
        names[state] = final.name
    assert names["interrupted"].endswith(".interrupted") and names["failed"].endswith(".failed")


def test_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    run = RunDirectory(tmp_path, "demo")
    run.write_json("config.json", {"a": 1})
    assert json.loads((run.path / "config.json").read_text()) == {"a": 1}

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.os, "fsync", full)
    with pytest.raises(ResultsError, match=r"cannot write .*summary.txt: No space left on device; free space"):
        run.write_text("summary.txt", "x" * 1000)
    assert sorted(p.name for p in run.path.iterdir()) == [OWNER, "config.json"]  # no half file, no temp file


def test_a_complete_run_that_cannot_be_flushed_is_failed(tmp_path, monkeypatch):
    run = RunDirectory(tmp_path, "demo")
    run.write_text("summary.txt", "ok\n")
    monkeypatch.setattr(results, "sync_tree", lambda root: (_ for _ in ()).throw(OSError(errno.EIO, "I/O error")))
    with pytest.raises(ResultsError, match="cannot flush the results"):
        run.finish(ok=True)
    assert run.path.name.endswith(".failed") and run.path.exists()


def test_output_that_cannot_hold_a_run_is_one_error_before_any_work(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ResultsError, match="cannot create output directory .*file.*choose another --output"):
        RunDirectory(tmp_path / "file", "demo")


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def partial(root, name, owner=None):
    path = root / f"{name}.partial"
    path.mkdir(parents=True)
    if owner is not None:
        (path / OWNER).write_text(json.dumps(owner))
    return path


def test_partials_of_dead_processes_are_abandoned_by_the_next_run(tmp_path):
    host = socket.gethostname()
    me = {"pid": os.getpid(), "host": host, "start": results.process_start(os.getpid())}
    partial(tmp_path, "dead", {"pid": dead_pid(), "host": host, "start": None})
    partial(tmp_path, "reused-pid", {**me, "start": (me["start"] or 0) + 1})
    partial(tmp_path, "alive", me)
    partial(tmp_path, "other-host", {"pid": dead_pid(), "host": host + "-elsewhere", "start": None})
    partial(tmp_path, "no-owner")  # an older harness: cannot tell, left alone
    RunDirectory(tmp_path, "next")
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith("-next.partial"))
    expected = ["alive.partial", "dead.abandoned", "no-owner.partial", "other-host.partial"]
    if me["start"] is not None:  # /proc tells a reused process id from its owner
        expected.append("reused-pid.abandoned")
    else:
        expected.append("reused-pid.partial")
    assert names == sorted(expected)
    assert not (tmp_path / "dead.abandoned" / OWNER).exists()
    assert abandon_stale(tmp_path) == []


# --- LoadGen's logs -------------------------------------------------------------------------

def mllog(key, value=0):
    return ":::MLLOG " + json.dumps({"key": key, "value": value, "metadata": {}}) + "\n"


def loadgen_dir(tmp_path, mode, detail, accuracy="[\n]\n"):
    directory = tmp_path / mode
    directory.mkdir()
    (directory / "mlperf_log_detail.txt").write_text(detail)
    (directory / "mlperf_log_summary.txt").write_text("Result is : VALID\n")
    (directory / "mlperf_log_accuracy.json").write_text(accuracy)
    return directory


PERFORMANCE = mllog("test_datetime") + mllog("power_end") + mllog("result_validity", "VALID") + mllog("num_errors")
ACCURACY = mllog("test_datetime") + mllog("power_end")


def test_whole_logs_pass(tmp_path):
    assert check_loadgen_logs(loadgen_dir(tmp_path, "performance", PERFORMANCE), "performance") is None
    assert check_loadgen_logs(loadgen_dir(tmp_path, "accuracy", ACCURACY), "accuracy") is None


@pytest.mark.parametrize("mode,detail,accuracy,expected", [
    ("performance", PERFORMANCE[:-20], "[]", "is cut short"),
    ("performance", mllog("test_datetime") + mllog("power_end"), "[]", "no result_validity, num_errors"),
    ("performance", mllog("a") + ":::MLLOG {\"key\": \n" + PERFORMANCE, "[]", "damaged at line 2"),
    ("accuracy", mllog("test_datetime"), "[]", "no power_end"),
    ("accuracy", ACCURACY, '[\n{ "seq_id" : 0, "qsl_idx" : 2', "accuracy log .* is cut short or damaged"),
])
def test_damaged_logs_are_named(tmp_path, mode, detail, accuracy, expected):
    problem = check_loadgen_logs(loadgen_dir(tmp_path, mode, detail, accuracy), mode)
    assert problem is not None and re.search(expected, problem), problem


def test_missing_logs_are_named(tmp_path):
    directory = loadgen_dir(tmp_path, "accuracy", ACCURACY)
    (directory / "mlperf_log_accuracy.json").unlink()
    assert "accuracy log" in check_loadgen_logs(directory, "accuracy")
    (directory / "mlperf_log_detail.txt").unlink()
    assert "cannot be read" in check_loadgen_logs(directory, "accuracy")
