"""CUDA memory and streams for the TensorRT backend, over cuda-python or PyCUDA.

:func:`open_cuda` returns a :class:`Cuda` object with the few operations the
backend needs (device and page-locked host buffers, streams, async copies),
implemented with whichever binding the platform has:

* cuda-python: ``from cuda.bindings import runtime`` (cuda-python 12.6 and
  later), else ``from cuda import cudart`` (older releases). Every call returns
  a tuple ``(err, value...)``; a non-zero ``err`` becomes :class:`BackendFailure`.
* PyCUDA (``pycuda.driver``), the usual choice on older Jetson images.

No GPU, no driver, a driver older than the bindings (cuda-python 13 needs a
CUDA 13 driver; JetPack 6 and most machines run CUDA 12 drivers) or no binding
raises :class:`BackendUnavailable` in one line.

The current device is per host thread in CUDA: :meth:`Cuda.active` makes the
chosen GPU current in the calling thread (once per thread), and the backend
wraps every load, predict and close in it, so ``--device 1`` works from the
harness's worker threads.

UNTESTED ON A REAL GPU: the tests run this code against a fake runtime module
whose names are checked against the real cuda-python 12 and 13 bindings, and
against the real cuda-python wheel on a machine without a driver (which must
report BackendUnavailable).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading

import numpy as np

from sut.errors import BackendFailure, BackendUnavailable, ConfigError

log = logging.getLogger(__name__)


class HostBuffer:
    """A page-locked host allocation seen as a NumPy array (``array``)."""

    def __init__(self, array: np.ndarray, handle):
        self.array = array
        self.handle = handle  # pointer (cuda-python) or the PyCUDA array itself

    @property
    def nbytes(self) -> int:
        return self.array.nbytes


class Cuda:
    """The CUDA operations the TensorRT backend uses; see the subclasses."""

    binding = ""

    def device_count(self) -> int: ...
    def device_name(self) -> str: ...
    def compute_capability(self) -> tuple[int, int]: ...
    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def host_empty(self, shape, dtype) -> HostBuffer: ...
    def host_free(self, buf: HostBuffer) -> None: ...
    def stream_create(self): ...
    def stream_handle(self, stream) -> int: ...
    def stream_destroy(self, stream) -> None: ...
    def stream_sync(self, stream) -> None: ...
    def copy_to_device_async(self, dst: int, src: np.ndarray, stream) -> None: ...
    def copy_to_host_async(self, dst: np.ndarray, src: int, stream) -> None: ...

    def copy_to_device(self, dst: int, src: np.ndarray, stream) -> None:
        self.copy_to_device_async(dst, src, stream)
        self.stream_sync(stream)

    @contextlib.contextmanager
    def active(self):
        """Make this object's device current in the calling thread for the block."""
        yield


def _import_cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
        return cudart
    except ImportError:
        pass
    try:
        from cuda import cudart  # older cuda-python
        return cudart
    except ImportError:
        return None


def _cuda_version(number: int) -> str:
    """12080 -> '12.8' (the encoding of cudaDriverGetVersion / cudaRuntimeGetVersion)."""
    return f"{number // 1000}.{number % 1000 // 10}"


def _binding_version() -> str:
    for module in ("cuda.bindings", "cuda"):
        try:
            return str(__import__(module, fromlist=["__version__"]).__version__)
        except (ImportError, AttributeError):
            continue
    return "?"


#: (runtime module, device) our code last made current, per host thread (CUDA's current device is per thread)
_current = threading.local()


