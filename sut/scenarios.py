"""System-under-test implementations for LoadGen's four scenarios.

All of them share one :class:`Predictor` (QSL rows -> backend -> responses)
and one :class:`~sut.completion.Completer`. The work is done either inline
on LoadGen's issue thread (SingleStream, and MultiStream with one model
instance: lowest latency) or by a :class:`WorkerPool` with one thread per
model instance, fed with batched queue items (Offline, Server, MultiStream
across several instances/devices).
"""

from __future__ import annotations

import bisect
import logging
import queue
import threading
import time

import numpy as np

from backends.base import Backend, ModelInfo
from datasets.base import Dataset
from sut.completion import Calls, Completer, ResponseSlots
from sut.errors import BackendFailure
from sut.qsl import QuerySampleLibrary

log = logging.getLogger(__name__)


class Predictor:
    """Dataset indices -> model responses, splitting into accepted batch sizes.

    Sample rows are looked up once per call; a batch of consecutive rows goes
    to the backend as a view of the QSL's array (no copy); a backend that takes
    one sample at a time gets them as single-row views in ``predict_each``
    calls (:meth:`~backends.base.Backend.predict_each`) of at most
    ``each_chunk`` samples, so that no single call runs for long.

    Every backend call is marked in ``calls`` (:class:`~sut.completion.Calls`),
    which the :class:`~sut.completion.Watchdog` reads to time each call on
    its own: a slow device that keeps answering is never taken for a hung one.
    """

    def __init__(self, backend: Backend, info: ModelInfo, dataset: Dataset, qsl: QuerySampleLibrary,
                 calls: Calls | None = None, each_chunk: int | None = None):
        self.backend, self.info, self.dataset, self.qsl = backend, info, dataset, qsl
        self._one_at_a_time = info.max_batch_size == 1
        self.calls = calls if calls is not None else Calls(info.instances)
        self.each_chunk = max(1, each_chunk) if each_chunk else None
        #: the dataset's postprocessing bound to this model, writing into preallocated responses
        self._writer = dataset.response_writer(info)

    def __call__(self, indices, instance: int = 0) -> np.ndarray:
        """The responses to ``indices`` (dataset indices), one row each, as a new array."""
        outputs = self._predict_one(indices[0], instance) if len(indices) == 1 else self._outputs(indices, instance)
        # one postprocess call per query or queue item, not per model batch
        return np.ascontiguousarray(self.dataset.postprocess(outputs, self.info))

    def into(self, indices, instance: int, slots: ResponseSlots) -> None:
        """The responses to ``indices`` written into the first rows of ``slots``'
        buffer: the per-query hot path. With the dataset's
        :meth:`~datasets.base.Dataset.response_writer` no array is made, and
        each model batch's outputs are written as they come (no concatenation)."""
        writer = self._writer
        if writer is None:
            outputs = self._predict_one(indices[0], instance) if len(indices) == 1 else \
                self._outputs(indices, instance)
            responses = self.dataset.postprocess(outputs, self.info)
            if len(responses) != len(outputs):
                raise BackendFailure(f"postprocessing gave {len(responses)} responses for {len(outputs)} samples")
            slots.buffer(len(responses), responses.shape[1])[:len(responses)] = responses
            return
        n = len(indices)
        out = slots.buffer(n, writer.width)
        if n == 1:  # SingleStream and Server: the per-query cost is the overhead
            writer.write(self._predict_one(indices[0], instance), out)
            return
        rows = self.qsl.rows(indices)
        if self.info.accepts_batch(n):
            writer.write(self._predict(rows, instance), out)
        elif self._one_at_a_time:
            writer.write(self._predict_each(rows, instance), out)
        else:
            write = writer.write
            for start, end, outputs in self._batches(rows, instance):
                write(outputs, out[start:end])  # each batch as it returns: no concatenation

    def _outputs(self, indices, instance) -> np.ndarray:
        """Model outputs for several samples, in model batches the backend accepts."""
        rows = self.qsl.rows(indices)
        n = len(rows)
        if self.info.accepts_batch(n):
            return self._predict(rows, instance)
        if self._one_at_a_time:
            return self._predict_each(rows, instance)
        return np.concatenate([outputs for _, _, outputs in self._batches(rows, instance)])

    def _predict(self, rows, instance):
        return self._predict_batch(self.qsl.take(rows), instance)

    def _predict_batch(self, batch, instance):
        calls = self.calls
        n = len(batch)
        calls.running[instance] = n
        outputs = self.backend.predict(batch, instance)
        calls.running[instance] = 0
        calls.done[instance] += 1
        if len(outputs) != n:
            raise BackendFailure(f"backend returned {len(outputs)} results for a batch of {n} samples")
        return outputs

    def _batches(self, rows, instance):
        """``(start, end, outputs)`` of each model batch, in the sizes the
        backend accepts: a batch of consecutive rows goes to the backend as a
        view of the QSL's array, found with one vectorized pass over ``rows``."""
        data = self.qsl.data
        first_rows = rows.tolist()
        breaks = np.flatnonzero(np.diff(rows) != 1).tolist()  # k: rows[k + 1] is not rows[k] + 1
        start = 0
        for size in self.info.split_batch(len(rows)):
            end = start + size
            if bisect.bisect_left(breaks, start) == bisect.bisect_left(breaks, end - 1):  # no break inside
                first = first_rows[start]
                batch = data[first:first + size]
            else:
                batch = data[rows[start:end]]
            yield start, end, self._predict_batch(batch, instance)
            start = end

    def _predict_one(self, index, instance):
        calls = self.calls
        calls.running[instance] = 1
        outputs = self.backend.predict(self.qsl.single(index), instance)
        calls.running[instance] = 0
        calls.done[instance] += 1
        if len(outputs) != 1:
            raise BackendFailure(f"backend returned {len(outputs)} results for a batch of 1 sample")
        return outputs

    def _predict_each(self, rows, instance):
        singles = self.qsl.singles
        samples = [singles[row] for row in rows.tolist()]
        chunk = self.each_chunk
        if chunk is None or len(samples) <= chunk:
            outputs = self._each(samples, instance)
        else:
            outputs = np.concatenate([self._each(samples[start:start + chunk], instance)
                                      for start in range(0, len(samples), chunk)])
        if len(outputs) != len(rows):
            raise BackendFailure(f"backend returned {len(outputs)} results for {len(rows)} single-sample batches")
        return outputs

    def _each(self, samples, instance):
        calls = self.calls
        calls.running[instance] = -len(samples)
        outputs = self.backend.predict_each(samples, instance)
        calls.running[instance] = 0
        calls.done[instance] += 1
        return outputs


