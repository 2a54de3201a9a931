"""Per-query latencies, recorded by the SUT at almost no cost per query.

The :class:`~sut.completion.Completer` already timestamps every piece of work
it registers (``start``) and reads the clock again when it completes it
(``finish``); :meth:`Recorder.add` packs those two times and the number of
samples into one preallocated ``bytearray`` as three C doubles, at the
token's offset (tokens count up from 0 in issue order), with one
``struct.pack_into`` call: no Python object is kept per query. The buffer
grows geometrically (doubling, in place, at C speed) the first time a token
falls beyond it; ``pack_into`` holds the buffer for its whole call, so a
write from another worker thread is never lost to a resize.

A token is one query in SingleStream and Server (and MultiStream with one
model instance); otherwise a part of a query (a queue item of an Offline
query, a MultiStream query split across instances). Times come from
``time.monotonic()``, LoadGen's clock (``std::chrono::steady_clock``) on
Linux; they run from when the SUT registers the work to just before it hands
the responses to ``QuerySamplesComplete``, so they leave out LoadGen's own
scheduling and are a little shorter than the latencies LoadGen reports.

:func:`save` writes them as ``latencies.npy`` next to LoadGen's logs: a
structured array with ``issue_s`` and ``complete_s`` (seconds since the
first issue) and ``samples`` per token, in issue order; work completed empty
after a failure is left out. :func:`load` reads it back.
"""

from __future__ import annotations

import collections
import logging
import struct
import threading
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: one token's record: issue time, completion time, samples (native doubles;
#: ``add`` writes its size, 24, as a literal: the hot path skips a lookup)
ROW = struct.Struct("ddd")
assert ROW.size == 24
#: tokens the buffer holds before it first grows
INITIAL_TOKENS = 4096
FILENAME = "latencies.npy"
DTYPE = np.dtype([("issue_s", "<f8"), ("complete_s", "<f8"), ("samples", "<i4")])

#: the most recent recorders of this process, oldest first (see :func:`recent`)
_RECENT: collections.deque = collections.deque(maxlen=8)


class Recorder:
    """Issue and completion times of every token, packed into one C buffer."""

    __slots__ = ("_buffer", "_pack", "_grow_lock", "__weakref__")

    def __init__(self, tokens: int = INITIAL_TOKENS):
        self._buffer = bytearray(ROW.size * max(1, tokens))
        self._pack = ROW.pack_into
        self._grow_lock = threading.Lock()
        _RECENT.append(self)

    def add(self, token: int, start: float, end: float, samples: int) -> None:
        """Record ``token``'s times: one C call (the hot path, once per token)."""
        try:
            self._pack(self._buffer, token * 24, start, end, samples)
        except struct.error:  # beyond the buffer
            self._grow(token)
            self._pack(self._buffer, token * 24, start, end, samples)

    def _grow(self, token: int) -> None:
        with self._grow_lock:  # two threads may pass the end at once
            size = len(self._buffer)
            needed = ROW.size * (token + 1)
            if needed > size:
                self._buffer.extend(bytes(max(size, needed - size)))  # at least doubles, in place

    def __len__(self) -> int:
        return int(np.count_nonzero(self._raw()[:, 2]))

    def _raw(self) -> np.ndarray:
        return np.frombuffer(self._buffer, dtype=np.float64).reshape(-1, 3).copy()

    def table(self) -> np.ndarray:
        """The recorded tokens in issue order, as a :data:`DTYPE` array with
        times in seconds since the first issue."""
        raw = self._raw()
        raw = raw[raw[:, 2] > 0]
        out = np.empty(len(raw), dtype=DTYPE)
        origin = raw[:, 0].min() if len(raw) else 0.0
        out["issue_s"] = raw[:, 0] - origin
        out["complete_s"] = raw[:, 1] - origin
        out["samples"] = raw[:, 2]
        return out


def recent(count: int) -> list[Recorder]:
    """The last ``count`` recorders created in this process, oldest first
    (one per LoadGen test: ``sut.runner.run_test`` makes one Completer each)."""
    if count <= 0:
        return []
    return list(_RECENT)[-count:]


def save(recorder: Recorder | np.ndarray, directory: Path) -> Path:
    """Write ``latencies.npy`` into ``directory``; returns its path."""
    table = recorder.table() if isinstance(recorder, Recorder) else recorder
    path = Path(directory) / FILENAME
    np.save(path, table, allow_pickle=False)
    return path


def load(directory_or_file: Path) -> np.ndarray | None:
    """The table :func:`save` wrote (a directory or the file), or None when absent."""
    path = Path(directory_or_file)
    if path.is_dir():
        path = path / FILENAME
    if not path.is_file():
        return None
    table = np.load(path, allow_pickle=False)
    if table.dtype.names is None or not set(DTYPE.names) <= set(table.dtype.names):
        log.warning("%s is not a latency table (fields %s)", path, table.dtype.names)
        return None
    return table


def latencies_s(table: np.ndarray) -> np.ndarray:
    """Latency of each token in seconds."""
    return table["complete_s"] - table["issue_s"]


def expected_samples(detail: dict, scenario: str) -> int | None:
    """How many samples LoadGen issued in a performance test, from its detail log."""
    queries = detail.get("result_query_count")
    if scenario == "Offline":
        value = detail.get("generated_samples_per_query")
        return int(value) if value is not None else None
    if queries is None:
        return None
    if scenario == "MultiStream":
        per_query = detail.get("effective_samples_per_query") or detail.get("generated_samples_per_query") or 8
        return int(queries) * int(per_query)
    return int(queries)
