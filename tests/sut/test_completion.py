"""Completer and Watchdog: every sample is completed exactly once, and a
hung backend call (or a stalled run) is failed instead of hanging LoadGen,
while a slow device that keeps answering never is.

``mlperf_loadgen.QuerySamplesComplete`` is the runtime boundary: here it is
replaced by a :class:`Recorder` that copies each response's bytes at call
time (as LoadGen does), so the tests can check what LoadGen would have been
told. Everything above it runs for real.
"""

from __future__ import annotations

import ctypes
import threading
import time

import numpy as np
import pytest

from sut.completion import Calls, Completer, ResponseSlots, Watchdog
from sut.errors import BackendFailure

#: bound on every wait for another thread (generous: the machine is shared)
WAIT_S = 20.0


class Recorder:
    """Stands in for ``lg.QuerySamplesComplete``: records (id, response bytes)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.responses: list[tuple[int, bytes]] = []
        self.calls = 0

    def __call__(self, responses) -> None:
        with self._lock:
            self.calls += 1
            for r in responses:
                data = ctypes.string_at(r.data, r.size) if r.size else b""
                self.responses.append((r.id, data))

    @property
    def ids(self) -> list[int]:
        with self._lock:
            return [i for i, _ in self.responses]

    def by_id(self) -> dict[int, bytes]:
        """id -> response bytes; fails if an id was completed twice."""
        ids = self.ids
        assert len(ids) == len(set(ids)), f"ids completed more than once: {sorted(ids)}"
        with self._lock:
            return dict(self.responses)

    def values(self, dtype=np.float32) -> dict[int, list]:
        """id -> decoded response (empty list for an empty completion)."""
        return {i: np.frombuffer(data, dtype=dtype).tolist() for i, data in self.by_id().items()}

    def wait_for(self, count: int, timeout: float = WAIT_S) -> None:
        """Wait until ``count`` samples were completed (bounded, never a timing assertion)."""
        deadline = time.monotonic() + timeout
        while len(self.ids) < count and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(self.ids) >= count, f"only {len(self.ids)} of {count} samples completed in {timeout} s"


def rows(*values) -> np.ndarray:
    """A (n, 1) float32 response array, one row per sample."""
    return np.array(values, np.float32).reshape(-1, 1)


# --- Completer ------------------------------------------------------------------

def test_finish_completes_each_id_once_with_its_own_row(completions):
    completer = Completer()
    token = completer.start([7, 3, 9])
    completer.finish(token, rows(1.5, 2.5, 3.5))
    assert completions.values() == {7: [1.5], 3: [2.5], 9: [3.5]}
    assert completions.calls == 1  # one LoadGen call per piece of work
    assert completer.completed_samples == 3 and not completer.failed.is_set()


def test_single_sample_response_keeps_all_its_bytes(completions):
    completer = Completer()
    token = completer.start([4])
    completer.finish(token, np.array([[1.0, 2.0, 3.0]], np.float32))
    assert completions.values() == {4: [1.0, 2.0, 3.0]}


def test_rows_of_a_slice_are_addressed_by_stride(completions):
    """Workers finish slices of one response array: row k must be row k of the slice."""
    completer = Completer()
    responses = np.arange(12, dtype=np.float32).reshape(6, 2)
    token = completer.start([1, 2])
    completer.finish(token, responses[3:5])
    assert completions.values() == {1: [6.0, 7.0], 2: [8.0, 9.0]}


def test_tokens_are_distinct_and_finish_in_any_order(completions):
    completer = Completer()
    first, second = completer.start([1]), completer.start([2])
    assert first != second
    completer.finish(second, rows(20))
    completer.finish(first, rows(10))
    assert completions.values() == {1: [10.0], 2: [20.0]}


def test_finish_after_fail_is_a_no_op(completions):
    completer = Completer()
    token = completer.start([1, 2])
    completer.fail(RuntimeError("boom"))
    assert completions.values() == {1: [], 2: []}  # completed empty by the failure
    completer.finish(token, rows(1, 2))
    assert completions.values() == {1: [], 2: []}  # and never again
    assert completer.completed_samples == 0


def test_finish_twice_completes_once(completions):
    completer = Completer()
    token = completer.start([5])
    completer.finish(token, rows(1))
    completer.finish(token, rows(2))
    assert completions.values() == {5: [1.0]}


def test_discard_completes_empty_once(completions):
    completer = Completer()
    kept, skipped = completer.start([1]), completer.start([2, 3])
    completer.discard(skipped)
    completer.discard(skipped)
    completer.finish(skipped, rows(9, 9))
    completer.finish(kept, rows(4))
    assert completions.values() == {1: [4.0], 2: [], 3: []}
    assert not completer.failed.is_set()  # discarding is not a failure


def test_start_after_failure_completes_empty_and_returns_none(completions):
    completer = Completer()
    completer.fail(RuntimeError("boom"))
    assert completer.start([8, 9]) is None
    assert completions.values() == {8: [], 9: []}


def test_fail_completes_everything_outstanding_and_keeps_the_first_error(completions):
    completer = Completer()
    done = completer.start([1])
    completer.finish(done, rows(1))
    completer.start([2])
    completer.start([3, 4])
    first = RuntimeError("first")
    completer.fail(first)
    completer.fail(RuntimeError("second"))
    assert completer.error is first and completer.failed.is_set()
    assert completions.values() == {1: [1.0], 2: [], 3: [], 4: []}


def test_wrong_response_count_fails_the_run_and_completes_empty(completions):
    completer = Completer()
    token = completer.start([1, 2, 3])
    other = completer.start([4])
    completer.finish(token, rows(1, 2))
    assert isinstance(completer.error, BackendFailure)
    assert str(completer.error) == "backend returned 2 results for 3 samples"
    assert completions.values() == {1: [], 2: [], 3: [], 4: []}  # the other work too
    completer.finish(other, rows(4))
    assert completions.values()[4] == []


def test_concurrent_finish_and_fail_complete_each_id_exactly_once(completions):
    """Workers finishing while the watchdog fails the run: no id twice, none lost."""
    completer = Completer()
    tokens = [(completer.start([i]), i) for i in range(2000)]
    barrier = threading.Barrier(3, timeout=WAIT_S)

    def finish_half(half):
        barrier.wait()
        for token, i in half:
            completer.finish(token, rows(i))

    threads = [threading.Thread(target=finish_half, args=(tokens[k::2],)) for k in range(2)]
    for t in threads:
        t.start()
    barrier.wait()
    completer.fail(RuntimeError("watchdog"))
    for t in threads:
        t.join(WAIT_S)
    values = completions.values()  # asserts no duplicates
    assert sorted(values) == list(range(2000))
    assert all(v in ([], [float(i)]) for i, v in values.items())


def test_concurrent_start_complete_and_fail_complete_each_id_exactly_once(completions):
    """Threads registering and completing new work while the run fails: the
    lock-free start either returns a token whose work completes once, or
    completes the ids empty itself; none is lost, none completed twice."""
    completer = Completer()
    barrier = threading.Barrier(3, timeout=WAIT_S)

    def issue(ids):
        slots = ResponseSlots()
        barrier.wait()
        for i in ids:
            token = completer.start([i])
            if token is not None:
                slots.buffer(1, 1)[0, 0] = i
                completer.complete(token, slots.objects([i]))

    threads = [threading.Thread(target=issue, args=(range(k, 4000, 2),)) for k in range(2)]
    for t in threads:
        t.start()
    barrier.wait()
    time.sleep(0.001)
    completer.fail(RuntimeError("watchdog"))
    for t in threads:
        t.join(WAIT_S)
    values = completions.values()  # asserts no duplicates
    assert sorted(values) == list(range(4000))
    assert all(v in ([], [float(i)]) for i, v in values.items())
    assert completer.outstanding() == 0


# --- ResponseSlots --------------------------------------------------------------------

def test_slots_objects_point_at_the_buffer_rows_in_id_order(completions):
    slots = ResponseSlots()
    out = slots.buffer(3, 2)
    out[:3] = [[1, 2], [3, 4], [5, 6]]
    completer = Completer()
    completer.complete(completer.start([7, 8, 9]), slots.objects([7, 8, 9]))
    assert completions.values() == {7: [1.0, 2.0], 8: [3.0, 4.0], 9: [5.0, 6.0]}


def test_slots_are_reused_and_every_completion_keeps_its_own_values(completions):
    slots, completer = ResponseSlots(), Completer()
    out = slots.buffer(1, 1)
    for i in range(5):
        assert slots.buffer(1, 1) is out  # made once
        out[0, 0] = 10 * i
        completer.complete(completer.start([i]), slots.objects([i]))
    assert completions.values() == {i: [10.0 * i] for i in range(5)}


@pytest.mark.parametrize("first,then", [((1, 1), (4, 1)), ((4, 1), (2, 3)), ((2, 3), (1, 1))])
def test_slots_grow_or_change_width_when_asked(first, then):
    slots = ResponseSlots(*first)
    out = slots.buffer(*then)
    assert out.shape[0] >= then[0] and out.shape[1] == then[1] and out.dtype == np.float32
    objects = slots.objects(list(range(then[0])))
    assert [o.size for o in objects] == [4 * then[1]] * then[0]
    assert [o.data for o in objects] == [out.ctypes.data + k * 4 * then[1] for k in range(then[0])]


# --- Watchdog.check: the logic, driven by hand with made-up times ---------------------

TIMEOUT = 10.0


def watched(instances: int = 1):
    completer, calls = Completer(), Calls(instances)
    return completer, calls, Watchdog(completer, TIMEOUT, calls)


def run_call(calls: Calls, instance: int = 0, n: int = 1) -> None:
    """What the Predictor does around one backend call, all at once."""
    calls.running[instance] = n
    calls.running[instance] = 0
    calls.done[instance] += 1


def test_idle_run_is_never_stalled(completions):
    completer, calls, watchdog = watched()
    assert watchdog.check(1000.0) is None
    assert watchdog.check(5000.0) is None  # no work outstanding, no call running


def test_a_call_running_longer_than_the_timeout_is_named(completions):
    completer, calls, watchdog = watched(instances=2)
    completer.start([1, 2, 3, 4])
    calls.running[1] = 4
    assert watchdog.check(100.0) is None  # first seen: its age counts from here
    assert watchdog.check(110.0) is None  # exactly the timeout: not yet
    error = watchdog.check(110.5)
    assert isinstance(error, BackendFailure)
    assert str(error).startswith("backend gave no answer for 10.5 s: a batch of 4 samples on instance 1 "
                                 "has not returned (sample timeout 10 s, per backend call;")
    assert "--sample-timeout or lower --max-batchsize" in str(error)


def test_a_predict_each_call_is_named_as_single_sample_inferences(completions):
    completer, calls, watchdog = watched()
    completer.start([1, 2, 3])
    calls.running[0] = -3
    watchdog.check(0.0)
    assert "a predict_each call of 3 single-sample inferences on instance 0" in str(watchdog.check(11.0))


def test_a_slow_device_that_keeps_finishing_calls_is_never_failed(completions):
    """An Offline queue item of 261 samples at 0.25 s each: 65 s without a
    completed item, but a call finishes every 0.25 s."""
    completer, calls, watchdog = watched()
    completer.start(list(range(261)))
    now = 0.0
    for _ in range(261):
        calls.running[0] = 1
        assert watchdog.check(now) is None
        now += 0.25
        run_call(calls)
    assert now > 6 * TIMEOUT
    assert watchdog.check(now) is None


def test_each_call_gets_the_whole_timeout_even_back_to_back(completions):
    """Calls of 9 s each, seen mid-call: never 10 s for any one of them."""
    completer, calls, watchdog = watched()
    completer.start([1])
    now = 0.0
    for _ in range(5):
        calls.running[0] = 1
        for _ in range(9):
            assert watchdog.check(now) is None
            now += 1.0
        run_call(calls)


def test_the_same_batch_size_again_is_a_new_call(completions):
    completer, calls, watchdog = watched()
    completer.start([1])
    calls.running[0] = 1
    watchdog.check(0.0)
    calls.done[0] += 1  # that call ended and another of the same size started
    assert watchdog.check(9.0) is None
    assert watchdog.check(18.0) is None
    assert watchdog.check(19.5) is not None


def test_work_waiting_with_no_call_running_and_no_completion_is_stalled(completions):
    """A worker thread gone: samples registered, nothing runs, nothing completes."""
    completer, calls, watchdog = watched()
    completer.start([1, 2])
    assert watchdog.check(0.0) is None
    assert watchdog.check(10.0) is None
    error = watchdog.check(10.5)
    assert str(error).startswith("backend gave no answer for 10.5 s: 2 samples waiting and no backend call "
                                 "running (sample timeout 10 s;")


def test_completions_are_progress(completions):
    completer, calls, watchdog = watched()
    completer.start([0])  # stays outstanding
    now = 0.0
    for i in range(1, 6):
        now += 8.0
        token = completer.start([i])
        completer.finish(token, rows(i))
        assert watchdog.check(now) is None
    assert watchdog.check(now + 10.5) is not None


def test_without_calls_only_the_stall_is_watched(completions):
    """sut/network drives the completer without a Predictor."""
    completer = Completer()
    watchdog = Watchdog(completer, TIMEOUT)
    completer.start([1])
    watchdog.check(0.0)
    assert "no answer for 11 s: 1 sample waiting" in str(watchdog.check(11.0))


def test_warm_up_style_check_without_a_completer(completions):
    calls = Calls(1)
    watchdog = Watchdog(None, TIMEOUT, calls)
    assert watchdog.check(0.0, busy=True) is None
    calls.running[0] = 1
    assert watchdog.check(1.0, busy=True) is None
    assert "a batch of 1 sample on instance 0" in str(watchdog.check(11.5, busy=True))


# --- Watchdog as a thread ---------------------------------------------------------

def test_watchdog_thread_fails_a_stalled_run_naming_sample_timeout(completions):
    completer = Completer()
    completer.start([1, 2])
    with Watchdog(completer, timeout_s=0.2):
        assert completer.failed.wait(WAIT_S), "the watchdog never failed the stalled run"
    assert isinstance(completer.error, BackendFailure)
    message = str(completer.error)
    assert message.startswith("backend gave no answer for ")
    assert "sample timeout 0.2 s" in message and "--sample-timeout" in message
    assert completions.values() == {1: [], 2: []}
    assert completer.start([3]) is None  # later queries are completed at once


def test_watchdog_thread_stops_on_exit(completions):
    completer = Completer()
    with Watchdog(completer, timeout_s=0.05) as watchdog:
        pass
    assert not watchdog._thread.is_alive()
    assert not completer.failed.is_set()