def each_chunk(latency_s: float | None, timeout_s: float) -> int | None:
    """Samples per ``predict_each`` call: about ``min(timeout / 8, 0.5 s)`` of
    work at the measured single-sample latency (None: unknown, no limit), so
    the watchdog, which times whole calls, sees a slow device's progress and
    a hang within the timeout, while a fast device still gets long calls."""
    if not latency_s or latency_s <= 0:
        return None
    return max(1, int(min(timeout_s / 8, 0.5) / latency_s))


def consecutive_runs(rows: np.ndarray) -> np.ndarray:
    """A permutation of ``range(len(rows))`` that visits the samples in rounds
    of ascending rows: every row's first sample, then every row's second, and
    so on. Cut into batches, it gives mostly runs of consecutive rows."""
    by_row = np.argsort(rows, kind="stable")
    sorted_rows = rows[by_row]
    counts = np.bincount(sorted_rows)
    rank = np.arange(len(rows)) - (np.cumsum(counts) - counts)[sorted_rows]  # occurrence number
    return by_row[np.lexsort((sorted_rows, rank))]


class WorkerPool:
    """One thread per model instance, pulling ``(token, indices)`` items from a queue.

    With ``max_batch > 1`` a worker takes the first waiting item and then
    whatever else is already waiting, up to ``max_batch`` samples, and runs
    them as one model batch (dynamic batching: no waiting when the load is
    light, bigger batches as it rises); with ``batch_timeout_s > 0`` it waits
    up to that long for a batch to fill.
    """

    def __init__(self, predictor: Predictor, completer: Completer, instances: int,
                 max_batch: int = 1, batch_timeout_s: float = 0.0):
        self.predictor, self.completer = predictor, completer
        self.max_batch, self.batch_timeout_s = max_batch, batch_timeout_s
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        work = self._work if max_batch > 1 else self._work_singly
        self.threads = [threading.Thread(target=work, args=(i,), name=f"worker-{i}", daemon=True)
                        for i in range(instances)]
        for t in self.threads:
            t.start()

    def submit(self, ids, indices) -> None:
        token = self.completer.start(ids)
        if token is not None:
            self.queue.put((token, ids, indices))

    def _work(self, instance: int) -> None:
        get = self.queue.get
        slots = ResponseSlots()  # this worker's responses, reused for every item it completes
        while True:
            item = get()
            if item is None:
                return
            items = [item]
            if len(item[2]) < self.max_batch:
                self._gather(items, len(item[2]))
            self._run(items, instance, slots)

    def _work_singly(self, instance: int) -> None:
        """:meth:`_work` for ``max_batch`` 1: one item per backend call, so no
        gathering; the per-item path in one loop (Server's per-query cost)."""
        get = self.queue.get
        completer, into = self.completer, self.predictor.into
        complete = completer.complete
        slots = ResponseSlots()
        objects = slots.objects
        while True:
            item = get()
            if item is None:
                return
            token, ids, indices = item
            if completer._failed:
                completer.discard(token)
                continue
            try:
                into(indices, instance, slots)
                complete(token, objects(ids))
            except BaseException as exc:  # reported by the runner; the run must not hang
                completer.fail(exc)

    def _gather(self, items: list, samples: int) -> None:
        """Add waiting items to ``items`` until ``max_batch`` samples (or the timeout)."""
        deadline = None
        while samples < self.max_batch:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                if self.batch_timeout_s <= 0:
                    return
                deadline = deadline or time.monotonic() + self.batch_timeout_s
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                try:
                    item = self.queue.get(timeout=remaining)
                except queue.Empty:
                    return
            if item is None:
                self.queue.put(None)  # the stop signal is for this worker's next get()
                return
            items.append(item)
            samples += len(item[2])

    def _run(self, items: list, instance: int, slots: ResponseSlots) -> None:
        completer = self.completer
        if completer._failed:
            for token, *_ in items:
                completer.discard(token)
            return
        try:
            if len(items) == 1:
                token, ids, indices = items[0]
                self.predictor.into(indices, instance, slots)
                completer.complete(token, slots.objects(ids))
                return
            self.predictor.into([i for _, _, part in items for i in part], instance, slots)
            objects = slots.objects([i for _, ids, _ in items for i in ids])
        except BaseException as exc:  # reported by the runner; the run must not hang
            completer.fail(exc)
            return
        start = 0
        for token, ids, _ in items:
            completer.complete(token, objects[start:start + len(ids)])
            start += len(ids)

    def close(self, timeout: float = 1.0) -> None:
        for _ in self.threads:
            self.queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))


