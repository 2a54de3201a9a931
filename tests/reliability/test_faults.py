"""The fault suite: ``run.py`` in real subprocesses, signalled, killed, starved
of disk, and given backends that raise, hang, answer wrongly or slowly.

Every case checks the exit code, that stderr holds exactly one ``error:``
line and nothing else alarming (no traceback, abort, ``ERROR`` log line), and
what is left on disk. Runs of one group start together (they mostly wait on
sleeping backends), so the suite takes about a minute on two cores.
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


def _signalled(tmp: Path, args: list[str], marker: str, signum: int, stream: str = "stdout",
               env: dict | None = None, module: str | None = None, progress: bool = False, then=None):
    def case():
        proc = Run(tmp, *args, env=env, module=module, progress=progress)
        proc.wait_for(marker, stream)
        time.sleep(SETTLE_S)
        proc.signal(signum)
        if then is not None:
            then(proc)
        return proc.finish()
    return case


# --- signals ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signal_runs(tmp_path_factory):
    cases = {}
    for name, signum in SIGNALS.items():
        for scenario in SCENARIOS:
            args = ["--profile", "demo", *plugin("SlowBackend"), "--mode", "performance", "--scenario", scenario,
                    "--time", "60"]
            cases[f"{name}-{scenario}"] = _signalled(tmp_path_factory.mktemp(f"{name}-{scenario}"), args,
                                                     f"running {scenario} performance test", signum)
        preprocessing = ["--profile", "demo", "--backend", "null", *plugin("SlowBackend")[2:], "--accuracy",
                         "--preprocess-workers", "1"]
        cases[f"{name}-preprocessing"] = _signalled(
            tmp_path_factory.mktemp(f"{name}-preprocessing"), preprocessing, "preprocessing:", signum, "stderr",
            env={"PREPROCESS_S": "0.1"}, module="tests.reliability.slow_run", progress=True)
    cases["SIGINT-accuracy"] = _signalled(
        tmp_path_factory.mktemp("SIGINT-accuracy"), ["--profile", "demo", *plugin("SlowBackend"), "--accuracy"],
        "running SingleStream accuracy test", signal.SIGINT, env={"SLOW_S": "0.1"})
    hung = ["--profile", "demo", *plugin("HangsUnderLoadGen"), "--mode", "performance", "--sample-timeout", "600"]
    cases["SIGINT-hung"] = _signalled(tmp_path_factory.mktemp("SIGINT-hung"), hung,
                                      "running SingleStream performance test", signal.SIGINT)
    cases["SIGINT-twice"] = _signalled(tmp_path_factory.mktemp("SIGINT-twice"), hung,
                                       "running SingleStream performance test", signal.SIGINT,
                                       then=lambda proc: (time.sleep(0.5), proc.signal(signal.SIGINT)))
    return in_parallel(cases)


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
def test_signal_during_a_loadgen_test_ends_it_cleanly(signal_runs, signame, scenario):
    result = get(signal_runs, f"{signame}-{scenario}")
    directory = assert_interrupted(result, signame)
    (detail,) = directory.glob(f"*/*/{scenario}/performance/run_1/mlperf_log_detail.txt")
    assert detail.read_bytes().endswith(b"\n")  # LoadGen returned and closed its log


@pytest.mark.parametrize("signame", SIGNALS)
def test_signal_during_preprocessing_leaves_no_partial_cache(signal_runs, signame):
    result = get(signal_runs, f"{signame}-preprocessing")
    assert_interrupted(result, signame)
    leftovers = [p.name for p in result.cache.rglob("*") if ".partial" in p.name or p.name == "data.npy"]
    assert leftovers == []


def test_signal_during_accuracy(signal_runs):
    directory = assert_interrupted(get(signal_runs, "SIGINT-accuracy"), "SIGINT")
    assert not list(directory.rglob("accuracy.txt"))  # nothing scored from a cut test


def test_signal_while_the_backend_hangs_still_ends(signal_runs):
    assert_interrupted(get(signal_runs, "SIGINT-hung"), "SIGINT")


def test_a_second_signal_exits_at_once(signal_runs):
    result = get(signal_runs, "SIGINT-twice")
    assert result.returncode == 130, result.stderr
    one_error_line(result, "interrupted again by SIGINT: exited at once", ".interrupted")
    assert result.the_dir().name.endswith(".interrupted")


# --- killed, then run again ---------------------------------------------------------------------

def test_sigkill_during_preprocessing_then_a_rerun_is_right(tmp_path):
    killed = Run(tmp_path, "--profile", "demo", "--accuracy", "--preprocess-workers", "1",
                 module="tests.reliability.slow_run", env={"PREPROCESS_S": "0.1"}, progress=True)
    killed.wait_for("preprocessing:", "stderr")
    time.sleep(0.5)
    killed.signal(signal.SIGKILL)
    first = killed.finish()
    assert first.returncode == -signal.SIGKILL
    (stale,) = first.dirs()
    assert stale.endswith(".partial")
    again = run(tmp_path, "--profile", "demo", "--accuracy")
    assert again.returncode == 0, again.stderr
    assert "accuracy=100.000%, good=60, total=60" in again.stdout
    names = again.dirs()
    assert stale[:-len(".partial")] + ".abandoned" in names and len(names) == 2, names
    assert [n for n in names if not n.endswith(".abandoned")][0].count(".") == 0  # the rerun is complete
    assert not [p for p in again.cache.rglob("*.partial*")]


# --- disks that fill ------------------------------------------------------------------------------

def demo_in_place() -> list[str]:
    """The demo read from the suite's prepared copy: with ``--cache-dir none`` nothing is written but results."""
    return ["--profile", "demo", "--dataset-path", str(demo_seed() / "synthetic-v1")]


