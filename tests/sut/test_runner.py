"""sut.runner in-process with the real LoadGen and the null backend: runs
that pass, runs whose backend raises or stops answering, and warm-up.

Every run is started through :func:`bounded`, so a harness bug that hangs
fails the test instead of the whole session. The hanging backends here wait
on an event the test sets at the end, so no thread outlives its test.
"""

from __future__ import annotations

import io
import re
import signal
import threading
import time

import numpy as np
import pytest

from backends.base import Backend, BackendOptions
from backends.null import NullBackend
from benchmarks.harness_overhead import ArrayDataset, random_store
from datasets.cache import SampleStore
from profiles import Config
from sut import progress, runner, scenarios, settings, signals
from sut.errors import BackendFailure, Interrupted
from tests.sut.faulty_backend import RaisingBackend, WrongCountBackend

SAMPLES = 64
#: bound on any run or wait (generous: the machine is shared); runs take < 1 s
WAIT_S = 60.0
SHAPE = {"input_shape": [4], "input_dtype": "float32", "classes": 10}

#: short settings that LoadGen still calls VALID (early stopping needs 64
#: SingleStream, 662 MultiStream and ~459 Server queries); the Server bound is
#: loose so that a busy machine cannot make a query late
SHORT = {
    "SingleStream": dict(min_duration_ms=0, min_query_count=100),
    "MultiStream": dict(min_duration_ms=0, min_query_count=700),
    "Offline": dict(min_duration_ms=0, min_query_count=1000),  # Offline: samples in its one query
    "Server": dict(min_duration_ms=0, min_query_count=500, target_qps=1000.0, target_latency_ms=500.0),
}
METRIC_NAMES = {"SingleStream": "90th percentile latency", "MultiStream": "99th percentile latency",
                "Offline": "samples per second", "Server": "scheduled samples per second"}


class StuckBackend(NullBackend):
    """Stops answering after ``after`` samples, until ``release`` is set."""

    def __init__(self, options=None, after: int = 0):
        super().__init__(options)
        self.after, self.calls = after, 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def predict_impl(self, batch, instance):
        with self._lock:
            self.calls += 1
            stuck = self.calls > self.after
        if stuck:
            self.release.wait(WAIT_S)
        return super().predict_impl(batch, instance)

    def predict_each(self, samples, instance=0):
        """Every sample through :meth:`predict_impl` (the null backend skips it)."""
        return np.concatenate([self.predict_impl(s, instance) for s in samples])


class SlowBackend(NullBackend):
    """A slow device that works: ``SECONDS`` per sample, batched or one at a time
    (a plugin as ``--backend tests.sut.test_runner:SlowBackend`` would be)."""

    SECONDS = 0.2
    predict_each = Backend.predict_each  # one predict_impl per sample

    def predict_impl(self, batch, instance):
        time.sleep(self.SECONDS * len(batch))
        return super().predict_impl(batch, instance)


class CountingBackend(NullBackend):
    """The null backend, calling ``hook(calls so far)`` on every call."""

    predict_each = Backend.predict_each

    def __init__(self, options=None, hook=None):
        super().__init__(options)
        self.hook, self.calls = hook, 0

    def predict_impl(self, batch, instance):
        self.calls += 1
        if self.hook is not None:
            self.hook(self.calls)
        return super().predict_impl(batch, instance)


def options(max_batch: int = 1, instances: int = 1) -> BackendOptions:
    return BackendOptions(max_batch_size=max_batch, instances=instances, extra=SHAPE)


@pytest.fixture
def stuck():
    """Make StuckBackends; all are released when the test ends."""
    made: list[StuckBackend] = []

    def make(after: int = 0, **kwargs) -> StuckBackend:
        made.append(StuckBackend(options(**kwargs), after))
        return made[-1]

    yield make
    for backend in made:
        backend.release.set()


def bounded(fn, *args, timeout: float = WAIT_S):
    """``fn(*args)`` on a thread; fails the test if it has not returned in ``timeout`` s."""
    outcome: dict = {}

    def call():
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=call, name="bounded", daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} did not return in {timeout} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def run(tmp_path, backend, scenario: str, mode: str = "performance", store=None, estimate=None,
        **values) -> runner.TestResult:
    """One LoadGen test of ``backend`` on SAMPLES random in-memory samples."""
    info = backend.info or backend.load(None)
    store = store or random_store(info.input, SAMPLES)
    cfg = Config(scenario=scenario, **{"progress": False, **SHORT[scenario], **values})
    outdir = tmp_path / f"{scenario}-{mode}"
    outdir.mkdir()
    return bounded(runner.run_test, cfg, mode, backend, info, ArrayDataset(SAMPLES), store, estimate, outdir)


