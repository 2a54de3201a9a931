"""INT8 calibration for TensorRT: an ``IInt8EntropyCalibrator2`` fed from NumPy batches.

How the harness gives calibration data (either way):

* ``TensorRTBackend.set_calibration_data(batches)`` before ``load``, or
* ``BackendOptions.extra["calibration_batches"]``.

``batches`` is an iterable of ``np.ndarray`` shaped ``(n, *input_shape)`` with
the model input's dtype (already preprocessed, exactly what ``predict`` gets),
or a zero-argument callable returning such an iterable (so a generator can be
restarted). Every batch must have the same ``n`` (the calibration batch size);
a shorter last batch is dropped with a warning.

The calibration table TensorRT writes is kept at ``calibration_cache`` (a path,
by default ``<engine cache>/<model sha256 prefix>.calib``) and read back on the
next build, so calibration runs once per model; delete the file to recalibrate
with other data. With a table present no batches are needed.

TensorRT 10.1 deprecates implicit (calibrated) INT8 in favour of explicit QDQ
models; both are supported here. UNTESTED ON A REAL GPU (tests use a fake
``tensorrt`` module).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from sut.errors import ConfigError

log = logging.getLogger(__name__)

Batches = Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]]


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


def make_calibrator(trt, cuda, batches: Batches | None, input_name: str, input_dtype,
                    cache_path: Path, stream=None) -> Any:
    """An ``trt.IInt8EntropyCalibrator2`` instance reading ``batches`` and ``cache_path``.

    ``cuda`` is a :class:`backends.cuda_memory.Cuda`. The class is made here
    because its base class comes from the ``tensorrt`` module imported at run time.
    """

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.cache_path = Path(cache_path)
            self.dtype = np.dtype(input_dtype)
            self.batches_used = 0
            self._own_stream = stream is None
            self._stream = cuda.stream_create() if stream is None else stream
            self._device_ptr = None
            self._nbytes = 0
            self._iter = _iterate(batches) if batches is not None else iter(())
            self._first = next(self._iter, None)
            self.batch_size = len(self._first) if self._first is not None else 1

        # --- TensorRT's calibrator interface ---------------------------------------
        def get_batch_size(self):
            return self.batch_size

        def get_batch(self, names):
            batch = self._next_batch()
            if batch is None:
                return None
            if self._device_ptr is None:
                self._nbytes = batch.nbytes
                self._device_ptr = cuda.malloc(self._nbytes)
            cuda.copy_to_device(self._device_ptr, batch, self._stream)
            self.batches_used += 1
            return [self._device_ptr if name == input_name else 0 for name in names]

        def read_calibration_cache(self):
            data = read_cache(self.cache_path)
            if data is not None:
                log.info("tensorrt: using INT8 calibration table %s", self.cache_path)
            return data

        def write_calibration_cache(self, cache):
            write_cache(self.cache_path, bytes(cache))
            log.info("tensorrt: wrote INT8 calibration table %s (%d batches)",
                     self.cache_path, self.batches_used)

        # --- ours ---------------------------------------------------------------
        def _next_batch(self) -> np.ndarray | None:
            if self._first is not None:
                batch, self._first = self._first, None
            else:
                batch = next(self._iter, None)
            if batch is None:
                return None
            batch = np.ascontiguousarray(batch)
            if batch.dtype != self.dtype:
                raise ConfigError(
                    f"calibration batch has dtype {batch.dtype}, the model input '{input_name}' "
                    f"needs {self.dtype}: give preprocessed samples"
                )
            if len(batch) != self.batch_size:
                log.warning("tensorrt: dropping calibration batch of %d samples (batch size is %d)",
                            len(batch), self.batch_size)
                return None
            if self._nbytes and batch.nbytes != self._nbytes:
                raise ConfigError(f"calibration batch shape {batch.shape} differs from the first batch's")
            return batch

        def release(self):
            """Free the device buffer (and the stream made here) once the build is over."""
            if self._device_ptr is not None:
                cuda.free(self._device_ptr)
                self._device_ptr = None
            if self._own_stream and self._stream is not None:
                cuda.stream_destroy(self._stream)
                self._stream = None

    return EntropyCalibrator()
