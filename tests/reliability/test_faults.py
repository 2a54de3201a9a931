"""The fault suite: ``run.py`` in real subprocesses, signalled, killed, starved
of disk, and given backends that raise, hang, answer wrongly or slowly.

Every case checks the exit code, that stderr holds exactly one ``error:``
line and nothing else alarming (no traceback, abort, ``ERROR`` log line), and
what is left on disk. The runs start together in one module fixture (they
mostly wait on sleeping backends and signals), so the suite takes about a
minute on two cores; the two tmpfs cases (root only) run on their own.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.reliability.harness import Run, demo_seed, get, in_parallel, one_error_line, plugin, run

SCENARIOS = ["SingleStream", "MultiStream", "Offline", "Server"]
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}
#: how long after a marker line a signal is sent: the run is then inside that phase
SETTLE_S = 1.0
PATCHED = "tests.reliability.patched_run"


def signalled(tmp: Path, args: list[str], marker: str, signum: int, stream: str = "stdout", then=None, **kwargs):
    def case():
        proc = Run(tmp, *args, **kwargs)
        proc.wait_for(marker, stream)
        time.sleep(SETTLE_S)
        proc.signal(signum)
        if then is not None:
            then(proc)
        return proc.finish()
    return case


def killed_then_rerun(tmp: Path):
    """SIGKILL while preprocessing the demo (real model), then the same run again."""
    def case():
        proc = Run(tmp, "--profile", "demo", "--accuracy", "--preprocess-workers", "1", module=PATCHED,
                   env={"PREPROCESS_S": "0.1"}, progress=True)
        proc.wait_for("preprocessing:", "stderr")
        time.sleep(0.5)
        proc.signal(signal.SIGKILL)
        return proc.finish(), run(tmp, "--profile", "demo", "--accuracy")
    return case


def demo_in_place() -> list[str]:
    """The demo read from the suite's prepared copy: with ``--cache-dir none`` nothing is written but results."""
    return ["--profile", "demo", "--dataset-path", str(demo_seed() / "synthetic-v1")]


