"""Completing LoadGen samples exactly once, and never leaving one open.

LoadGen waits forever for a sample nobody completes, and completing one twice
is undefined behaviour (``../shared/docs/loadgen.md``, traps 1 and 4). Every
piece of work the SUT starts is registered here under a token; the first of
(the worker's answer, a failure) completes it and the other finds it gone.
After a failure every later query is completed at once with empty responses
so LoadGen can finish, and the run is reported as failed.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time

import mlperf_loadgen as lg
import numpy as np

from datasets.base import RESPONSE_DTYPE
from sut.errors import BackendFailure

log = logging.getLogger(__name__)


class Completer:
    """Registers work under tokens and completes each piece exactly once.

    The hot path (:meth:`start`, :meth:`finish`, :meth:`complete`) takes no
    lock: every claim on a piece of work is one atomic ``dict.pop`` (or
    ``popitem``), so of the worker completing it and :meth:`fail` completing
    everything empty exactly one wins. :meth:`start` registers first and
    checks for a failure after, taking its own work back when one came in
    between (a :meth:`fail` that drained the table before the work was in it).
    """

    def __init__(self):
        self._lock = threading.Lock()  # fail() only: one error is kept
        self._outstanding: dict[int, tuple[list[int], float]] = {}
        self._tokens = itertools.count()
        self._failed = False  # failed.is_set(), as a plain attribute for the hot path
        self.failed = threading.Event()
        self.error: BaseException | None = None
        #: samples completed with an answer (read by the progress line and the watchdog)
        self.completed_samples = 0
        from sut.latencies import Recorder
        self.latencies = Recorder()  # per-token issue/completion times (sut/latencies.py)

    def start(self, ids: list[int]) -> int | None:
        """Register work for ``ids``; returns its token, or None after a failure
        (the ids are then already completed empty)."""
        if not self._failed:
            token = next(self._tokens)
            table = self._outstanding
            table[token] = (ids, time.monotonic())
            if not self._failed:
                return token
            if table.pop(token, None) is None:
                return None  # a failure came in between, and fail() took it: it completes it
        _complete_empty(ids)
        return None

    def complete(self, token: int, responses: list) -> None:
        """Complete the ids of ``token`` with ``responses``, LoadGen response
        objects in the order of the ids (:meth:`ResponseSlots.objects`)."""
        entry = self._outstanding.pop(token, None)
        if entry is None:
            return  # already completed empty after a failure
        now = time.monotonic()
        lg.QuerySamplesComplete(responses)
        self.latencies.add(token, entry[1], now, len(responses))
        self.completed_samples += len(responses)

    def finish(self, token: int, responses: np.ndarray) -> None:
        """Complete the ids of ``token`` with one row of ``responses`` each
        (an array the caller keeps alive until this returns)."""
        entry = self._outstanding.pop(token, None)
        if entry is None:
            return  # already completed empty after a failure
        now = time.monotonic()
        ids = entry[0]
        if len(responses) != len(ids):
            self.fail(BackendFailure(f"backend returned {len(responses)} results for {len(ids)} samples"))
            _complete_empty(ids)
            return
        row_bytes = responses.strides[0] if len(responses) > 1 else responses.nbytes
        base = responses.ctypes.data
        # ``responses`` stays referenced until QuerySamplesComplete has copied it
        lg.QuerySamplesComplete(
            [lg.QuerySampleResponse(i, base + k * row_bytes, row_bytes) for k, i in enumerate(ids)]
        )
        self.latencies.add(token, entry[1], now, len(ids))
        self.completed_samples += len(ids)

    def discard(self, token: int) -> None:
        """Complete the ids of ``token`` empty (work skipped after a failure)."""
        entry = self._outstanding.pop(token, None)
        if entry is not None:
            _complete_empty(entry[0])

    def reject(self, ids: list[int]) -> None:
        """Complete ``ids`` empty: samples LoadGen issued that were never
        registered (the SUT failed before it could queue them)."""
        _complete_empty(ids)

    def fail(self, error: BaseException) -> None:
        """Record the first error and complete everything outstanding, empty."""
        with self._lock:
            if self.error is None:
                self.error = error
                log.debug("run failed: %s", error)  # the CLI reports it: one error line
            self._failed = True
            self.failed.set()
            pending, self._outstanding = self._outstanding, {}
        while True:
            try:  # one claim at a time: a worker may be popping its own token meanwhile
                _, (ids, _) = pending.popitem()
            except KeyError:
                break
            _complete_empty(ids)

    def outstanding(self) -> int:
        """Pieces of work registered and not yet completed."""
        return len(self._outstanding)

    def outstanding_samples(self) -> int:
        """Samples registered and not yet completed (for messages: walks every piece)."""
        return sum(len(entry[0]) for entry in list(self._outstanding.values()))


class ResponseSlots:
    """Response rows and the LoadGen response objects pointing at them, made
    once and reused for every query one thread completes.

    Building a ``QuerySampleResponse`` and reading an array's address
    (``ndarray.ctypes.data``) cost about 5,000 and 11,000 instructions; here
    both happen when the slots are made or grow, and a query only sets the
    ids (:meth:`objects`). ``QuerySamplesComplete`` copies what it needs
    before it returns, so the next query may overwrite the rows. One owner
    thread per instance: the issuing thread of an inline SUT, or one worker.
    """

    __slots__ = ("rows", "width", "out", "_objects", "_one")

    def __init__(self, rows: int = 1, width: int = 1):
        self.rows, self.width = 0, 0
        self._make(max(1, rows), max(1, width))

    def _make(self, rows: int, width: int) -> None:
        self.out = np.zeros((rows, width), RESPONSE_DTYPE)
        row_bytes = width * self.out.itemsize
        base = self.out.ctypes.data
        self._objects = [lg.QuerySampleResponse(0, base + k * row_bytes, row_bytes) for k in range(rows)]
        self._one = self._objects[:1]
        self.rows, self.width = rows, width

    def buffer(self, n: int, width: int) -> np.ndarray:
        """The response array (at least ``n`` rows of ``width``); writes to its
        first ``n`` rows are what :meth:`objects` hands to LoadGen."""
        if n > self.rows or width != self.width:
            self._make(max(n, self.rows if width == self.width else 1), width)
        return self.out

    def objects(self, ids: list[int]) -> list:
        """Response objects for ``ids``, in order, pointing at the buffer's first rows."""
        if len(ids) == 1:
            self._one[0].id = ids[0]
            return self._one
        objects = self._objects[:len(ids)]
        for obj, i in zip(objects, ids):
            obj.id = i
        return objects


