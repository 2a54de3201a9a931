"""Predictor, WorkerPool and the four scenario SUTs on a tiny in-memory model.

The model answers each sample with its own input (sample ``i`` holds the
value ``i``) and the dataset multiplies by ten, so every completed response
says which sample it answers. LoadGen's ids are ``1000 + index``. A
:class:`Gate` holds the first ``predict`` call until the test opens it, so the
queue can be filled while the worker is busy: what the workers then gather is
decided by the queue's contents, not by timing.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from backends.base import Backend, ModelInfo, TensorSpec
from benchmarks.harness_overhead import ArrayDataset
from datasets.base import ResponseWriter
from datasets.cache import SampleStore
from sut import scenarios
from sut.completion import Completer, ResponseSlots
from sut.errors import BackendFailure
from sut.qsl import QuerySampleLibrary
from sut.scenarios import MultiStreamSUT, OfflineSUT, Predictor, ServerSUT, SingleStreamSUT, WorkerPool
from tests.sut.test_completion import WAIT_S

ID_BASE = 1000


class EchoBackend(Backend):
    """Answers every sample with its input row; records (batch size, instance) per call."""

    name = "echo"

    def __init__(self, max_batch_size=1, batch_sizes=None, instances=1, hook=None, drop_one=False):
        super().__init__()
        self.shape = dict(max_batch_size=max_batch_size, batch_sizes=batch_sizes, instances=instances)
        self.hook, self.drop_one = hook, drop_one
        self.calls: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def load_impl(self, model_path):
        spec = TensorSpec("x", (1,), np.float32)
        return ModelInfo(inputs=(spec,), outputs=(spec,), **self.shape)

    def predict_impl(self, batch, instance):
        with self._lock:
            self.calls.append((len(batch), instance))
            number = len(self.calls)
        if self.hook is not None:
            self.hook(number)
        out = batch.astype(np.float32)
        return out[:-1] if self.drop_one else out

    @property
    def sizes(self) -> list[int]:
        with self._lock:
            return [size for size, _ in self.calls]


class EchoDataset(ArrayDataset):
    """Responses are outputs x 10; counts postprocess calls."""

    def __init__(self, count):
        super().__init__(count)
        self.postprocessed: list[int] = []

    def postprocess(self, outputs, info):
        self.postprocessed.append(len(outputs))
        return outputs * np.float32(10)

    def response_writer(self, info):
        return None  # the SUT copies postprocess's result


class WritingEchoDataset(EchoDataset):
    """The same responses through a response writer (the SUT's hot path)."""

    def response_writer(self, info):
        def write(outputs, out):
            self.postprocessed.append(len(outputs))
            out[:len(outputs)] = outputs * np.float32(10)
        return ResponseWriter(1, write)


class Gate:
    """Holds the first predict call until opened; optionally it then raises."""

    def __init__(self, then_raise: bool = False):
        self.entered, self.opened = threading.Event(), threading.Event()
        self.then_raise = then_raise

    def __call__(self, number: int) -> None:
        if number != 1:
            return
        self.entered.set()
        self.opened.wait(WAIT_S)
        if self.then_raise:
            raise RuntimeError("injected failure")

    def wait_until_held(self) -> None:
        assert self.entered.wait(WAIT_S), "the first predict call never arrived"


class Parts:
    """A model, dataset, loaded QSL, predictor and completer for one test."""

    def __init__(self, samples: int = 64, writer: bool = False, **model):
        self.backend = EchoBackend(**model)
        self.info = self.backend.load(None)
        self.dataset = (WritingEchoDataset if writer else EchoDataset)(samples)
        self.qsl = QuerySampleLibrary(SampleStore(np.arange(samples, dtype=np.float32).reshape(-1, 1)), samples)
        self.qsl.load(list(range(samples)))
        self.predictor = Predictor(self.backend, self.info, self.dataset, self.qsl)
        self.completer = Completer()
        self.pools: list[WorkerPool] = []
        self.suts: list = []

    def pool(self, instances: int = 1, max_batch: int = 1, batch_timeout_s: float = 0.0) -> WorkerPool:
        pool = WorkerPool(self.predictor, self.completer, instances, max_batch, batch_timeout_s)
        self.pools.append(pool)
        return pool

    def sut(self, cls, instances: int = 1, max_batch: int = 1, batch_timeout_s: float = 0.0):
        sut = cls(self.predictor, self.completer, instances, max_batch, batch_timeout_s=batch_timeout_s)
        self.suts.append(sut)
        return sut

    def stop(self) -> None:
        """Open any gate and stop every worker (bounded); fail if one keeps running."""
        if isinstance(self.backend.hook, Gate):
            self.backend.hook.opened.set()
        pools = self.pools + [sut.pool for sut in self.suts if sut.pool is not None]
        for pool in pools:
            pool.close(timeout=WAIT_S)
            assert not any(t.is_alive() for t in pool.threads), "a worker did not stop"


@pytest.fixture(params=["postprocess", "writer"])
def make(completions, request):
    """Parts for one test, run once with the dataset's postprocess copied into
    the responses and once with its response writer."""
    made: list[Parts] = []

    def factory(**kwargs) -> Parts:
        made.append(Parts(writer=request.param == "writer", **kwargs))
        return made[-1]

    yield factory
    for parts in made:
        parts.stop()


def submit_samples(pool: WorkerPool, *items: list[int]) -> None:
    """One queue item per list of dataset indices, ids ``ID_BASE + index``."""
    for indices in items:
        pool.submit([ID_BASE + i for i in indices], list(indices))


def answers(indices) -> dict[int, list[float]]:
    """What the completions must say for these dataset indices."""
    return {ID_BASE + i: [10.0 * i] for i in indices}


# --- Predictor ------------------------------------------------------------------

def test_predictor_splits_into_sizes_up_to_max_batch_with_one_postprocess(make):
    parts = make(max_batch_size=4)
    responses = parts.predictor([5, 3, 8, 1, 0, 2])
    parts.predictor([7, 6, 5])
    assert parts.backend.sizes == [4, 2, 3]
    assert parts.dataset.postprocessed == [6, 3]  # one per call, not per model batch
    assert responses.ravel().tolist() == [50.0, 30.0, 80.0, 10.0, 0.0, 20.0]
    assert responses.flags.c_contiguous


@pytest.mark.parametrize("indices,sizes", [([5, 3, 8, 1, 0, 2], [4, 1, 1]), (list(range(8)), [4, 4])])
def test_predictor_splits_into_the_listed_batch_sizes(make, indices, sizes):
    """A model that runs only at the sizes it lists (LiteRT resized to --max-batchsize 4: (1, 4))."""
    parts = make(max_batch_size=4, batch_sizes=(1, 4))
    responses = parts.predictor(indices)
    assert parts.backend.sizes == sizes
    assert parts.dataset.postprocessed == [len(indices)]
    assert responses.ravel().tolist() == [10.0 * i for i in indices]


@pytest.mark.parametrize("indices", [[5, 6, 7, 8, 9, 10], [9, 2, 4, 7, 1], [3, 4, 5, 6, 0, 1, 2], [7], list(range(11))])
@pytest.mark.parametrize("batch_sizes", [None, (1, 4)])
def test_predictor_into_writes_what_calling_it_returns(make, indices, batch_sizes):
    """The hot path (into a response buffer, each model batch written as it
    returns, consecutive rows passed as views) answers exactly as the plain call."""
    parts = make(max_batch_size=4, batch_sizes=batch_sizes)
    slots = ResponseSlots()
    parts.predictor.into(indices, 0, slots)
    expected = parts.predictor(indices)
    np.testing.assert_array_equal(slots.out[:len(indices)], expected)
    assert slots.out[:len(indices)].ravel().tolist() == [10.0 * i for i in indices]


def test_predictor_one_sample_model_gets_every_sample_in_order(make):
    parts = make(max_batch_size=1)
    responses = parts.predictor([9, 2, 4])
    assert parts.backend.sizes == [1, 1, 1]
    assert parts.dataset.postprocessed == [3]
    assert responses.ravel().tolist() == [90.0, 20.0, 40.0]


def test_predictor_passes_the_instance(make):
    parts = make(instances=2)
    parts.predictor([1], instance=1)
    assert parts.backend.calls == [(1, 1)]


def test_predictor_wrong_result_count_is_a_backend_failure(make):
    parts = make(max_batch_size=4, drop_one=True)
    with pytest.raises(BackendFailure, match="backend returned 3 results for a batch of 4 samples"):
        parts.predictor([0, 1, 2, 3])
    assert parts.dataset.postprocessed == []


class EachRecorder(EchoBackend):
    """Records the size of every predict_each call, and what Calls says during it."""

    def __init__(self, calls_seen, **model):
        super().__init__(**model)
        self.each_sizes: list[int] = []
        self.calls_seen = calls_seen

    def predict_each(self, samples, instance=0):
        self.each_sizes.append(len(samples))
        self.calls_seen.append(list(self.tracker.running))
        return super().predict_each(samples, instance)


def test_predictor_marks_every_backend_call_for_the_watchdog(make):
    parts = make(max_batch_size=4, instances=2)
    calls = parts.predictor.calls
    seen = []
    parts.backend.hook = lambda number: seen.append(list(calls.running))
    parts.predictor([0, 1, 2, 3, 4, 5], instance=1)  # batches of 4 and 2 on instance 1
    parts.predictor([7], instance=0)
    assert seen == [[0, 4], [0, 2], [1, 0]]  # the batch size while each call runs
    assert calls.running == [0, 0] and calls.done == [1, 2]


@pytest.mark.parametrize("chunk,sizes", [(None, [10]), (4, [4, 4, 2]), (1, [1] * 10), (50, [10])])
def test_predictor_cuts_predict_each_into_chunks_the_watchdog_can_time(chunk, sizes):
    seen: list = []
    backend = EachRecorder(seen, max_batch_size=1)
    info = backend.load(None)
    qsl = QuerySampleLibrary(SampleStore(np.arange(10, dtype=np.float32).reshape(-1, 1)), 10)
    qsl.load(list(range(10)))
    predictor = Predictor(backend, info, EchoDataset(10), qsl, each_chunk=chunk)
    backend.tracker = predictor.calls
    responses = predictor(list(range(9, -1, -1)))
    assert backend.each_sizes == sizes
    assert seen == [[-size] for size in sizes]  # -n: n single-sample inferences in one call
    assert responses.ravel().tolist() == [10.0 * i for i in range(9, -1, -1)]
    assert predictor.calls.done == [len(sizes)]


@pytest.mark.parametrize("latency,timeout,chunk", [
    (None, 60, None), (0.0, 60, None), (0.2, 1.0, 1), (0.012, 60, 41), (1e-6, 60, 500_000), (0.01, 0.4, 5)])
def test_each_chunk_is_a_fraction_of_the_timeout_and_at_most_half_a_second(latency, timeout, chunk):
    assert scenarios.each_chunk(latency, timeout) == chunk


# --- WorkerPool: gathering ----------------------------------------------------------

def held_pool(make, max_batch: int, **pool_options):
    """A one-worker pool whose first call (sample 0) is held at its gate."""
    gate = Gate()
    parts = make(max_batch_size=max(max_batch, 1), hook=gate)
    pool = parts.pool(max_batch=max_batch, **pool_options)
    submit_samples(pool, [0])
    gate.wait_until_held()
    return parts, pool, gate


def test_queued_items_are_gathered_into_one_call_up_to_max_batch(make, completions):
    parts, pool, gate = held_pool(make, max_batch=4)
    submit_samples(pool, *([i] for i in range(1, 7)))
    gate.opened.set()
    completions.wait_for(7)
    assert parts.backend.sizes == [1, 4, 2]
    assert completions.values() == answers(range(7))


def test_max_batch_one_runs_one_item_per_call(make, completions):
    parts, pool, gate = held_pool(make, max_batch=1)
    submit_samples(pool, *([i] for i in range(1, 5)))
    gate.opened.set()
    completions.wait_for(5)
    assert parts.backend.sizes == [1, 1, 1, 1, 1]
    assert completions.values() == answers(range(5))


def test_gathered_responses_go_back_to_their_own_items(make, completions):
    parts, pool, gate = held_pool(make, max_batch=8)
    submit_samples(pool, [9, 4], [7], [1, 2, 3], [6])
    gate.opened.set()
    completions.wait_for(8)
    assert parts.backend.sizes == [1, 7]
    assert completions.values() == answers([0, 9, 4, 7, 1, 2, 3, 6])


def test_batch_timeout_waits_for_a_batch_to_fill(make, completions):
    parts = make(max_batch_size=4)
    pool = parts.pool(max_batch=4, batch_timeout_s=WAIT_S)
    submit_samples(pool, [0])
    wait_until_taken(pool)
    submit_samples(pool, [1], [2], [3])  # arrive while the worker waits for more
    completions.wait_for(4)
    assert parts.backend.sizes == [4]
    assert completions.values() == answers(range(4))


def test_batch_timeout_runs_a_partial_batch_when_it_expires(make, completions):
    parts = make(max_batch_size=4)
    pool = parts.pool(max_batch=4, batch_timeout_s=0.05)
    submit_samples(pool, [5])
    completions.wait_for(1)
    assert parts.backend.sizes == [1]
    assert completions.values() == answers([5])


def wait_until_taken(pool: WorkerPool) -> None:
    """Until a worker has taken what was queued (bounded)."""
    deadline = time.monotonic() + WAIT_S
    while not pool.queue.empty():
        if time.monotonic() > deadline:
            pytest.fail("no worker took the queued item")
        time.sleep(0.005)


def test_stop_signal_met_while_gathering_still_stops_the_worker(make, completions):
    parts, pool, gate = held_pool(make, max_batch=4)
    submit_samples(pool, [1])
    pool.queue.put(None)  # what close() puts, behind the waiting item
    gate.opened.set()
    completions.wait_for(2)
    pool.threads[0].join(WAIT_S)
    assert not pool.threads[0].is_alive()
    assert parts.backend.sizes == [1, 1]
    assert completions.values() == answers([0, 1])


def test_close_stops_every_worker_even_one_waiting_for_a_batch(make, completions):
    parts = make(max_batch_size=4, instances=2)
    pool = parts.pool(instances=2, max_batch=4, batch_timeout_s=10 * WAIT_S)
    submit_samples(pool, [3])
    wait_until_taken(pool)  # one worker now waits (long) for the batch to fill
    pool.close(timeout=WAIT_S)
    assert not any(t.is_alive() for t in pool.threads)
    completions.wait_for(1)
    assert completions.values() == answers([3])


# --- WorkerPool: failures ------------------------------------------------------------

@pytest.mark.parametrize("max_batch", [1, 4])
def test_raising_backend_fails_the_run_and_no_sample_is_left_open(make, completions, max_batch):
    gate = Gate(then_raise=True)
    parts = make(max_batch_size=max_batch, hook=gate)
    pool = parts.pool(max_batch=max_batch)
    submit_samples(pool, [0])
    gate.wait_until_held()
    submit_samples(pool, [1], [2], [3])
    gate.opened.set()
    completions.wait_for(4)
    assert isinstance(parts.completer.error, RuntimeError)
    assert str(parts.completer.error) == "injected failure"
    submit_samples(pool, [4])  # after the failure: completed at once, empty
    completions.wait_for(5)
    parts.stop()
    assert parts.backend.sizes == [1]  # nothing reached the backend after the failure
    assert completions.values() == {ID_BASE + i: [] for i in range(5)}


def test_wrong_result_count_in_a_worker_fails_the_run(make, completions):
    parts = make(max_batch_size=2, drop_one=True)
    pool = parts.pool()
    submit_samples(pool, [0, 1])
    completions.wait_for(2)
    assert isinstance(parts.completer.error, BackendFailure)
    assert completions.values() == {ID_BASE: [], ID_BASE + 1: []}


# --- the scenario SUTs ---------------------------------------------------------------

def test_single_stream_answers_inline(make, completions):
    parts = make()
    sut = parts.sut(SingleStreamSUT)
    sut.issue([ID_BASE + 6], [6])
    assert completions.values() == answers([6])  # before issue returned
    assert sut.pool is None and parts.backend.calls == [(1, 0)]


def test_an_exception_in_issue_fails_the_run_instead_of_escaping(make, completions):
    parts = make()
    sut = parts.sut(SingleStreamSUT)
    parts.qsl.unload([6])
    sut.issue([ID_BASE + 6], [6])  # not loaded: the QSL raises KeyError inside issue
    assert isinstance(parts.completer.error, KeyError)
    assert completions.values() == {ID_BASE + 6: []}


@pytest.mark.parametrize("max_batch", [1, 4])
def test_an_offline_query_that_cannot_be_queued_completes_every_sample_empty(make, completions, max_batch):
    parts = make(samples=20, max_batch_size=max_batch)
    sut = parts.sut(OfflineSUT, max_batch=max_batch)
    parts.qsl.unload([6])
    sut.issue([ID_BASE + i for i in range(20)], list(range(20)))
    completions.wait_for(20)
    assert isinstance(parts.completer.error, KeyError)
    values = completions.values()  # each once
    assert sorted(values) == [ID_BASE + i for i in range(20)] and values[ID_BASE + 6] == []


def test_multi_stream_one_instance_is_one_inline_batch(make, completions):
    parts = make(max_batch_size=8)
    sut = parts.sut(MultiStreamSUT, max_batch=8)
    sut.issue([ID_BASE + i for i in range(8)], list(range(8)))
    assert completions.values() == answers(range(8))
    assert sut.pool is None and parts.backend.sizes == [8]


def test_multi_stream_splits_a_query_across_instances(make, completions):
    barrier = threading.Barrier(2, timeout=WAIT_S)

    def both_at_once(number):  # the two halves must run concurrently, one per worker
        if number <= 2:
            barrier.wait()

    parts = make(max_batch_size=4, instances=2, hook=both_at_once)
    sut = parts.sut(MultiStreamSUT, instances=2, max_batch=4)
    indices = [11, 3, 7, 0, 5, 9, 2, 8]
    sut.issue([ID_BASE + i for i in indices], indices)
    completions.wait_for(8)
    assert parts.completer.error is None, parts.completer.error
    assert sorted(parts.backend.calls) == [(4, 0), (4, 1)]
    assert completions.values() == answers(indices)
    assert sut.pool.max_batch == 1  # MultiStream items are sized by the SUT, never gathered


def test_multi_stream_fewer_samples_than_instances(make, completions):
    parts = make(max_batch_size=4, instances=4)
    sut = parts.sut(MultiStreamSUT, instances=4, max_batch=4)
    sut.issue([ID_BASE + i for i in (4, 5, 6)], [4, 5, 6])
    completions.wait_for(3)
    assert parts.backend.sizes == [1, 1, 1]
    assert completions.values() == answers([4, 5, 6])


@pytest.fixture
def submitted_items(monkeypatch):
    """Sizes of the items the SUT puts on the worker queue."""
    sizes: list[int] = []
    submit = WorkerPool.submit

    def record(pool, ids, *args):
        sizes.append(len(ids))
        submit(pool, ids, *args)

    monkeypatch.setattr(scenarios.WorkerPool, "submit", record)
    return sizes


@pytest.mark.parametrize("samples,instances,max_batch,expected_items", [
    (102, 1, 4, [12] * 8 + [6]),     # 102 // 8 per worker item, rounded down to whole batches
    (10, 2, 4, [4, 4, 2]),            # never smaller than one model batch
    (20000, 2, 8, [1024] * 19 + [544]),  # at most 1024 samples per item
])
def test_offline_items_are_whole_model_batches(make, completions, submitted_items,
                                               samples, instances, max_batch, expected_items):
    parts = make(samples=samples, max_batch_size=max_batch, instances=instances)
    sut = parts.sut(OfflineSUT, instances=instances, max_batch=max_batch)
    sut.issue([ID_BASE + i for i in range(samples)], list(range(samples)))
    completions.wait_for(samples)
    assert submitted_items == expected_items
    assert all(size % max_batch == 0 for size in submitted_items[:-1])
    full_batches = [size for size in parts.backend.sizes if size == max_batch]
    assert len(full_batches) == samples // max_batch  # only the last item has a short batch
    assert completions.values() == answers(range(samples))
    assert sut.pool.max_batch == 1


def test_server_queries_go_on_the_queue_and_are_gathered(make, completions):
    gate = Gate()
    parts = make(max_batch_size=4, hook=gate)
    sut = parts.sut(ServerSUT, max_batch=4, batch_timeout_s=0.0)
    sut.issue([ID_BASE], [0])
    gate.wait_until_held()
    for i in range(1, 6):
        sut.issue([ID_BASE + i], [i])  # returns at once: LoadGen's thread never blocks
    gate.opened.set()
    completions.wait_for(6)
    assert parts.backend.sizes == [1, 4, 1]
    assert completions.values() == answers(range(6))
    assert (sut.pool.max_batch, sut.pool.batch_timeout_s) == (4, 0.0)


def test_server_with_max_batch_one_never_gathers(make, completions):
    gate = Gate()
    parts = make(hook=gate, instances=2)
    sut = parts.sut(ServerSUT, instances=2, batch_timeout_s=WAIT_S)
    sut.issue([ID_BASE], [0])
    gate.wait_until_held()
    sut.issue([ID_BASE + 1], [1])
    sut.issue([ID_BASE + 2], [2])
    gate.opened.set()
    completions.wait_for(3)
    assert parts.backend.sizes == [1, 1, 1]
    assert completions.values() == answers(range(3))


def test_server_with_one_instance_and_no_batching_answers_inline(make, completions):
    parts = make()
    sut = parts.sut(ServerSUT, batch_timeout_s=WAIT_S)
    for i in range(3):
        sut.issue([ID_BASE + i], [i])
        assert completions.values() == answers(range(i + 1))  # done before issue returns
    assert sut.pool is None and parts.backend.calls == [(1, 0)] * 3


@pytest.mark.parametrize("rows,expected", [
    ([3, 1, 3, 0, 1, 3, 2], [0, 1, 2, 3, 1, 3, 3]),
    ([5, 5, 5], [5, 5, 5]),
    ([2, 0, 1], [0, 1, 2]),
])
def test_consecutive_runs_visits_rows_in_ascending_rounds(rows, expected):
    rows = np.array(rows)
    order = scenarios.consecutive_runs(rows)
    assert sorted(order.tolist()) == list(range(len(rows)))  # a permutation
    assert rows[order].tolist() == expected


def test_offline_batches_are_views_of_consecutive_rows_and_answers_keep_their_ids(make, completions):
    """LoadGen repeats each of the 16 loaded samples 4 times in random order;
    Offline reorders them so every model batch is a run of consecutive rows."""
    views = []
    parts = make(samples=16, max_batch_size=4)
    predict = parts.backend.predict_impl

    def recording(batch, instance):
        views.append(np.shares_memory(batch, parts.qsl.data))
        return predict(batch, instance)

    parts.backend.predict_impl = recording
    indices = np.random.default_rng(0).permutation(np.repeat(np.arange(16), 4)).tolist()
    ids = list(range(ID_BASE, ID_BASE + len(indices)))
    sut = parts.sut(OfflineSUT, max_batch=4)
    sut.issue(ids, indices)
    completions.wait_for(len(ids))
    assert parts.backend.sizes == [4] * 16 and all(views)
    assert completions.values() == {i: [10.0 * index] for i, index in zip(ids, indices)}