def _file_size_limit(limit: int):
    def preexec():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


def test_loadgen_log_cut_short_by_a_full_disk_is_a_failure(tmp_path):
    """The disk fills while LoadGen writes and has room again for the harness's
    own small files (files over 20 kB cannot grow: LoadGen's detail log is cut)."""
    result = Run(tmp_path, *demo_in_place(), "--mode", "performance", "--quick", cache="none",
                 preexec_fn=_file_size_limit(20_000)).finish()
    assert result.returncode == 7, (result.stdout, result.stderr)
    one_error_line(result, "mlperf_log_detail.txt", "cut short")
    directory = result.the_dir()
    assert directory.name.endswith(".failed")
    assert (directory / "summary.txt").read_text().startswith("FAILED: ")
    assert json.loads((directory / "config.json").read_text())["state"] == "failed"
    assert "result    : VALID" not in result.stdout


@pytest.fixture
def small_disk(tmp_path):
    """A 48 kB tmpfs (root only)."""
    mount = shutil.which("mount")
    if os.geteuid() != 0 or not mount:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    point = tmp_path / "small"
    point.mkdir()
    done = subprocess.run([mount, "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(point)], capture_output=True, text=True)
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


def test_output_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("")
    result = run(tmp_path, "--profile", "demo", output=tmp_path / "taken")
    assert result.returncode == 7
    one_error_line(result, "taken", "--output")


# --- backends that fail ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def backend_runs(tmp_path_factory):
    def case(name, *args, **kwargs):
        tmp = tmp_path_factory.mktemp(name)
        return lambda: run(tmp, "--profile", "demo", *args, **kwargs)

    return in_parallel({
        "raises": case("raises", *plugin("RaisesUnderLoadGen"), "--mode", "performance", "--scenario", "Offline"),
        "hangs": case("hangs", *plugin("HangsUnderLoadGen"), "--mode", "performance", "--sample-timeout", "1"),
        "wrong-count": case("wrong-count", *plugin("WrongCountUnderLoadGen"), "--mode", "performance",
                            "--scenario", "Offline", "--max-batchsize", "4"),
        "slow": case("slow", *plugin("SlowBackend"), "--mode", "performance", "--scenario", "Offline", "--quick",
                     "--count", "16", "--sample-timeout", "1", env={"SLOW_S": "0.25"}),
        "load": case("load", *plugin("LoadRaises")),
        "close": case("close", *plugin("CloseRaises"), "--mode", "performance", "--quick"),
        "constructor": case("constructor", *plugin("ConstructorRaises")),
        "internal": case("internal", *plugin("DescribeBroken")),
        "internal-v": case("internal-v", *plugin("DescribeBroken"), "-v"),
    })


@pytest.mark.parametrize("name,expected", [
    ("raises", "backend failed: RuntimeError: injected failure under LoadGen"),
    ("hangs", "no answer"),
    ("wrong-count", "backend returned 3 results for"),
    ("load", "backend 'tests.reliability.plugins:LoadRaises' failed to load"),
    ("close", "backend 'tests.reliability.plugins:CloseRaises' failed to close: OSError: [Errno 5]"),
])
def test_backend_failure_is_one_line_and_a_failed_directory(backend_runs, name, expected):
    result = get(backend_runs, name)
    assert result.returncode == 6, (result.stdout, result.stderr)
    one_error_line(result, expected)
    directory = result.the_dir()
    assert directory.name.endswith(".failed")
    record = json.loads((directory / "config.json").read_text())
    assert record["state"] == "failed"
    for test in record.get("results", []):
        assert test["directory"].startswith(str(directory) + os.sep)


def test_plugin_constructor_failure_is_a_backend_failure(backend_runs):
    result = get(backend_runs, "constructor")
    assert result.returncode == 6
    one_error_line(result, "backend 'tests.reliability.plugins:ConstructorRaises' could not be created: ValueError")
    assert result.the_dir().name.endswith(".failed")


def test_slow_backend_is_not_hung(backend_runs):
    result = get(backend_runs, "slow")
    assert result.returncode == 0, result.stderr
    assert "result    :" in result.stdout


def test_internal_error_is_one_line_with_the_traceback_in_error_log(backend_runs):
    result = get(backend_runs, "internal")
    assert result.returncode == 1, result.stderr
    line = one_error_line(result, "internal error: TypeError: describe is broken (traceback: ")
    directory = result.the_dir()
    assert directory.name.endswith(".failed")
    log = directory / "error.log"
    assert line.endswith(f"(traceback: {log})")
    assert "Traceback (most recent call last)" in log.read_text() and "describe is broken" in log.read_text()


def test_verbose_shows_the_traceback_on_the_terminal_too(backend_runs):
    result = get(backend_runs, "internal-v")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: internal error: TypeError: describe is broken")
