"""System-under-test implementations for LoadGen's four scenarios.

All of them share one :class:`Predictor` (QSL rows -> backend -> responses)
and one :class:`~sut.completion.Completer`. The work is done either inline
on LoadGen's issue thread (SingleStream, and MultiStream with one model
instance: lowest latency) or by a :class:`WorkerPool` with one thread per
model instance, fed with batched queue items (Offline, Server, MultiStream
across several instances/devices).
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import numpy as np

from backends.base import Backend, ModelInfo
from datasets.base import Dataset
from sut.completion import Completer
from sut.errors import BackendFailure
from sut.qsl import QuerySampleLibrary

log = logging.getLogger(__name__)


class Predictor:
    """Dataset indices -> model responses, splitting into accepted batch sizes."""

    def __init__(self, backend: Backend, info: ModelInfo, dataset: Dataset, qsl: QuerySampleLibrary):
        self.backend, self.info, self.dataset, self.qsl = backend, info, dataset, qsl

    def __call__(self, indices, instance: int = 0) -> np.ndarray:
        n = len(indices)
        if self.info.accepts_batch(n):
            outputs = self._predict(indices, instance)
        else:
            parts, start = [], 0
            for size in self.info.split_batch(n):
                parts.append(self._predict(indices[start:start + size], instance))
                start += size
            outputs = np.concatenate(parts)
        # one postprocess call per query or queue item, not per model batch
        return np.ascontiguousarray(self.dataset.postprocess(outputs, self.info))

    def _predict(self, indices, instance):
        outputs = self.backend.predict(self.qsl.batch(indices), instance)
        if len(outputs) != len(indices):
            raise BackendFailure(f"backend returned {len(outputs)} results for a batch of {len(indices)} samples")
        return outputs


class WorkerPool:
    """One thread per model instance, pulling (token, indices) items from a queue."""

    def __init__(self, predictor: Predictor, completer: Completer, instances: int):
        self.predictor, self.completer = predictor, completer
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._work, args=(i,), name=f"worker-{i}", daemon=True)
                        for i in range(instances)]
        for t in self.threads:
            t.start()

    def submit(self, ids, indices) -> None:
        token = self.completer.start(ids)
        if token is not None:
            self.queue.put((token, indices))

    def _work(self, instance: int) -> None:
        predictor, completer = self.predictor, self.completer
        while True:
            item = self.queue.get()
            if item is None:
                return
            token, indices = item
            if completer.failed.is_set():
                completer.discard(token)
                continue
            try:
                responses = predictor(indices, instance)
            except BaseException as exc:  # reported by the runner; the run must not hang
                completer.fail(exc)
                continue
            completer.finish(token, responses)

    def close(self, timeout: float = 1.0) -> None:
        for _ in self.threads:
            self.queue.put(None)
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))


class BaseSUT:
    """LoadGen's issue/flush callbacks. Exceptions never escape into LoadGen."""

    def __init__(self, predictor: Predictor, completer: Completer, instances: int, max_batch: int):
        self.predictor, self.completer = predictor, completer
        self.instances, self.max_batch = instances, max_batch
        self.pool: WorkerPool | None = None

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
        token = self.completer.start(ids)
        if token is None:
            return
        try:
            responses = self.predictor(indices, 0)
        except BaseException as exc:
            self.completer.fail(exc)
            return
        self.completer.finish(token, responses)

    def _pool(self) -> WorkerPool:
        if self.pool is None:
            self.pool = WorkerPool(self.predictor, self.completer, self.instances)
        return self.pool

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


class SingleStreamSUT(BaseSUT):
    """One sample per query, answered inline on LoadGen's thread."""

    def issue_impl(self, ids, indices):
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

    def issue_impl(self, ids, indices):
        pool = self._pool()
        n = len(ids)
        # items of whole model batches; enough items to keep every worker busy,
        # few enough that queueing costs nothing per sample
        per_worker = max(1, n // (self.instances * 8))
        item = max(self.max_batch, min(1024, per_worker) // self.max_batch * self.max_batch)
        for start in range(0, n, item):
            pool.submit(ids[start:start + item], indices[start:start + item])


class ServerSUT(BaseSUT):
    """Queries arrive one by one; a batcher groups them up to ``max_batch``,
    waiting at most ``batch_timeout_s`` for a batch to fill."""

    def __init__(self, *args, batch_timeout_s: float = 0.002):
        super().__init__(*args)
        self.batch_timeout_s = batch_timeout_s
        self._incoming: queue.SimpleQueue = queue.SimpleQueue()
        self._batcher: threading.Thread | None = None

    def issue_impl(self, ids, indices):
        if self.max_batch == 1:
            self._pool().submit(ids, indices)
            return
        if self._batcher is None:
            self._pool()
            self._batcher = threading.Thread(target=self._batch_loop, name="batcher", daemon=True)
            self._batcher.start()
        self._incoming.put((ids, indices))

    def _batch_loop(self) -> None:
        get = self._incoming.get
        while True:
            first = get()
            if first is None:
                return
            ids, indices = list(first[0]), list(first[1])
            deadline = time.monotonic() + self.batch_timeout_s
            while len(ids) < self.max_batch:
                remaining = deadline - time.monotonic()
                try:
                    nxt = get(timeout=remaining) if remaining > 0 else self._incoming.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._incoming.put(None)
                    break
                ids += nxt[0]
                indices += nxt[1]
            try:
                self.pool.submit(ids, indices)
            except BaseException as exc:
                self.completer.fail(exc)

    def close(self) -> None:
        if self._batcher is not None:
            self._incoming.put(None)
            self._batcher.join(1.0)
        super().close()


SUTS = {
    "SingleStream": SingleStreamSUT,
    "MultiStream": MultiStreamSUT,
    "Offline": OfflineSUT,
    "Server": ServerSUT,
}
