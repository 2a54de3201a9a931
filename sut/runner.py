"""Running LoadGen tests with a guarantee that they end.

``run_test`` runs one LoadGen test (one scenario, one mode) on prepared
parts. LoadGen's ``StartTest`` runs on its own thread while this one waits,
polling every 50 ms: it shows the progress line (``sut/progress.py``),
asks the :class:`~sut.completion.Watchdog` whether a backend call has hung
(each call is timed on its own: a slow device that keeps answering is never
failed) and looks for a stop request (``sut/signals.py``: Ctrl-C, SIGTERM).
After a failure or a stop every sample is completed empty so LoadGen can
finish. If LoadGen still has not returned ``FAILURE_GRACE_S`` seconds later
(e.g. a backend stuck on LoadGen's own thread, or a Server schedule that
runs on), the test is reported as hung and the CLI exits the process: it
never waits forever.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import mlperf_loadgen as lg

from backends.base import Backend, ModelInfo
from datasets.base import Accuracy, Dataset
from datasets.cache import SampleStore
from profiles import Config
from sut import accuracy as accuracy_mod
from sut import logs, progress, signals
from sut import settings as settings_mod
from sut.completion import Calls, Completer, Watchdog
from sut.errors import BackendFailure, HarnessError, Interrupted
from sut.qsl import QuerySampleLibrary
from sut.scenarios import SUTS, Predictor, each_chunk

log = logging.getLogger(__name__)

FAILURE_GRACE_S = 5.0
#: the wait loop's poll interval (progress, watchdog, stop requests)
POLL_S = 0.05
#: what LoadGen and the harness spend per sample beyond the timed warm-up call
#: (completion, queueing: ~0.5 us on a small CPU, partly on other cores; see
#: benchmarks/harness_overhead), added to the warm-up figure so that a
#: near-free backend is not expected to run impossibly fast
HARNESS_S_PER_SAMPLE = 0.5e-6
#: warm-up times the Predictor on about this much work per call, at most this many samples
WARM_UP_ITEM_S = 0.005
WARM_UP_MAX_ITEM = 64


@dataclasses.dataclass
class TestResult:
    scenario: str
    mode: str
    directory: Path
    validity: str | None = None          # VALID / INVALID (performance)
    metric: tuple[str, str] | None = None
    reasons: list[str] = dataclasses.field(default_factory=list)
    accuracy: Accuracy | None = None
    error: str | None = None
    hung: bool = False
    interrupted: int | None = None       # the signal that stopped the test (SIGINT 2, SIGTERM 15)
    detail: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


def warm_up(backend: Backend, info: ModelInfo, dataset: Dataset, store: SampleStore, samples_per_query: int,
            timeout_s: float, min_time_s: float = 0.3) -> settings_mod.Estimate:
    """Run the model a few times (catching a broken or hung backend before
    LoadGen starts) and measure its speed, the harness's per-call work included.

    ``timeout_s`` (``--sample-timeout``) bounds each backend call, as in a
    test, not the whole warm-up: a slow device is measured, a hung one fails.
    A stop request (Ctrl-C) raises :class:`~sut.errors.Interrupted`.
    """
    result: dict[str, Any] = {}
    calls = Calls(info.instances)

    def measure():
        try:
            first = QuerySampleLibrary(store, 1)
            first.load([0])
            single = Predictor(backend, info, dataset, first, calls)
            times = _time_calls(lambda: single([0]), min_time_s)
            latency = statistics.median(times)
            # throughput the way Offline gets it: the harness's own Predictor on a
            # queue item's worth of samples (a few ms of work, whole model batches)
            k = _item_samples(latency, info.max_batch_size, len(store))
            qsl = QuerySampleLibrary(store, k)
            qsl.load(list(range(k)))
            predictor = Predictor(backend, info, dataset, qsl, calls, each_chunk(latency, timeout_s))
            indices = list(range(k))
            # the fastest call: noise only ever adds time, and expecting too little
            # makes LoadGen end an Offline run before its minimum duration
            item_times = _time_calls(lambda: predictor(indices), min_time_s, max_calls=max(5, 24 // k))
            per_sample = min(item_times) / k + HARNESS_S_PER_SAMPLE
            typical = statistics.median(item_times) / k + HARNESS_S_PER_SAMPLE
            result["estimate"] = settings_mod.Estimate(
                latency_s=latency,
                # what a MultiStream query usually takes (LoadGen expects half of it)
                query_latency_s=typical * samples_per_query / max(1, min(info.instances, samples_per_query)),
                samples_per_s=info.instances / per_sample,
                typical_samples_per_s=info.instances / typical,
            )
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=measure, name="warm-up", daemon=True)
    watchdog = Watchdog(None, timeout_s, calls)
    thread.start()
    while True:
        thread.join(POLL_S)
        signum = signals.requested()
        if signum is not None:
            raise Interrupted(signum)
        if not thread.is_alive():
            break
        error = watchdog.check(time.monotonic(), busy=True)
        if error is not None:
            raise BackendFailure(f"{error} during warm-up")
    if "error" in result:
        exc = result["error"]
        if isinstance(exc, BackendFailure):
            raise exc
        raise BackendFailure(f"backend failed during warm-up: {type(exc).__name__}: {exc}") from exc
    log.info("warm-up: %s", result["estimate"])
    return result["estimate"]


def _item_samples(latency_s: float, max_batch: int, available: int) -> int:
    """Samples for one timed warm-up call: about ``WARM_UP_ITEM_S`` of work, in
    whole model batches, at most ``WARM_UP_MAX_ITEM``."""
    k = min(available, WARM_UP_MAX_ITEM, max(1, int(WARM_UP_ITEM_S / max(latency_s, 1e-9))))
    batch = min(max_batch, available)
    return max(batch, k // batch * batch)


def _time_calls(fn, min_time_s: float, min_calls: int = 3, max_calls: int = 50) -> list[float]:
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() - start < min_time_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def run_test(cfg: Config, mode: str, backend: Backend, info: ModelInfo, dataset: Dataset,
             store: SampleStore, estimate: settings_mod.Estimate | None, outdir: Path) -> TestResult:
    """Run one LoadGen test and read back what it logged."""
    result = TestResult(cfg.scenario, mode, outdir)
    notes: list[str] = []
    test_settings = settings_mod.build(cfg, mode, estimate, notes)
    # LoadGen would "load" more samples than exist (repeating them) when the
    # performance sample count exceeds the dataset: report the honest number.
    perf_count = min(test_settings.performance_sample_count_override or len(store), len(store))
    test_settings.performance_sample_count_override = perf_count
    qsl = QuerySampleLibrary(store, perf_count)
    completer = Completer()
    calls = Calls(info.instances)
    predictor = Predictor(backend, info, dataset, qsl, calls,
                          each_chunk(estimate.latency_s if estimate else None, cfg.sample_timeout_s))
    sut_cls = SUTS[cfg.scenario]
    sut = sut_cls(predictor, completer, info.instances, info.max_batch_size,
                  batch_timeout_s=cfg.server_batch_timeout_ms / 1000)

    def guarded(fn):
        def call(indices):
            try:
                fn(indices)
            except BaseException as exc:  # an exception inside LoadGen's callback breaks LoadGen
                completer.fail(BackendFailure(f"loading samples failed: {exc}"))
        return call

    lg_sut = lg.ConstructFastSUT(sut.issue, sut.flush)
    lg_qsl = lg.ConstructQSL(len(store), perf_count, guarded(qsl.load), guarded(qsl.unload))
    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(outdir)
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = cfg.trace
    # an audit.config path of our own (absent) so a stray one in the working
    # directory cannot silently change the run
    audit = cfg.audit_conf or str(outdir / "audit.config")  # --audit-conf: a compliance test

    plan = settings_mod.plan(cfg.scenario, mode, test_settings, estimate, perf_count)
    bar = progress.LoadGenProgress(cfg.scenario, mode, plan, progress.Line(enabled=cfg.progress))
    watchdog = Watchdog(completer, cfg.sample_timeout_s, calls)
    thread = threading.Thread(
        target=lg.StartTestWithLogSettings, args=(lg_sut, lg_qsl, test_settings, log_settings, audit),
        name="loadgen", daemon=True)
    state = "failed"
    try:
        thread.start()
        failed_at = None
        while thread.is_alive():
            thread.join(POLL_S)
            now = time.monotonic()
            if not completer.failed.is_set():
                signum = signals.requested()
                if signum is not None:
                    result.interrupted = signum
                    completer.fail(Interrupted(signum))
                else:
                    error = watchdog.check(now)
                    if error is not None:
                        completer.fail(error)
            if completer.failed.is_set():
                failed_at = failed_at or now
                if now - failed_at > FAILURE_GRACE_S:
                    result.hung = True
                    break
            else:
                bar.update(now, completer.completed_samples)
        state = ("interrupted" if result.interrupted is not None else
                 "failed" if completer.error is not None else "done")
    finally:
        bar.finish(time.monotonic(), completer.completed_samples, state)
    if completer.error is not None:
        result.error = _one_line(completer.error)
    if result.hung:
        result.error = (result.error or "run failed") + "; LoadGen did not finish, process must exit"
        return result  # LoadGen still runs on its thread: nothing may be destroyed
    sut.close()
    lg.DestroyQSL(lg_qsl)
    lg.DestroySUT(lg_sut)

    return read_back(result, cfg, dataset, len(store), outdir, notes)


def read_back(result: TestResult, cfg: Config, dataset: Dataset, count: int, outdir: Path,
              notes: list[str] = ()) -> TestResult:
    """Fill ``result`` from what the finished LoadGen test logged in ``outdir``:
    the detail log, then the verdict, metric and reasons (performance) or the
    accuracy of ``count`` samples, also written as accuracy.txt (accuracy).
    Shared by local runs and ``run.py --nodes``."""
    result.detail.update(logs.read_detail(outdir / "mlperf_log_detail.txt"))
    if result.error:
        return result
    if result.mode == "performance":
        result.validity = result.detail.get("result_validity")
        result.metric = logs.metric(result.detail, cfg.scenario)
        if result.validity != "VALID":
            result.reasons = _reasons(result.detail, list(notes))
    else:
        try:
            result.accuracy = accuracy_mod.score_log(outdir / "mlperf_log_accuracy.json", dataset, count)
            accuracy_mod.write_accuracy_txt(outdir / "accuracy.txt", result.accuracy)
        except BackendFailure as exc:
            result.error = str(exc)
    return result


def _reasons(detail: dict[str, Any], notes: list[str]) -> list[str]:
    """Why the run is INVALID: the harness's own notes first (a quick run cut
    short by design replaces LoadGen's generic early-stopping advice), then
    LoadGen's, then a max duration reached (--time, or a quick run's guard)."""
    reasons = logs.invalid_reasons(detail)
    if notes:
        reasons = notes + [r for r in reasons if not r.startswith(("early stopping", "min query count"))]
    if any("Max test duration reached" in e for e in detail.get("_errors", [])):
        ms = detail.get("effective_max_duration_ms") or detail.get("requested_max_duration_ms")
        bound = f" ({float(ms) / 1000:g} s)" if ms else ""
        reasons.append(f"LoadGen stopped issuing at max_duration{bound}: raise --time, or the device ran "
                       f"slower than its warm-up")
    return reasons


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, HarnessError):  # ours (BackendFailure, Interrupted): already one line for the user
        return text
    return f"backend failed: {type(exc).__name__}: {text}" if text else f"backend failed: {type(exc).__name__}"