class BaseSUT:
    """LoadGen's issue/flush callbacks. Exceptions never escape into LoadGen."""

    #: whether workers batch queued items together (Server); the other
    #: scenarios size their queue items themselves
    gathers = False

    def __init__(self, predictor: Predictor, completer: Completer, instances: int, max_batch: int,
                 batch_timeout_s: float = 0.0):
        self.predictor, self.completer = predictor, completer
        self.instances, self.max_batch = instances, max_batch
        self.batch_timeout_s = batch_timeout_s
        self.pool: WorkerPool | None = None
        #: responses of the queries answered inline (LoadGen's issue thread only)
        self.slots = ResponseSlots()

    def issue(self, ids: list[int], indices: list[int]) -> None:
        try:
            self.issue_impl(ids, indices)
        except BaseException as exc:
            self.completer.fail(exc)

    def flush(self) -> None:
        pass

    def issue_impl(self, ids, indices) -> None:
        raise NotImplementedError

    def _inline(self, ids, indices) -> None:
        """Answer on LoadGen's thread, into this SUT's own response slots."""
        completer = self.completer
        token = completer.start(ids)
        if token is None:
            return
        try:
            slots = self.slots
            self.predictor.into(indices, 0, slots)
            completer.complete(token, slots.objects(ids))
        except BaseException as exc:
            completer.fail(exc)

    def _pool(self) -> WorkerPool:
        if self.pool is None:
            self.pool = WorkerPool(self.predictor, self.completer, self.instances,
                                   self.max_batch if self.gathers else 1, self.batch_timeout_s)
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