def assert_failed_with(result: runner.TestResult, pattern: str) -> None:
    """A failed run: one line of error matching ``pattern``, no result claimed."""
    assert result.error is not None and not result.ok
    assert "\n" not in result.error
    assert re.search(pattern, result.error), result.error
    assert result.validity is None and result.metric is None and not result.hung


# --- runs that pass -----------------------------------------------------------------

@pytest.mark.parametrize("scenario", list(SHORT))
@pytest.mark.parametrize("max_batch,instances", [(1, 1), (4, 2)])
def test_every_scenario_is_valid_with_short_settings(tmp_path, scenario, max_batch, instances):
    result = run(tmp_path, NullBackend(options(max_batch, instances)), scenario)
    assert result.ok, result.error
    assert result.validity == "VALID", result.reasons
    assert result.reasons == [] and not result.hung
    assert result.metric is not None and result.metric[0] == METRIC_NAMES[scenario]
    assert result.detail["effective_scenario"] == scenario and result.detail["_errors"] == []
    assert "Result is : VALID" in (result.directory / "mlperf_log_summary.txt").read_text()


@pytest.mark.parametrize("scenario", ["SingleStream", "MultiStream", "Offline", "Server"])
def test_accuracy_run_scores_every_sample(tmp_path, scenario):
    """The null backend answers class 0 and every label is 0: all responses must arrive intact."""
    result = run(tmp_path, NullBackend(options(4, 2)), scenario, mode="accuracy")
    assert result.ok, result.error
    assert (result.accuracy.good, result.accuracy.total) == (SAMPLES, SAMPLES)
    assert (result.directory / "accuracy.txt").read_text().startswith("accuracy=100.000%")


def test_quick_run_cut_short_is_invalid_by_design_and_says_so_first(tmp_path):
    """A MultiStream query estimated at 50 ms: 662 queries do not fit the quick
    budget, so the run is cut (~200 queries) and its first reason says why."""
    slow_queries = settings.Estimate(latency_s=0.006, query_latency_s=0.05, samples_per_s=160.0)
    result = run(tmp_path, NullBackend(options()), "MultiStream", estimate=slow_queries, quick=True,
                 min_duration_ms=None, min_query_count=None)
    assert result.ok and result.validity == "INVALID"
    cut = int(settings.QUICK_MAX_S / (0.05 + settings.QUICK_LOADGEN_S_PER_QUERY))
    assert result.detail["result_query_count"] == cut
    assert result.reasons[0].startswith(f"quick: INVALID by design: {cut} queries (~10 s), LoadGen's early "
                                        f"stopping needs 662 for a 99th percentile")
    assert not any(r.startswith("early stopping") for r in result.reasons)  # LoadGen's generic advice replaced


def test_quick_run_on_a_fast_device_is_valid_with_no_note(tmp_path):
    fast = settings.Estimate(latency_s=1e-4, query_latency_s=8e-4, samples_per_s=10_000.0)
    result = run(tmp_path, NullBackend(options()), "MultiStream", estimate=fast, quick=True,
                 min_duration_ms=None, min_query_count=None)
    assert result.ok and result.validity == "VALID" and result.reasons == []
    assert result.detail["result_query_count"] >= 662


def test_time_stops_the_run_at_max_duration_and_says_so(tmp_path):
    """--time 0.3 as the reference's: min and max duration; 100000 queries cannot be issued in 0.3 s."""
    backend = SlowBackend(options())
    backend.SECONDS = 0.001
    result = run(tmp_path, backend, "SingleStream", min_duration_ms=300, max_duration_ms=300,
                 min_query_count=100_000)
    assert result.ok and result.validity == "INVALID"
    assert result.detail["result_query_count"] < 100_000
    assert any(r.startswith("LoadGen stopped issuing at max_duration (0.3 s)") for r in result.reasons), result.reasons


# --- runs that fail -----------------------------------------------------------------

@pytest.mark.parametrize("scenario", list(SHORT))
def test_backend_raising_mid_run_gives_one_line_error(tmp_path, monkeypatch, scenario):
    monkeypatch.setenv("FAULT_AFTER", "20")
    result = run(tmp_path, RaisingBackend(options(1, 2)), scenario)
    assert_failed_with(result, r"^backend failed: RuntimeError: injected failure on call \d+$")
    assert result.detail  # LoadGen finished and its log was read