def file_size_limit(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    cases = {}

    def add(name, make, *args, **kwargs):
        cases[name] = make(tmp_path_factory.mktemp(name), *args, **kwargs)

    def plain(tmp, *args, **kwargs):
        return lambda: run(tmp, *args, **kwargs)

    for name, signum in SIGNALS.items():
        for scenario in SCENARIOS:
            add(f"{name}-{scenario}", signalled, ["--profile", "demo", *plugin("SlowBackend"), "--mode",
                "performance", "--scenario", scenario, "--time", "60"], f"running {scenario} performance test",
                signum)
        add(f"{name}-preprocessing", signalled, ["--profile", "demo", "--backend", "null", "--accuracy",
            "--preprocess-workers", "1"], "preprocessing:", signum, "stderr", env={"PREPROCESS_S": "0.1"},
            module=PATCHED, progress=True)
    add("SIGINT-accuracy", signalled, ["--profile", "demo", *plugin("SlowBackend"), "--accuracy"],
        "running SingleStream accuracy test", signal.SIGINT, env={"SLOW_S": "0.1"})
    hung = ["--profile", "demo", *plugin("HangsUnderLoadGen"), "--mode", "performance", "--sample-timeout", "600"]
    add("SIGINT-hung", signalled, hung, "running SingleStream performance test", signal.SIGINT)
    add("SIGINT-twice", signalled, hung, "running SingleStream performance test", signal.SIGINT,
        then=lambda proc: (time.sleep(0.5), proc.signal(signal.SIGINT)))
    add("killed", killed_then_rerun)

    performance = ["--profile", "demo", "--mode", "performance"]
    add("raises", plain, *performance, *plugin("RaisesUnderLoadGen"), "--scenario", "Offline")
    add("hangs", plain, *performance, *plugin("HangsUnderLoadGen"), "--sample-timeout", "1")
    add("wrong-count", plain, *performance, *plugin("WrongCountUnderLoadGen"), "--scenario", "Offline",
        "--max-batchsize", "4")
    # 16 samples of 0.25 s in one Offline queue item: 4 s, but each call is well inside the timeout
    add("slow", plain, *performance, *plugin("SlowBackend"), "--scenario", "Offline", "--quick", "--count", "16",
        "--max-batchsize", "1", "--sample-timeout", "2", env={"SLOW_S": "0.25"})
    add("load", plain, "--profile", "demo", *plugin("LoadRaises"))
    add("close", plain, *performance, *plugin("CloseRaises"), "--quick")
    add("constructor", plain, "--profile", "demo", *plugin("ConstructorRaises"))
    add("internal", plain, "--profile", "demo", *plugin("DescribeBroken"))
    add("internal-v", plain, "--profile", "demo", *plugin("DescribeBroken"), "-v")
    add("internal-in-run", plain, *performance, "--backend", "null", "--quick", module=PATCHED,
        env={"BUG_AFTER_TEST": "1"})
    add("log-cut", plain, *demo_in_place(), "--mode", "performance", "--quick", cache="none",
        preexec_fn=file_size_limit(20_000))
    cases["output-is-a-file"] = lambda: _output_is_a_file(tmp_path_factory.mktemp("output-is-a-file"))
    return in_parallel(cases)


def _output_is_a_file(tmp: Path):
    (tmp / "taken").write_text("")
    return run(tmp, "--profile", "demo", output=tmp / "taken")


# --- signals ----------------------------------------------------------------------------------

def assert_interrupted(result, signame: str) -> Path:
    assert result.returncode == 128 + SIGNALS[signame], (result.returncode, result.stderr)
    one_error_line(result, f"interrupted by {signame}")
    directory = result.the_dir()
    assert directory.name.endswith(".interrupted"), directory.name
    assert (directory / "summary.txt").read_text().startswith("INTERRUPTED: interrupted by " + signame)
    record = json.loads((directory / "config.json").read_text())
    assert record["state"] == "interrupted"
    for test in record.get("results", []):
        assert test["directory"].startswith(str(directory) + os.sep), test["directory"]
    assert not (directory / ".owner").exists()
    return directory


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("signame", SIGNALS)
def test_signal_during_a_loadgen_test_ends_it_cleanly(runs, signame, scenario):
    directory = assert_interrupted(get(runs, f"{signame}-{scenario}"), signame)
    (detail,) = directory.glob(f"*/*/{scenario}/performance/run_1/mlperf_log_detail.txt")
    assert detail.read_bytes().endswith(b"\n")  # LoadGen returned and closed its log


@pytest.mark.parametrize("signame", SIGNALS)
def test_signal_during_preprocessing_leaves_no_partial_cache(runs, signame):
    result = get(runs, f"{signame}-preprocessing")
    assert_interrupted(result, signame)
    leftovers = [p.name for p in result.cache.rglob("*") if ".partial" in p.name or p.name == "data.npy"]
    assert leftovers == []


def test_signal_during_accuracy(runs):
    directory = assert_interrupted(get(runs, "SIGINT-accuracy"), "SIGINT")
    assert not list(directory.rglob("accuracy.txt"))  # nothing scored from a cut test


def test_signal_while_the_backend_hangs_still_ends(runs):
    assert_interrupted(get(runs, "SIGINT-hung"), "SIGINT")


def test_a_second_signal_exits_at_once(runs):
    result = get(runs, "SIGINT-twice")
    assert result.returncode == 130, result.stderr
    one_error_line(result, "interrupted again by SIGINT: exited at once", ".interrupted")
    assert result.the_dir().name.endswith(".interrupted")


def test_sigkill_during_preprocessing_then_a_rerun_is_right(runs):
    first, again = get(runs, "killed")
    assert first.returncode == -signal.SIGKILL
    (stale,) = first.dirs()
    assert stale.endswith(".partial")
    assert again.returncode == 0, again.stderr
    assert "accuracy=100.000%, good=60, total=60" in again.stdout
    names = again.dirs()
    assert len(names) == 2 and stale[:-len(".partial")] + ".abandoned" in names, names
    (rerun,) = [n for n in names if not n.endswith(".abandoned")]
    assert "." not in rerun  # complete
    assert not list(again.cache.rglob("*.partial*"))


# --- disks ----------------------------------------------------------------------------------

def test_loadgen_log_cut_short_by_a_full_disk_is_a_failure(runs):
    """The disk fills while LoadGen writes and has room again for the harness's
    own small files (files over 20 kB cannot grow: LoadGen's detail log is cut)."""
    result = get(runs, "log-cut")
    assert result.returncode == 7, (result.stdout, result.stderr)
    directory = result.the_dir()
    one_error_line(result, f"{directory}{os.sep}", "mlperf_log_detail.txt", "cut short")  # named where it is now
    assert directory.name.endswith(".failed")
    assert (directory / "summary.txt").read_text().startswith("FAILED: ")
    assert json.loads((directory / "config.json").read_text())["state"] == "failed"
    assert "result    : VALID" not in result.stdout


def test_output_that_is_a_file(runs):
    result = get(runs, "output-is-a-file")
    assert result.returncode == 7
    one_error_line(result, "taken", "--output")


@pytest.fixture
def small_disk(tmp_path):
    """A 48 kB tmpfs (root only)."""
    mount = shutil.which("mount")
    if os.geteuid() != 0 or not mount:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    point = tmp_path / "small"
    point.mkdir()
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(point)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield point
    finally:
        subprocess.run(["umount", str(point)], capture_output=True)


def test_results_disk_that_fills_during_the_run(tmp_path, small_disk):
    result = run(tmp_path, *demo_in_place(), "--quick", output=small_disk / "results", cache="none")
    assert result.returncode == 7, (result.stdout, result.stderr)
    one_error_line(result)
    assert "result    : VALID" not in result.stdout
    assert all(not name.endswith(".partial") and "." in name for name in result.dirs()), result.dirs()


def test_read_only_output_fails_before_any_work(tmp_path, small_disk):
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = run(tmp_path, *demo_in_place(), output=small_disk / "results", cache="none")
    assert result.returncode == 7, result.stderr
    one_error_line(result, "Read-only file system", "--output")
    assert "running" not in result.stdout


# --- backends that fail -----------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [
    ("raises", "backend failed: RuntimeError: injected failure under LoadGen"),
    ("hangs", "no answer"),
    ("wrong-count", "backend returned 3 results for"),
    ("close", "backend 'tests.reliability.plugins:CloseRaises' failed to close: OSError: [Errno 5]"),
])
def test_backend_failure_is_one_line_and_a_failed_directory(runs, name, expected):
    result = get(runs, name)
    assert result.returncode == 6, (result.stdout, result.stderr)
    one_error_line(result, expected)
    directory = result.the_dir()
    assert directory.name.endswith(".failed")
    record = json.loads((directory / "config.json").read_text())
    assert record["state"] == "failed"
    for test in record.get("results", []):
        assert test["directory"].startswith(str(directory) + os.sep)


