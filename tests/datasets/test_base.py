"""datasets.base: the response writers give exactly what postprocess gives."""

from __future__ import annotations

import numpy as np
import pytest

from backends.base import ModelInfo, TensorSpec
from datasets.base import RESPONSE_DTYPE, argmax_classes, argmax_writer
from datasets.imagenet import ImageNet
from datasets.speech_commands import SpeechCommands


def written(writer, outputs, rows=None) -> np.ndarray:
    """What ``writer`` puts into a fresh buffer (filled with a marker) for ``outputs``."""
    out = np.full((rows or len(outputs), writer.width), -7, RESPONSE_DTYPE)
    writer.write(outputs, out)
    return out


@pytest.mark.parametrize("shape", [(1, 1001), (5, 1001), (1, 12), (3, 1, 12), (64, 1000)])
@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.int8])
@pytest.mark.parametrize("offset", [0, 1])
def test_argmax_writer_equals_argmax_classes(shape, dtype, offset):
    rng = np.random.default_rng(sum(shape) + offset)
    outputs = rng.integers(0, 100, shape).astype(dtype)
    out = written(argmax_writer(offset), outputs, rows=shape[0] + 2)
    expected = argmax_classes(outputs, offset)
    np.testing.assert_array_equal(out[:shape[0]], expected)
    assert (out[shape[0]:] == -7).all()  # rows past the batch untouched


def test_argmax_writer_takes_the_first_of_equal_maxima_like_argmax_classes():
    outputs = np.zeros((2, 10), np.float32)
    outputs[:, [3, 7]] = 5
    for rows in (outputs[:1], outputs):
        np.testing.assert_array_equal(written(argmax_writer(), rows), argmax_classes(rows))


def info(classes: int, shape=(224, 224, 3)) -> ModelInfo:
    return ModelInfo(inputs=(TensorSpec("x", shape, np.uint8, "NHWC"),),
                     outputs=(TensorSpec("y", (classes,), np.float32),))


@pytest.mark.parametrize("dataset,model", [
    (ImageNet(None), info(1001)), (ImageNet(None), info(1000)), (SpeechCommands(None), info(12, (49, 10, 1)))])
@pytest.mark.parametrize("n", [1, 7])
def test_dataset_response_writers_equal_their_postprocess(dataset, model, n):
    outputs = np.random.default_rng(n).random((n, model.output.shape[0])).astype(np.float32)
    writer = dataset.response_writer(model)
    np.testing.assert_array_equal(written(writer, outputs), dataset.postprocess(outputs, model))