class CudaPython(Cuda):
    """cuda-python's runtime API (``cudart``)."""

    binding = "cuda-python"

    def __init__(self, cudart, device: int):
        self.rt = cudart
        self.device = device
        self._check_driver()
        count = self.device_count()
        if device >= count:
            raise ConfigError(f"CUDA device {device} does not exist: this machine has {count} "
                              f"(pass --device 0{f' to {count - 1}' if count > 1 else ''})")
        self.make_current()

    def _version(self, name: str) -> int:
        try:
            err, value = getattr(self.rt, name)()
        except Exception:  # noqa: BLE001 - only used to explain a failure
            return -1
        return int(value) if int(err) == 0 else -1

    def _check_driver(self) -> None:
        """BackendUnavailable when there is no driver, or it is older than the bindings' CUDA major."""
        driver, runtime = self._version("cudaDriverGetVersion"), self._version("cudaRuntimeGetVersion")
        if driver <= 0 or runtime <= 0:
            return  # no driver: cudaGetDeviceCount explains it
        if driver // 1000 < runtime // 1000:
            raise BackendUnavailable(self._driver_too_old(driver, runtime))

    def _driver_too_old(self, driver: int, runtime: int) -> str:
        major = driver // 1000
        return (f"the NVIDIA driver supports CUDA {_cuda_version(driver)}, but cuda-python {_binding_version()} "
                f"needs a CUDA {_cuda_version(runtime)} driver: install bindings for CUDA {major} "
                f"(pip install 'cuda-python>={major},<{major + 1}'"
                + (", or pip install -e '.[tensorrt-cu12]'" if major == 12 else "")
                + ") or update the driver")

    def make_current(self) -> None:
        """``cudaSetDevice`` in the calling thread, unless our code already made this device current there."""
        key = (id(self.rt), self.device)
        if getattr(_current, "key", None) != key:
            self._call("cudaSetDevice", self.device)
            _current.key = key

    @contextlib.contextmanager
    def active(self):
        self.make_current()
        yield

    def _call(self, name: str, *args):
        result = getattr(self.rt, name)(*args)
        err = result[0] if isinstance(result, tuple) else result
        if int(err) != 0:
            raise BackendFailure(f"CUDA {name} failed: {self._error_name(err)}")
        if not isinstance(result, tuple) or len(result) == 1:
            return None
        return result[1] if len(result) == 2 else result[1:]

    def _error_name(self, err) -> str:
        try:
            name = self.rt.cudaGetErrorName(err)[1]
            return name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # noqa: BLE001 - the error name is only decoration
            return str(err)

    def device_count(self) -> int:
        err, count = self.rt.cudaGetDeviceCount()
        if int(err) != 0:
            driver, runtime = self._version("cudaDriverGetVersion"), self._version("cudaRuntimeGetVersion")
            if driver > 0 and runtime > 0 and self._error_name(err) == "cudaErrorInsufficientDriver":
                raise BackendUnavailable(self._driver_too_old(driver, runtime))
            what = "no NVIDIA driver" if driver == 0 else "no NVIDIA driver or GPU"
            raise BackendUnavailable(
                f"no usable CUDA GPU: cudaGetDeviceCount failed with {self._error_name(err)} ({what} on this machine)")
        if count == 0:
            raise BackendUnavailable("no CUDA GPU found (cudaGetDeviceCount returned 0)")
        return int(count)

    def _properties(self):
        return self._call("cudaGetDeviceProperties", self.device)

    def device_name(self) -> str:
        name = self._properties().name
        if isinstance(name, (bytes, bytearray)):
            name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
        return str(name)

    def compute_capability(self) -> tuple[int, int]:
        props = self._properties()
        return int(props.major), int(props.minor)

    def malloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", max(1, int(nbytes))))

    def free(self, ptr: int) -> None:
        self._call("cudaFree", ptr)

    def host_empty(self, shape, dtype) -> HostBuffer:
        dtype = np.dtype(dtype)
        nbytes = max(1, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        ptr = int(self._call("cudaMallocHost", nbytes))
        raw = (ctypes.c_ubyte * nbytes).from_address(ptr)
        array = np.frombuffer(raw, dtype=np.uint8, count=nbytes)
        array = array[: int(np.prod(shape, dtype=np.int64)) * dtype.itemsize].view(dtype).reshape(shape)
        return HostBuffer(array, ptr)

    def host_free(self, buf: HostBuffer) -> None:
        self._call("cudaFreeHost", buf.handle)

    def stream_create(self):
        return self._call("cudaStreamCreate")

    def stream_handle(self, stream) -> int:
        return int(stream)

    def stream_destroy(self, stream) -> None:
        self._call("cudaStreamDestroy", stream)

    def stream_sync(self, stream) -> None:
        self._call("cudaStreamSynchronize", stream)

    def copy_to_device_async(self, dst: int, src: np.ndarray, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call("cudaMemcpyAsync", dst, src.ctypes.data, src.nbytes, kind, stream)

    def copy_to_host_async(self, dst: np.ndarray, src: int, stream) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call("cudaMemcpyAsync", dst.ctypes.data, src, dst.nbytes, kind, stream)


class PyCuda(Cuda):
    """PyCUDA's driver API, with the device's primary context pushed around each use."""

    binding = "pycuda"

    def __init__(self, driver, device: int):
        self.drv = driver
        try:
            driver.init()
            count = driver.Device.count()
        except Exception as exc:  # pycuda raises its own LogicError/RuntimeError
            raise BackendUnavailable(f"no usable CUDA GPU: {exc}") from exc
        if count == 0:
            raise BackendUnavailable("no CUDA GPU found (pycuda Device.count() is 0)")
        if device >= count:
            raise ConfigError(f"CUDA device {device} does not exist: this machine has {count} "
                              f"(pass --device 0{f' to {count - 1}' if count > 1 else ''})")
        self.dev = driver.Device(device)
        self.ctx = self.dev.retain_primary_context()
        self._local = threading.local()

    @contextlib.contextmanager
    def active(self):
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self.ctx.push()
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth -= 1
            if self._local.depth == 0:
                self.drv.Context.pop()

    def device_count(self) -> int:
        return self.drv.Device.count()

    def device_name(self) -> str:
        return self.dev.name()

    def compute_capability(self) -> tuple[int, int]:
        return tuple(self.dev.compute_capability())

    def malloc(self, nbytes: int) -> int:
        with self.active():
            alloc = self.drv.mem_alloc(max(1, int(nbytes)))
        self._keep = getattr(self, "_keep", {})
        self._keep[int(alloc)] = alloc  # PyCUDA frees when the object dies
        return int(alloc)

    def free(self, ptr: int) -> None:
        alloc = getattr(self, "_keep", {}).pop(ptr, None)
        if alloc is not None:
            with self.active():
                alloc.free()

    def host_empty(self, shape, dtype) -> HostBuffer:
        with self.active():
            array = self.drv.pagelocked_empty(tuple(shape), np.dtype(dtype))
        return HostBuffer(array, array)

    def host_free(self, buf: HostBuffer) -> None:
        buf.array = None

    def stream_create(self):
        with self.active():
            return self.drv.Stream()

    def stream_handle(self, stream) -> int:
        return int(stream.handle)

    def stream_destroy(self, stream) -> None:
        pass

    def stream_sync(self, stream) -> None:
        with self.active():
            stream.synchronize()

    def copy_to_device_async(self, dst: int, src: np.ndarray, stream) -> None:
        with self.active():
            self.drv.memcpy_htod_async(dst, src, stream)

    def copy_to_host_async(self, dst: np.ndarray, src: int, stream) -> None:
        with self.active():
            self.drv.memcpy_dtoh_async(dst, src, stream)


def open_cuda(device: int = 0, backend: str = "tensorrt", prefer: str | None = None) -> Cuda:
    """The first CUDA binding that imports, checked to see a GPU.

    ``prefer`` is ``"cuda-python"``, ``"pycuda"`` or ``None`` (cuda-python first).
    """
    if prefer not in (None, "cuda-python", "pycuda"):
        raise ConfigError(f"unknown CUDA binding '{prefer}'; choose cuda-python or pycuda")
    order = [prefer] if prefer else ["cuda-python", "pycuda"]
    for name in order:
        if name == "cuda-python":
            cudart = _import_cudart()
            if cudart is not None:
                return CudaPython(cudart, device)
        else:
            try:
                import pycuda.driver as driver
            except ImportError:
                continue
            return PyCuda(driver, device)
    raise BackendUnavailable(
        f"backend '{backend}' needs a CUDA binding: neither cuda-python (pip install cuda-python) "
        f"nor pycuda is installed" if not prefer else
        f"backend '{backend}' was asked to use {prefer}, which is not installed"
    )
