import numpy as np
import pytest

from datasets.cache import SampleStore
from sut.qsl import QuerySampleLibrary


def make_qsl(n=10, perf=4):
    data = np.arange(n * 6, dtype=np.uint8).reshape(n, 2, 3)
    return QuerySampleLibrary(SampleStore(data), perf), data


def test_loads_only_requested_rows_and_batches_them():
    qsl, data = make_qsl()
    qsl.load([7, 2, 7])  # LoadGen may repeat an index
    assert qsl.loaded_count == 2
    np.testing.assert_array_equal(qsl.take(qsl.rows([2])), data[2:3])
    np.testing.assert_array_equal(qsl.take(qsl.rows([7, 2, 7])), data[[7, 2, 7]])
    qsl.unload([7, 2])
    assert qsl.loaded_count == 0


def test_single_sample_batch_is_a_view():
    qsl, _ = make_qsl()
    qsl.load([3])
    assert np.shares_memory(qsl.take(qsl.rows([3])), qsl.take(qsl.rows([3])))


def test_unloaded_sample_raises():
    qsl, _ = make_qsl()
    qsl.load([1])
    with pytest.raises(KeyError, match="sample 5 was not loaded"):
        qsl.take(qsl.rows([5]))


def test_performance_count_capped_at_dataset_size():
    qsl, _ = make_qsl(n=10, perf=1024)
    assert qsl.performance_count == 10


def test_consecutive_rows_are_a_view_scattered_rows_a_copy():
    qsl, data = make_qsl()
    qsl.load([1, 2, 3, 4, 8])
    run = qsl.take(qsl.rows([2, 3, 4]))
    assert np.shares_memory(run, qsl.data)
    np.testing.assert_array_equal(run, data[2:5])
    scattered = qsl.take(qsl.rows([4, 2, 8]))
    assert not np.shares_memory(scattered, qsl.data)
    np.testing.assert_array_equal(scattered, data[[4, 2, 8]])


def test_single_row_views_are_made_at_load_and_dropped_at_unload():
    qsl, data = make_qsl()
    qsl.load([5, 6])
    (five, six) = (qsl.singles[r] for r in qsl.rows([5, 6]))
    np.testing.assert_array_equal(five, data[5:6])
    np.testing.assert_array_equal(six, data[6:7])
    assert np.shares_memory(five, qsl.data)
    qsl.unload([5, 6])
    assert qsl.singles == [] and qsl.data is None