class SingleStreamSUT(BaseSUT):
    """One sample per query, answered inline on LoadGen's thread."""

    def issue(self, ids, indices):  # the whole per-query path is the overhead: no issue_impl hop
        self._inline(ids, indices)


class MultiStreamSUT(BaseSUT):
    """N samples per query: one batch inline, or split across model instances."""

    def issue_impl(self, ids, indices):
        if self.instances == 1:
            self._inline(ids, indices)
            return
        pool = self._pool()
        for part in np.array_split(np.arange(len(ids)), min(self.instances, len(ids))):
            lo, hi = int(part[0]), int(part[-1]) + 1
            pool.submit(ids[lo:hi], indices[lo:hi])


class OfflineSUT(BaseSUT):
    """All samples in one query: batched queue items for the worker pool."""

    #: most model-output bytes per queue item (a backend's predict_each
    #: gathers an item's outputs into one array); with a response writer each
    #: model batch is written as it returns, and fewer, bigger items cost less
    #: per sample (null backend, Offline batch 64: 0.63x bare's samples/s at
    #: 256 KiB, 0.91x at 4 MiB)
    ITEM_OUTPUT_BYTES = 4 * 1024 * 1024
    MAX_ITEM = 1024

    def issue_impl(self, ids, indices):
        pool = self._pool()
        n = len(ids)
        item = self._item_size(n)
        queued = 0
        try:
            if self.max_batch > 1:
                # Offline may answer in any order: batch the samples so that model
                # batches are runs of consecutive QSL rows, which go to the backend
                # as views instead of gathered copies
                order = consecutive_runs(self.predictor.qsl.rows(indices))
                ids, indices = np.asarray(ids)[order].tolist(), np.asarray(indices)[order]
            for queued in range(0, n, item):
                pool.submit(ids[queued:queued + item], indices[queued:queued + item])
        except BaseException:
            self.completer.reject(ids[queued:])  # LoadGen waits for every sample it issued
            raise

    def _item_size(self, n: int) -> int:
        """Samples per queue item: whole model batches; enough items to keep
        every worker busy, few enough that queueing costs nothing per sample."""
        out = self.predictor.info.output
        per_sample = max(1, int(np.prod(out.shape)) * out.dtype.itemsize)
        cap = max(1, min(self.MAX_ITEM, self.ITEM_OUTPUT_BYTES // per_sample))
        per_worker = max(1, n // (self.instances * 8))
        return max(self.max_batch, min(cap, per_worker) // self.max_batch * self.max_batch)


class ServerSUT(BaseSUT):
    """Queries arrive one by one and go straight onto the worker queue; the
    workers batch whatever is waiting (see :class:`WorkerPool`), optionally
    waiting up to ``batch_timeout_s`` for a batch to fill.

    One model instance that takes one sample per call is answered inline
    instead, on LoadGen's thread: a single worker taking queries in arrival
    order is what LoadGen's own issue order already is, and the hand-off to
    it costs more than a fast model's inference (the null backend's peak
    VALID rate doubles). LoadGen times every Server query from its
    *scheduled* time, so a query issued late because the previous one was
    still running is measured exactly as one that waited in a queue.
    """

    gathers = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.inline = self.instances == 1 and self.max_batch == 1

    def issue(self, ids, indices):  # the whole per-query path is the overhead: no issue_impl hop
        if self.inline:
            self._inline(ids, indices)
            return
        completer = self.completer
        try:
            token = completer.start(ids)
            if token is not None:
                (self.pool or self._pool()).queue.put((token, ids, indices))
        except BaseException as exc:
            completer.fail(exc)


SUTS = {
    "SingleStream": SingleStreamSUT,
    "MultiStream": MultiStreamSUT,
    "Offline": OfflineSUT,
    "Server": ServerSUT,
}
