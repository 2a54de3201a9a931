"""Turning a float tensor into the model's input dtype (pure functions)."""

from __future__ import annotations

import numpy as np

from backends.base import TensorSpec


def quantize(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float tensor -> ``spec.dtype``.

    Integer inputs use the model's own affine parameters, rounded to nearest
    (half to even) and clipped to the dtype's range:
    ``clip(round(x / scale + zero_point))``. Float inputs are cast.
    """
    dtype = spec.dtype
    if dtype.kind == "f":
        return x.astype(dtype, copy=False)
    if spec.scale is None:
        raise ValueError(f"input '{spec.name}' is {dtype.name} but has no quantisation parameters")
    info = np.iinfo(dtype)
    q = np.round(x / np.float32(spec.scale) + np.float32(spec.zero_point))
    return np.clip(q, info.min, info.max).astype(dtype)


def quantize_truncate(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """``dtype(x / scale + zero_point)`` with C's truncating cast and no clipping.

    This is how MLCommons Tiny made its keyword-spotting reference tensors;
    reproducing them needs the same cast, including its wrap-around: loud
    clips push the first MFCC coefficient past 127 and the official tensors
    hold the wrapped value (e.g. 134 -> -122).
    """
    if spec.dtype.kind == "f":
        return x.astype(spec.dtype, copy=False)
    if spec.scale is None:
        raise ValueError(f"input '{spec.name}' is {spec.dtype.name} but has no quantisation parameters")
    return np.trunc(x / np.float32(spec.scale) + np.float32(spec.zero_point)).astype(np.int64).astype(spec.dtype)