def test_wrong_result_count_mid_run_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("FAULT_AFTER", "5")
    result = run(tmp_path, WrongCountBackend(options(4, 1)), "Offline")
    assert_failed_with(result, r"^backend returned 3 results for a batch of 4 samples$")


class FailingStore(SampleStore):
    """A sample store whose reads fail (a cache file gone bad)."""

    def rows(self, indices):
        raise OSError("disk went away")


def test_failing_sample_load_gives_one_line_error(tmp_path):
    backend = NullBackend(options())
    info = backend.load(None)
    store = FailingStore(random_store(info.input, SAMPLES).data)
    result = run(tmp_path, backend, "SingleStream", store=store)
    assert_failed_with(result, r"^loading samples failed: disk went away$")


@pytest.mark.parametrize("scenario,instances", [("Offline", 1), ("Server", 2), ("MultiStream", 2)])
def test_hanging_backend_is_caught_by_the_watchdog(tmp_path, stuck, scenario, instances):
    result = run(tmp_path, stuck(after=20, instances=instances), scenario, sample_timeout_s=0.5)
    assert_failed_with(result, r"^backend gave no answer for [\d.]+ s: a (batch|predict_each call) of \d+ "
                               r"(samples?|single-sample inferences?) on instance \d has not returned "
                               r"\(sample timeout 0.5 s, per backend call; raise it with --sample-timeout")
    assert result.detail  # every sample was completed empty, so LoadGen finished


def test_slow_device_with_a_big_offline_queue_item_is_not_called_hung(tmp_path, monkeypatch):
    """0.2 s a sample, --sample-timeout 1, one Offline queue item of 8 samples
    (1.6 s): each backend call is timed on its own, so the run is VALID. The
    warm-up (about 1.2 s of calls) is timed per call too."""
    monkeypatch.setattr(scenarios.OfflineSUT, "_item_size", lambda self, n: n)  # one item of every sample
    backend = SlowBackend(options(max_batch=1))
    estimate = warm_up(backend, timeout_s=1.0)
    assert estimate.latency_s >= SlowBackend.SECONDS
    result = run(tmp_path, backend, "Offline", estimate=estimate, sample_timeout_s=1.0, min_query_count=8)
    assert result.ok, result.error
    assert result.validity == "VALID", result.reasons


def test_slow_device_in_batches_is_timed_per_batch(tmp_path, monkeypatch):
    """Batches of 4 at 0.2 s a sample (0.8 s a call) under --sample-timeout 1: VALID;
    a batch of 8 (1.6 s) is one call longer than the timeout: failed, naming it."""
    monkeypatch.setattr(scenarios.OfflineSUT, "_item_size", lambda self, n: n)
    result = run(tmp_path, SlowBackend(options(max_batch=4)), "Offline", sample_timeout_s=1.0, min_query_count=8)
    assert result.ok and result.validity == "VALID", (result.error, result.reasons)
    (tmp_path / "big").mkdir()
    result = run(tmp_path / "big", SlowBackend(options(max_batch=8)), "Offline", sample_timeout_s=1.0,
                 min_query_count=8)
    assert_failed_with(result, r"^backend gave no answer for [\d.]+ s: a batch of 8 samples on instance 0 has "
                               r"not returned \(sample timeout 1 s, per backend call; raise it with "
                               r"--sample-timeout or lower --max-batchsize")


def test_hang_is_reported_after_the_timeout_not_before(tmp_path, stuck):
    """The call named, and how long it had been running: at least the timeout
    (the exact bound is tested on Watchdog.check with made-up times)."""
    result = run(tmp_path, stuck(after=5), "Offline", sample_timeout_s=0.5)
    age = float(re.match(r"backend gave no answer for ([\d.]+) s", result.error).group(1))
    assert age >= 0.5


@pytest.mark.parametrize("scenario", ["SingleStream", "Server"])
def test_backend_stuck_on_loadgens_thread_is_reported_hung(tmp_path, stuck, monkeypatch, scenario):
    """SingleStream, and Server with one instance and no batching, predict on
    LoadGen's own thread: the watchdog fails the run, but LoadGen cannot
    finish; run_test must still return."""
    monkeypatch.setattr(runner, "FAILURE_GRACE_S", 0.5)
    backend = stuck(after=20)
    result = run(tmp_path, backend, scenario, sample_timeout_s=0.5)
    assert result.hung and not result.ok
    assert "no answer for" in result.error and result.error.endswith("LoadGen did not finish, process must exit")
    # let LoadGen finish before the next test uses it
    backend.release.set()
    for thread in threading.enumerate():
        if thread.name == "loadgen":
            thread.join(WAIT_S)
            assert not thread.is_alive()


