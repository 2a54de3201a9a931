"""The backend interface itself: batch-size rules and predict_each."""

import numpy as np
import pytest

from backends.base import Backend, ModelInfo, TensorSpec
from backends.null import NullBackend
from sut.errors import BackendFailure

INPUT = TensorSpec("x", (2,), np.float32)
OUTPUT = TensorSpec("y", (3,), np.float32)


class Doubling(Backend):
    """Answers each sample's values padded to 3, one sample per call; counts calls."""

    name = "doubling"

    def load_impl(self, model_path):
        self.calls = []
        return ModelInfo(inputs=(INPUT,), outputs=(OUTPUT,), max_batch_size=1)

    def predict_impl(self, batch, instance):
        self.calls.append(len(batch))
        return np.pad(batch * 2, ((0, 0), (0, 1)))


@pytest.mark.parametrize("max_batch,sizes,n,accepted,split", [
    (8, None, 7, True, [7]),
    (8, None, 11, False, [8, 3]),
    (4, (1, 4), 6, False, [4, 1, 1]),
    (4, (1, 4), 4, True, [4]),
    (1, None, 3, False, [1, 1, 1]),
])
def test_accepted_batches_and_splits(max_batch, sizes, n, accepted, split):
    info = ModelInfo(inputs=(INPUT,), outputs=(OUTPUT,), max_batch_size=max_batch, batch_sizes=sizes)
    assert info.accepts_batch(n) is accepted
    assert info.split_batch(n) == split


def test_predict_each_runs_every_sample_once_in_order():
    backend = Doubling()
    backend.load(None)
    samples = [np.array([[i, -i]], np.float32) for i in range(5)]
    out = backend.predict_each(samples)
    assert backend.calls == [1] * 5
    np.testing.assert_array_equal(out[:, 0], [0, 2, 4, 6, 8])
    assert out.shape == (5, 3)


def test_predict_each_rejects_a_wrong_result_count():
    class TwoRows(Doubling):
        def predict_impl(self, batch, instance):
            return np.zeros((2, 3), np.float32)

    backend = TwoRows()
    backend.load(None)
    with pytest.raises(BackendFailure, match="2 results for a batch of 1 sample"):
        backend.predict_each([np.zeros((1, 2), np.float32)])


def test_null_backend_answers_any_count_with_zeros():
    backend = NullBackend()
    info = backend.load(None)
    assert info.max_batch_size == 1 and info.output.shape == (1001,)
    one = backend.predict(np.zeros((1, 224, 224, 3), np.uint8))
    many = backend.predict_each([None] * 300)
    assert one.shape == (1, 1001) and many.shape == (300, 1001)
    assert not many.any() and not one.any()