def _complete_empty(ids: list[int]) -> None:
    lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])


class Calls:
    """The backend calls in flight, per model instance.

    Written by :class:`~sut.scenarios.Predictor` around every backend call --
    ``running[i] = n`` before (``n`` samples in one batch; ``-n`` for ``n``
    single-sample inferences in one ``predict_each`` call), ``running[i] = 0``
    and ``done[i] += 1`` after: three list stores, no clock, no lock -- and
    read by the :class:`Watchdog`. Each instance is used by one thread at a time.
    """

    __slots__ = ("running", "done")

    def __init__(self, instances: int = 1):
        self.running = [0] * max(1, instances)
        self.done = [0] * max(1, instances)


class Watchdog:
    """Tells a hung backend from a slow one.

    A run fails when one backend call (one model batch, or one
    ``predict_each`` chunk, sized to a fraction of the timeout) has not
    returned for ``timeout_s``, or when work waits with no backend call
    running and nothing completes for ``timeout_s`` (a harness thread gone).
    A slow device that keeps finishing calls is never failed, however long a
    queue item or the whole run takes.

    :meth:`check` holds the logic and reads no clock of its own, so it can be
    driven by any loop (the runner's wait loop, the warm-up) or by tests; used
    as a context manager it runs on its own thread and fails ``completer``.
    A call's age is counted from the first check that sees it, so it is late
    by at most one check interval.
    """

    def __init__(self, completer: Completer | None, timeout_s: float, calls: Calls | None = None):
        self.completer = completer
        self.timeout_s = timeout_s
        self.calls = calls
        n = len(calls.running) if calls is not None else 0
        self._seen_done = [-1] * n
        self._seen_running = [0] * n
        self._since = [0.0] * n
        self._progress: tuple | None = None
        self._progress_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)

    # --- the logic -----------------------------------------------------------------
    def check(self, now: float, busy: bool | None = None) -> BackendFailure | None:
        """The failure to report at time ``now`` (seconds, monotonic), or None.

        ``busy``: whether work is waiting for the backend; default: the
        completer has outstanding work (without a completer: never stalled,
        only calls are timed).
        """
        calls = self.calls
        if calls is not None:
            oldest = None
            for i, n in enumerate(list(calls.running)):
                done = calls.done[i]
                if n and done == self._seen_done[i] and n == self._seen_running[i]:
                    age = now - self._since[i]
                    if oldest is None or age > oldest[0]:
                        oldest = (age, i, n)
                else:
                    self._seen_done[i], self._seen_running[i], self._since[i] = done, n, now
            if oldest is not None and oldest[0] > self.timeout_s:
                return self._call_error(*oldest)
            if any(calls.running):
                self._progress = None  # a running call is timed by itself
                return None
        completer = self.completer
        if busy is None:
            busy = completer is not None and completer.outstanding() > 0
        progress = (completer.completed_samples if completer is not None else 0,
                    sum(calls.done) if calls is not None else 0)
        if not busy or progress != self._progress:
            self._progress, self._progress_at = (progress if busy else None), now
            return None
        age = now - self._progress_at
        if age > self.timeout_s:
            waiting = completer.outstanding_samples() if completer is not None else 0
            what = f"{waiting} sample{'s' if waiting != 1 else ''} waiting" if waiting else "work waiting"
            return BackendFailure(
                f"backend gave no answer for {age:.3g} s: {what} and no backend call running "
                f"(sample timeout {self.timeout_s:g} s; raise it with --sample-timeout if the device is this slow)")
        return None

    def _call_error(self, age: float, instance: int, n: int) -> BackendFailure:
        if n > 0:
            call = f"a batch of {n} sample{'s' if n != 1 else ''}"
            fix = "--sample-timeout" + (" or lower --max-batchsize" if n > 1 else "")
        else:
            call = f"a predict_each call of {-n} single-sample inference{'s' if n != -1 else ''}"
            fix = "--sample-timeout"
        return BackendFailure(
            f"backend gave no answer for {age:.3g} s: {call} on instance {instance} has not returned "
            f"(sample timeout {self.timeout_s:g} s, per backend call; raise it with {fix} if the device is "
            f"this slow)")

    # --- as a thread -------------------------------------------------------------
    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        interval = min(0.25, self.timeout_s / 4)
        while not self._stop.wait(interval):
            if self.completer is None or self.completer.failed.is_set():
                continue
            error = self.check(time.monotonic())
            if error is not None:
                self.completer.fail(error)