# --- warm-up ------------------------------------------------------------------------

def warm_up(backend, timeout_s: float = WAIT_S):
    info = backend.info or backend.load(None)
    return runner.warm_up(backend, info, ArrayDataset(SAMPLES), random_store(info.input, SAMPLES),
                          samples_per_query=8, timeout_s=timeout_s, min_time_s=0.05)


def test_warm_up_measures_the_backend():
    estimate = warm_up(NullBackend(options(4, 2)))
    assert estimate.latency_s > 0 and estimate.query_latency_s > 0 and estimate.samples_per_s > 0


def test_warm_up_raising_backend_is_a_backend_failure(monkeypatch):
    monkeypatch.setenv("FAULT_AFTER", "0")
    with pytest.raises(BackendFailure, match="^backend failed during warm-up: RuntimeError: injected failure on call 1$"):
        warm_up(RaisingBackend(options()))


def test_warm_up_hanging_backend_is_a_backend_failure(stuck):
    with pytest.raises(BackendFailure, match=r"^backend gave no answer for [\d.]+ s: a batch of 1 sample on "
                                             r"instance 0 has not returned \(sample timeout 0.3 s, .*during warm-up$"):
        warm_up(stuck(after=2), timeout_s=0.3)


def test_warm_up_of_a_slow_device_is_not_limited_as_a_whole():
    """Every call 0.2 s, the warm-up about 1.2 s: a 0.5 s timeout applies per call."""
    estimate = warm_up(SlowBackend(options()), timeout_s=0.5)
    assert estimate.latency_s >= SlowBackend.SECONDS


# --- stop requests (Ctrl-C, SIGTERM) ------------------------------------------------

@pytest.fixture
def stop_after(monkeypatch):
    """A backend that asks to stop (as sut.signals would record Ctrl-C) after ``calls`` calls."""
    def make(calls: int, signum: int = signal.SIGINT, **kwargs) -> CountingBackend:
        asked = threading.Event()
        monkeypatch.setattr(signals, "requested", lambda: signum if asked.is_set() else None)
        return CountingBackend(options(**kwargs), hook=lambda n: n >= calls and asked.set())
    return make


@pytest.mark.parametrize("scenario", list(SHORT))
def test_stop_request_ends_the_test_cleanly(tmp_path, stop_after, scenario):
    result = run(tmp_path, stop_after(20, instances=2), scenario)
    assert result.interrupted == signal.SIGINT and not result.hung and not result.ok
    assert result.error == "interrupted by SIGINT"
    assert result.validity is None and result.metric is None
    assert result.detail  # every sample was completed empty: LoadGen returned and wrote its logs


def test_sigterm_is_named(tmp_path, stop_after):
    result = run(tmp_path, stop_after(5, signum=signal.SIGTERM), "Offline", mode="accuracy")
    assert (result.interrupted, result.error) == (signal.SIGTERM, "interrupted by SIGTERM")
    assert result.accuracy is None


def test_stop_request_during_warm_up_raises_interrupted(stop_after):
    with pytest.raises(Interrupted) as caught:
        warm_up(stop_after(3))
    assert caught.value.signum == signal.SIGINT and caught.value.exit_code == 130


# --- the progress line ----------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def terminal(monkeypatch):
    """The progress line as on a terminal, written into a string."""
    screen = Terminal()
    made = progress.Line
    monkeypatch.setattr(progress, "Line", lambda enabled=True: made(enabled, tty_stream=screen))
    return screen


@pytest.mark.parametrize("scenario", list(SHORT))
def test_progress_line_ends_with_a_newline_and_the_count(tmp_path, terminal, scenario):
    result = run(tmp_path, NullBackend(options(4, 2)), scenario, progress=True)
    assert result.ok, result.error
    text = terminal.getvalue()
    assert text.startswith("\r" + f"{scenario} performance") and text.endswith("\n")
    assert text.count("\n") == 1 and text.rstrip().endswith(" done")


def test_progress_line_is_ended_before_an_error_is_printed(tmp_path, terminal, monkeypatch):
    monkeypatch.setenv("FAULT_AFTER", "20")
    result = run(tmp_path, RaisingBackend(options(1, 1)), "SingleStream", progress=True)
    assert not result.ok
    text = terminal.getvalue()
    assert text.endswith("\n") and text.rstrip().endswith(" failed")


def test_no_progress_writes_nothing(tmp_path, terminal):
    run(tmp_path, NullBackend(options()), "SingleStream", progress=False)
    assert terminal.getvalue() == ""
