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
    np.testing.assert_array_equal(qsl.batch([2]), data[2:3])
    np.testing.assert_array_equal(qsl.batch([7, 2, 7]), data[[7, 2, 7]])
    qsl.unload([7, 2])
    assert qsl.loaded_count == 0


def test_single_sample_batch_is_a_view():
    qsl, _ = make_qsl()
    qsl.load([3])
    assert np.shares_memory(qsl.batch([3]), qsl.batch([3]))


def test_unloaded_sample_raises():
    qsl, _ = make_qsl()
    qsl.load([1])
    with pytest.raises(KeyError, match="sample 5 was not loaded"):
        qsl.batch([5])


def test_performance_count_capped_at_dataset_size():
    qsl, _ = make_qsl(n=10, perf=1024)
    assert qsl.performance_count == 10