@pytest.mark.parametrize("name,expected", [
    ("constructor", "backend 'tests.reliability.plugins:ConstructorRaises' could not be created: ValueError: "
                    "plugin constructor failed"),
    ("load", "backend 'tests.reliability.plugins:LoadRaises' failed to load "),
])
def test_plugin_that_cannot_start_is_a_backend_failure_that_leaves_nothing(runs, name, expected):
    result = get(runs, name)
    assert result.returncode == 6
    one_error_line(result, expected)
    assert result.dirs() == []  # found before the run's directory is made


def test_slow_backend_is_not_hung(runs):
    result = get(runs, "slow")
    assert result.returncode == 0, result.stderr
    assert "result    :" in result.stdout


def test_internal_error_is_one_line_with_the_traceback_in_a_file(runs):
    """Before the run's directory exists the traceback goes to a temporary file (after: its error.log)."""
    result = get(runs, "internal")
    assert result.returncode == 1, result.stderr
    line = one_error_line(result, "internal error: TypeError: describe is broken (traceback: ")
    log = Path(line.split("(traceback: ")[1][:-1])
    try:
        assert "Traceback (most recent call last)" in log.read_text() and "describe is broken" in log.read_text()
    finally:
        log.unlink()
    assert result.dirs() == []


def test_internal_error_during_the_run_leaves_its_traceback_in_error_log(runs):
    result = get(runs, "internal-in-run")
    assert result.returncode == 1, result.stderr
    line = one_error_line(result, "internal error: KeyError: 'broken' (traceback: ")
    directory = result.the_dir()
    assert directory.name.endswith(".failed") and line.endswith(f"(traceback: {directory / 'error.log'})")
    assert "KeyError: 'broken'" in (directory / "error.log").read_text()
    assert (directory / "summary.txt").read_text().startswith("FAILED: ")


def test_verbose_shows_the_traceback_on_the_terminal_too(runs):
    result = get(runs, "internal-v")
    assert result.returncode == 1
    Path(result.stderr.split("(traceback: ")[1].split(")")[0]).unlink()
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: internal error: TypeError: describe is broken")
