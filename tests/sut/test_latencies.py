"""Per-token latency recording (sut/latencies.py) and its Completer hook."""

import threading

import numpy as np
import pytest

from sut import latencies
from sut.completion import Completer


def test_records_in_issue_order_relative_to_first_issue():
    rec = latencies.Recorder()
    rec.add(1, 10.5, 10.75, 1)
    rec.add(0, 10.0, 10.25, 2)
    table = rec.table()
    assert table.dtype == latencies.DTYPE
    assert table["issue_s"].tolist() == [0.0, 0.5]
    assert table["complete_s"].tolist() == [0.25, 0.75]
    assert table["samples"].tolist() == [2, 1]
    assert latencies.latencies_s(table).tolist() == [0.25, 0.25]
    assert len(rec) == 2


def test_grows_past_its_buffer_and_leaves_unfinished_tokens_out():
    rec = latencies.Recorder(tokens=16)
    n = latencies.INITIAL_TOKENS * 2 + 5
    for token in range(n):
        if token != 7:  # never finished (completed empty after a failure)
            rec.add(token, 1.0 + token, 2.0 + token, 1)
    table = rec.table()
    assert len(table) == n - 1
    assert 7.0 not in table["issue_s"]
    assert np.all(latencies.latencies_s(table) == 1.0)


def test_concurrent_finishers_lose_nothing():
    rec = latencies.Recorder(tokens=16)  # grows while the threads write
    per_thread, threads = 3 * latencies.INITIAL_TOKENS // 4, 4

    def work(first):
        for token in range(first, per_thread * threads, threads):
            rec.add(token, float(token), token + 0.5, 1)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    table = rec.table()
    assert len(table) == per_thread * threads
    assert np.all(latencies.latencies_s(table) == 0.5)


def test_save_and_load_round_trip(tmp_path):
    rec = latencies.Recorder()
    rec.add(0, 5.0, 5.001, 8)
    path = latencies.save(rec, tmp_path)
    assert path.name == "latencies.npy"
    table = latencies.load(tmp_path)
    assert table.tolist() == rec.table().tolist()
    assert latencies.load(tmp_path / "absent") is None


def test_load_refuses_an_array_that_is_not_a_latency_table(tmp_path):
    np.save(tmp_path / "latencies.npy", np.zeros(3))
    assert latencies.load(tmp_path) is None


def test_recent_returns_the_last_recorders_in_order():
    a, b = latencies.Recorder(), latencies.Recorder()
    assert latencies.recent(2) == [a, b]
    assert latencies.recent(0) == []


@pytest.mark.parametrize("scenario, detail, expected", [
    ("SingleStream", {"result_query_count": 100}, 100),
    ("Server", {"result_query_count": 7}, 7),
    ("MultiStream", {"result_query_count": 10, "effective_samples_per_query": 8}, 80),
    ("Offline", {"result_query_count": 1, "generated_samples_per_query": 512}, 512),
    ("SingleStream", {}, None),
])
def test_expected_samples(scenario, detail, expected):
    assert latencies.expected_samples(detail, scenario) == expected


def test_completer_records_what_it_completes(monkeypatch):
    import mlperf_loadgen as lg

    monkeypatch.setattr(lg, "QuerySamplesComplete", lambda responses: None)
    completer = Completer()
    first = completer.start([11, 12])
    second = completer.start([13])
    completer.finish(second, np.zeros((1, 1), np.float32))
    completer.finish(first, np.zeros((2, 1), np.float32))
    table = completer.latencies.table()
    assert table["samples"].tolist() == [2, 1]
    assert np.all(latencies.latencies_s(table) >= 0)
    assert table["issue_s"][0] == 0.0
