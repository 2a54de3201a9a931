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

from sut.errors import BackendFailure

log = logging.getLogger(__name__)


class Completer:
    def __init__(self):
        self._lock = threading.Lock()
        self._outstanding: dict[int, tuple[list[int], float]] = {}
        self._tokens = itertools.count()
        self.failed = threading.Event()
        self.error: BaseException | None = None
        self.completed_samples = 0
        self._last_progress = time.monotonic()
        from sut.latencies import Recorder
        self.latencies = Recorder()  # per-token issue/completion times (sut/latencies.py)

    def start(self, ids: list[int]) -> int | None:
        """Register work for ``ids``; returns its token, or None after a failure
        (the ids are then already completed empty)."""
        with self._lock:
            if not self.failed.is_set():
                token = next(self._tokens)
                self._outstanding[token] = (ids, time.monotonic())
                return token
        _complete_empty(ids)
        return None

    def finish(self, token: int, responses: np.ndarray) -> None:
        """Complete the ids of ``token`` with one row of ``responses`` each."""
        with self._lock:
            entry = self._outstanding.pop(token, None)
        if entry is None:
            return  # already completed empty after a failure
        now = self._last_progress = time.monotonic()
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
        with self._lock:
            entry = self._outstanding.pop(token, None)
        if entry is not None:
            _complete_empty(entry[0])

    def fail(self, error: BaseException) -> None:
        """Record the first error and complete everything outstanding, empty."""
        with self._lock:
            if self.error is None:
                self.error = error
                log.debug("run failed: %s", error)  # the CLI reports it: one error line
            self.failed.set()
            pending, self._outstanding = self._outstanding, {}
        for ids, _ in pending.values():
            _complete_empty(ids)

    def stalled_for(self) -> float:
        """Seconds without progress while work is outstanding: since the later
        of the oldest outstanding start and the last completion (a long
        Offline queue keeps completing, so it is not stalled)."""
        with self._lock:
            if not self._outstanding:
                return 0.0
            oldest = min(t for _, t in self._outstanding.values())
        return time.monotonic() - max(oldest, self._last_progress)


def _complete_empty(ids: list[int]) -> None:
    lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])


class Watchdog:
    """Fails the run when a sample stays unanswered longer than ``timeout_s``."""

    def __init__(self, completer: Completer, timeout_s: float):
        self.completer = completer
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        interval = min(0.25, self.timeout_s / 4)
        while not self._stop.wait(interval):
            age = self.completer.stalled_for()
            if age > self.timeout_s:
                self.completer.fail(BackendFailure(
                    f"backend gave no answer for {age:.1f} s (sample timeout {self.timeout_s:g} s; "
                    f"raise it with --sample-timeout if the device is this slow)"))
