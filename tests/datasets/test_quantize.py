"""quantize / quantize_truncate: known values, rounding, clipping, float casts."""

from __future__ import annotations

import numpy as np
import pytest

from backends.base import TensorSpec
from datasets.quantize import quantize, quantize_truncate


def spec(dtype, scale=None, zero_point=None):
    return TensorSpec("x", (4,), dtype, None, scale, zero_point)


def test_uint8_mobilenet_known_values():
    # scale 1/128, zero point 128: -1 -> 0, 0 -> 128, 1 - 2**-7 -> 255, 1 -> 256 clipped to 255
    x = np.array([-1.0, 0.0, 127 / 128, 1.0], np.float32)
    q = quantize(x, spec(np.uint8, 0.0078125, 128))
    assert q.dtype == np.uint8 and q.tolist() == [0, 128, 255, 255]


def test_mobilenet_pixels_map_close_to_raw_values():
    pixels = np.arange(256, dtype=np.float32)
    q = quantize(pixels / np.float32(255) * np.float32(2) - np.float32(1), spec(np.uint8, 0.0078125, 128))
    # 256 * p / 255 rounded, clipped at 255
    np.testing.assert_array_equal(q, np.minimum(np.round(pixels * 256 / 255), 255).astype(np.uint8))


def test_round_half_to_even():
    q = quantize(np.array([0.5, 1.5, 2.5, -0.5], np.float32), spec(np.int8, 1.0, 0))
    assert q.tolist() == [0, 2, 2, 0]


def test_int8_clipping_and_zero_point():
    q = quantize(np.array([-1000.0, -1.0, 1.0, 1000.0], np.float32), spec(np.int8, 0.5, -3))
    assert q.dtype == np.int8 and q.tolist() == [-128, -5, -1, 127]


def test_uint8_clips_below_zero():
    q = quantize(np.array([-5.0, 0.0, 254.6, 300.0], np.float32), spec(np.uint8, 1.0, 0))
    assert q.tolist() == [0, 0, 255, 255]


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_float_is_a_cast(dtype):
    x = np.array([0.1, -123.68, 65504.0, 1e-8], np.float32)
    q = quantize(x, spec(dtype))
    assert q.dtype == dtype
    np.testing.assert_array_equal(q, x.astype(dtype))


def test_fp16_known_values():
    q = quantize(np.array([1 / 3, 151.06, 65504.0], np.float32), spec(np.float16))
    assert q.tolist() == [np.float16(0.3333), np.float16(151.0), 65504.0]


def test_integer_without_parameters_is_an_error():
    with pytest.raises(ValueError, match="quantisation"):
        quantize(np.zeros(4, np.float32), spec(np.uint8))
    with pytest.raises(ValueError, match="quantisation"):
        quantize_truncate(np.zeros(4, np.float32), spec(np.int8))


def test_truncate_is_c_cast_without_clipping():
    q = quantize_truncate(np.array([1.9, -1.9, 0.5, 2.0], np.float32), spec(np.int8, 1.0, 0))
    assert q.tolist() == [1, -1, 0, 2]
    # MLCommons Tiny KWS input parameters
    q = quantize_truncate(np.array([0.0, 10.0], np.float32), spec(np.int8, 0.5847029, 83))
    assert q.tolist() == [83, int(10 / np.float32(0.5847029) + 83)]
