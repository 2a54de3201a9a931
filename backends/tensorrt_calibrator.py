"""INT8 calibration for TensorRT: an ``IInt8EntropyCalibrator2`` fed from NumPy batches.

How the harness gives calibration data (either way):

* ``TensorRTBackend.set_calibration_data(batches)`` before ``load``, or
* ``BackendOptions.extra["calibration_batches"]``.

``batches`` is an iterable of ``np.ndarray`` shaped ``(n, *input_shape)`` with
the model input's dtype (already preprocessed, exactly what ``predict`` gets),
or a zero-argument callable returning such an iterable (so a generator can be
restarted). ``n`` may vary: TensorRT reads batches of the calibration
profile's OPT size, so the samples are regrouped into batches of that size
(fewer samples left at the end are not used, with a warning).

The calibration table TensorRT writes is kept at ``calibration_cache`` (a path,
by default ``<engine cache>/<model sha256 prefix>.calib``) and read back on the
next build, so calibration runs once per model; delete the file to recalibrate
with other data. With a table present no batches are needed.

TensorRT 10.1 deprecates implicit (calibrated) INT8 in favour of explicit QDQ
models and 11 removes it: the backend's default int8 path for a float model
is a Q/DQ copy made by :mod:`backends.int8_calibration`; this calibrator is
used only with ``calibrator = "entropy"`` on TensorRT 8.x-10.x. UNTESTED ON A
REAL GPU (tests use a fake ``tensorrt`` module checked against the real
bindings).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Union

import numpy as np

from sut.errors import ConfigError

log = logging.getLogger(__name__)

Batches = Union[Iterable[np.ndarray], Callable[[], Iterable[np.ndarray]]]  # not "|": Python 3.8


def _iterate(batches: Batches) -> Iterator[np.ndarray]:
    if callable(batches):
        batches = batches()
    return iter(batches)


def read_cache(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return data or None


def write_cache(path: Path, data: bytes) -> None:
    """Write atomically: a half-written table must never be read back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _Regroup:
    """Samples from batches of any size, handed out in batches of exactly ``size``."""

    def __init__(self, batches: Batches | None, size: int, dtype: np.dtype, shape: tuple, input_name: str):
        self.size, self.dtype, self.shape, self.input_name = size, dtype, tuple(shape), input_name
        self._iter = _iterate(batches) if batches is not None else iter(())
        self._pending: list[np.ndarray] = []
        self._count = 0
        self.dropped = 0

    def _check(self, batch) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.dtype != self.dtype:
            raise ConfigError(
                f"calibration batch has dtype {batch.dtype}, the model input '{self.input_name}' "
                f"needs {self.dtype}: give preprocessed samples"
            )
        if batch.shape[1:] != self.shape:
            raise ConfigError(f"calibration batch shape {batch.shape} does not match the model input "
                              f"'{self.input_name}' (n, {', '.join(map(str, self.shape))})")
        return batch

    def next(self) -> np.ndarray | None:
        """The next ``size`` samples as one contiguous array, or None when fewer are left."""
        while self._count < self.size:
            batch = next(self._iter, None)
            if batch is None:
                self.dropped = self._count
                return None
            batch = self._check(batch)
            if len(batch):
                self._pending.append(batch)
                self._count += len(batch)
        joined = self._pending[0] if len(self._pending) == 1 else np.concatenate(self._pending)
        out, rest = joined[:self.size], joined[self.size:]
        self._pending, self._count = ([rest] if len(rest) else []), len(rest)
        return np.ascontiguousarray(out)


def make_calibrator(trt, cuda, batches: Batches | None, input_name: str, input_dtype, input_shape,
                    batch_size: int, cache_path: Path, stream=None) -> Any:
    """An ``trt.IInt8EntropyCalibrator2`` instance reading ``batches`` and ``cache_path``.

    ``batch_size`` is the batch TensorRT reads at the pointer :meth:`get_batch`
    returns: the calibration profile's OPT batch for a dynamic-batch model
    (TensorRT calibrates at the OPT shape, whatever ``get_batch_size`` says),
    the fixed batch otherwise. Samples from ``batches`` of any size are
    regrouped into batches of exactly that size; the device buffer holds one.
    ``input_shape`` is one sample's shape. ``cuda`` is a
    :class:`backends.cuda_memory.Cuda`. The class is made here because its base
    class comes from the ``tensorrt`` module imported at run time (TensorRT
    8.x-10.x: 11 has no calibrators).
    """
    dtype = np.dtype(input_dtype)
    batch_size = max(1, int(batch_size))
    nbytes = batch_size * int(np.prod(input_shape, dtype=np.int64)) * dtype.itemsize

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache_path = Path(cache_path)
            self.batches_used = 0
            self._own_stream = stream is None
            self._stream = cuda.stream_create() if stream is None else stream
            self._device_ptr = cuda.malloc(nbytes)
            self._source = _Regroup(batches, batch_size, dtype, input_shape, input_name)
            self.error: Exception | None = None  # raised by the backend after the build (TensorRT swallows it)

        # --- TensorRT's calibrator interface ---------------------------------------
        def get_batch_size(self):
            return batch_size

        def get_batch(self, names):
            try:
                batch = self._source.next()
            except Exception as exc:  # noqa: BLE001 - kept for the backend: TensorRT would only log it
                self.error = exc
                return None
            if batch is None:
                if self._source.dropped:
                    log.warning("tensorrt: %d calibration samples left over (batches of %d): not used",
                                self._source.dropped, batch_size)
                if not self.batches_used:
                    log.error("tensorrt: no calibration batch of %d samples: give at least %d samples",
                              batch_size, batch_size)
                return None
            cuda.copy_to_device(self._device_ptr, batch, self._stream)
            self.batches_used += 1
            return [self._device_ptr if name == input_name else 0 for name in names]

        def read_calibration_cache(self):
            data = read_cache(self.cache_path)
            if data is not None:
                log.info("tensorrt: using INT8 calibration table %s", self.cache_path)
            return data

        def write_calibration_cache(self, cache):
            if self.error is not None or not self.batches_used:
                return  # a table from bad or no data must not be reused
            write_cache(self.cache_path, bytes(cache))
            log.info("tensorrt: wrote INT8 calibration table %s (%d batches of %d)",
                     self.cache_path, self.batches_used, batch_size)

        # --- ours (not TensorRT's): underscore names, or release ------------------------
        def release(self):
            """Free the device buffer (and the stream made here) once the build is over."""
            if self._device_ptr is not None:
                cuda.free(self._device_ptr)
                self._device_ptr = None
            if self._own_stream and self._stream is not None:
                cuda.stream_destroy(self._stream)
                self._stream = None

    return EntropyCalibrator()
