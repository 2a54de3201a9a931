"""Fake ``tensorrt`` and cuda-python runtime modules, for testing without a GPU.

They follow the real modules' Python API closely enough for the backend to
run unchanged, and record what the backend passes (flags, profiles, tensor
addresses, copies) so tests can check it.

**Version-aware.** ``FakeTrtState(version=...)`` picks the API of that
TensorRT: 8.4 (bindings API only), 8.5/8.6 (named tensors and bindings),
10.x (named tensors only; ``STRONGLY_TYPED`` flag), 11.x (networks always
strongly typed: no ``BuilderFlag.FP16/INT8``, no calibrators, no
``int8_calibrator`` / ``set_calibration_profile``, no ``EXPLICIT_BATCH``).
A name the claimed version lacks is absent here too, and enum values are the
real ones. ``tests/backends/test_tensorrt_real_api.py`` checks both against
the real bindings of 8.6, 10.3, 10.16 and 11.4, and checks that every
attribute our code looked up on the fake (see :class:`Recorder`) exists in the
real module of that version.

"Device" memory is ordinary host memory from ctypes, so copies are real.
The parser reads the ONNX file with the ``onnx`` package; an "engine" is a
JSON header plus the ONNX bytes, and executing it runs the model with
ONNX Runtime on the bytes found at the bound addresses. So a wrong offset,
shape or copy in the backend shows up as a wrong answer. The current CUDA
device is per thread, as in CUDA: a stream, copy or execution on a thread
whose current device is not the one the buffers and engine live on fails.

Install with :func:`install`, which puts both into ``sys.modules`` through
pytest's ``monkeypatch``.
"""

from __future__ import annotations

import ctypes
import json
import sys
import threading
import types

import numpy as np

# ------------------------------------------------------------------------------------------
# recording what our code reaches


def _ours(frame) -> bool:
    name = frame.f_globals.get("__name__", "") if frame is not None else ""
    return name == "backends" or name.startswith("backends.")


class Recorder:
    """``(owner, attribute)`` pairs that code in ``backends.*`` looked up or set on a fake module.

    ``owner`` is ``""`` for the module itself, else the real class/enum name
    (``"IBuilderConfig"``, ``"BuilderFlag"``). Only successful lookups are
    recorded: a ``hasattr`` probe that finds nothing is how version
    differences are meant to be handled.
    """

    def __init__(self):
        self.reached: set[tuple[str, str]] = set()
        self.classes: list[type] = []
        self.objects: list[object] = []

    def note(self, owner: str, name: str) -> None:
        self.reached.add((owner, name))


class _TracedMeta(type):
    """Records class-level lookups (``trt.Logger.WARNING``, ``trt.BuilderFlag.FP16``)."""

    def __getattribute__(cls, name):
        value = type.__getattribute__(cls, name)
        if name[:1] != "_" and _ours(sys._getframe(1)):
            type.__getattribute__(cls, "_recorder").note(type.__getattribute__(cls, "_api_name"), name)
        return value

    def __getitem__(cls, name):  # enums: DataType["FLOAT"]
        return type.__getattribute__(cls, "__members__")[name]

    def __iter__(cls):
        return iter(type.__getattribute__(cls, "__members__").values())


def _traced_base(recorder: Recorder) -> type:
    """A fresh base class whose subclasses and instances report to ``recorder``."""

    class Traced(metaclass=_TracedMeta):
        _recorder = recorder
        _api_name = "Traced"

        def __init_subclass__(cls, **kwargs):
            super().__init_subclass__(**kwargs)
            if "_api_name" not in cls.__dict__:
                cls._api_name = cls.__name__
            recorder.classes.append(cls)

        def __new__(cls, *args, **kwargs):
            obj = object.__new__(cls)
            recorder.objects.append(obj)
            return obj

        def __getattribute__(self, name):
            value = object.__getattribute__(self, name)
            if name[:1] != "_" and _ours(sys._getframe(1)):
                recorder.note(type(self)._api_name, name)
            return value

        def __setattr__(self, name, value):
            if name[:1] != "_" and _ours(sys._getframe(1)):
                recorder.note(type(self)._api_name, name)
            object.__setattr__(self, name, value)

    return Traced


class _TracedModule(types.ModuleType):
    def __getattribute__(self, name):
        value = types.ModuleType.__getattribute__(self, name)
        if name[:1] != "_" and _ours(sys._getframe(1)):
            types.ModuleType.__getattribute__(self, "_recorder").note("", name)
        return value


class EnumMember:
    """A member of a fake pybind11-style enum: ``int()``-able, hashable, with ``name``/``value``."""

    __slots__ = ("enum", "name", "value")

    def __init__(self, enum: str, name: str, value: int):
        self.enum, self.name, self.value = enum, name, value

    def __int__(self):
        return self.value

    __index__ = __int__

    def __eq__(self, other):
        return isinstance(other, EnumMember) and (other.enum, other.value) == (self.enum, self.value)

    def __hash__(self):
        return hash((self.enum, self.value))

    def __repr__(self):
        return f"<{self.enum}.{self.name}: {self.value}>"


def _enum(base: type, name: str, members: dict[str, int]) -> type:
    """An enum class: members are class attributes (traced), ``__members__`` lists them."""
    values = {k: EnumMember(name.split(".")[-1], k, v) for k, v in members.items()}
    return _TracedMeta(name.split(".")[-1], (base,), {**values, "__members__": values, "_api_name": name})


# ------------------------------------------------------------------------------------------
# cuda-python runtime


class FakeCudaState:
    """One fake machine. ``driver``/``runtime``: CUDA versions as cudaDriverGetVersion reports (12080 = 12.8);
    ``driver=0``: no driver installed (cudaGetDeviceCount then fails with cudaErrorInsufficientDriver)."""

    def __init__(self, devices=1, name="Fake GPU A100", capability=(8, 0), count_error=0,
                 driver=12080, runtime=12090, version="12.9.10"):
        self.devices = devices
        self.name = name
        self.capability = capability
        self.count_error = count_error
        self.driver = driver
        self.runtime = runtime
        self.version = version
        self.device_mem: dict[int, ctypes.Array] = {}
        self.host_mem: dict[int, ctypes.Array] = {}
        self.mem_device: dict[int, int] = {}  # device allocation -> device it was made on
        self.streams: dict[int, int] = {}  # stream handle -> device
        self.copies: list[tuple[str, int]] = []  # (kind, bytes)
        self.calls: list[str] = []
        self.set_device_calls: list[tuple[str, int]] = []  # (thread name, device)
        self.errors: list[str] = []
        self.recorder = Recorder()
        self._local = threading.local()
        self._lock = threading.Lock()

    @property
    def current_device(self) -> int:
        """The calling thread's current device (0 until the thread calls cudaSetDevice, as in CUDA)."""
        return getattr(self._local, "device", 0)

    def buffer_at(self, ptr: int, nbytes: int) -> np.ndarray:
        """A uint8 view of ``nbytes`` of fake device memory at ``ptr`` (must be allocated)."""
        for base, buf in list(self.device_mem.items()):
            if base <= ptr and ptr + nbytes <= base + ctypes.sizeof(buf):
                return np.frombuffer((ctypes.c_ubyte * nbytes).from_address(ptr), np.uint8)
        raise AssertionError(f"address {ptr:#x} (+{nbytes}) is not fake device memory")

    def device_of(self, ptr: int) -> int:
        for base, buf in list(self.device_mem.items()):
            if base <= ptr < base + ctypes.sizeof(buf):
                return self.mem_device[base]
        raise AssertionError(f"address {ptr:#x} is not fake device memory")


#: cudaError_t values used here (the real enum's numbers)
CUDA_ERRORS = {
    "cudaSuccess": 0, "cudaErrorInvalidValue": 1, "cudaErrorMemoryAllocation": 2,
    "cudaErrorInsufficientDriver": 35, "cudaErrorNoDevice": 100, "cudaErrorInvalidDevice": 101,
    "cudaErrorInvalidResourceHandle": 400,
}


def make_cudart(state: FakeCudaState) -> types.ModuleType:
    rt = _TracedModule("cuda.bindings.runtime")
    rt._recorder = state.recorder
    Base = _traced_base(state.recorder)

    cudaError_t = _enum(Base, "cudaError_t", CUDA_ERRORS)
    cudaMemcpyKind = _enum(Base, "cudaMemcpyKind", {"cudaMemcpyHostToHost": 0, "cudaMemcpyHostToDevice": 1,
                                                    "cudaMemcpyDeviceToHost": 2})
    E = cudaError_t
    ok = E.cudaSuccess

    class cudaStream_t(Base):
        def __init__(self, handle):
            self._handle = handle

        def __int__(self):
            return self._handle

    class cudaDeviceProp(Base):
        def __init__(self):
            self.name = state.name.encode() + b"\0" * 8
            self.major, self.minor = state.capability

    def log(name):
        state.calls.append(name)

    def usable():
        return state.driver > 0 and state.driver // 1000 >= state.runtime // 1000

    def cudaDriverGetVersion():
        return ok, state.driver

    def cudaRuntimeGetVersion():
        return ok, state.runtime

    def cudaGetDeviceCount():
        log("cudaGetDeviceCount")
        if not usable():
            return E.cudaErrorInsufficientDriver, 0
        if state.count_error:
            return E[next(k for k, v in CUDA_ERRORS.items() if v == state.count_error)], 0
        return ok, state.devices

    def cudaSetDevice(device):
        log("cudaSetDevice")
        if not usable():
            return (E.cudaErrorInsufficientDriver,)
        if not 0 <= int(device) < state.devices:
            return (E.cudaErrorInvalidDevice,)
        state._local.device = int(device)
        state.set_device_calls.append((threading.current_thread().name, int(device)))
        return (ok,)

    def cudaGetDeviceProperties(device):
        if not 0 <= int(device) < state.devices:
            return E.cudaErrorInvalidDevice, None
        return ok, cudaDeviceProp()

    def cudaGetErrorName(err):
        return ok, next(k for k, v in CUDA_ERRORS.items() if v == int(err)).encode()

    def _alloc(table, nbytes):
        buf = (ctypes.c_ubyte * int(nbytes))()
        with state._lock:
            table[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def cudaMalloc(nbytes):
        log("cudaMalloc")
        ptr = _alloc(state.device_mem, nbytes)
        state.mem_device[ptr] = state.current_device
        return ok, ptr

    def cudaMallocHost(nbytes):
        log("cudaMallocHost")
        return ok, _alloc(state.host_mem, nbytes)

    def cudaFree(ptr):
        log("cudaFree")
        with state._lock:
            if state.device_mem.pop(int(ptr), None) is None:
                return (E.cudaErrorInvalidValue,)
        return (ok,)

    def cudaFreeHost(ptr):
        log("cudaFreeHost")
        with state._lock:
            if state.host_mem.pop(int(ptr), None) is None:
                return (E.cudaErrorInvalidValue,)
        return (ok,)

    def cudaStreamCreate():
        log("cudaStreamCreate")
        with state._lock:
            handle = 0x1000 + len(state.calls)
            state.streams[handle] = state.current_device
        return ok, cudaStream_t(handle)

    def _stream_ok(stream, what):
        device = state.streams.get(int(stream))
        if device is None:
            raise AssertionError(f"{what} on an unknown stream")
        if device != state.current_device:
            state.errors.append(f"{what}: stream of device {device} used while device {state.current_device} "
                                f"is current in thread {threading.current_thread().name}")
            return False
        return True

    def cudaStreamDestroy(stream):
        with state._lock:
            state.streams.pop(int(stream), None)
        return (ok,)

    def cudaStreamSynchronize(stream):
        if not _stream_ok(stream, "cudaStreamSynchronize"):
            return (E.cudaErrorInvalidResourceHandle,)
        return (ok,)

    def cudaMemcpyAsync(dst, src, count, kind, stream):
        if not _stream_ok(stream, "cudaMemcpyAsync"):
            return (E.cudaErrorInvalidResourceHandle,)
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            state.buffer_at(dst, count)
            state.copies.append(("htod", count))
        elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
            state.buffer_at(src, count)
            state.copies.append(("dtoh", count))
        ctypes.memmove(dst, src, count)
        return (ok,)

    for obj in (cudaDriverGetVersion, cudaRuntimeGetVersion, cudaGetDeviceCount, cudaSetDevice,
                cudaGetDeviceProperties, cudaGetErrorName, cudaMalloc, cudaMallocHost, cudaFree, cudaFreeHost,
                cudaStreamCreate, cudaStreamDestroy, cudaStreamSynchronize, cudaMemcpyAsync,
                cudaError_t, cudaMemcpyKind, cudaStream_t, cudaDeviceProp):
        setattr(rt, obj.__name__, obj)
    rt._state = state
    return rt


# ------------------------------------------------------------------------------------------
# tensorrt


def version_tuple(version: str) -> tuple[int, int]:
    parts = (str(version).split(".") + ["0"])[:2]
    return int(parts[0]), int(parts[1])


class FakeTrtState:
    def __init__(self, version="10.3.0", fail_build=False):
        self.version = version
        self.fail_build = fail_build
        self.builds: list[dict] = []  # one record per build_serialized_network call
        self.network_flags: list[int] = []
        self.parsed: list[bytes] = []  # ONNX bytes of every parse, in order
        self.deserialized = 0
        self.calibration_batches = 0
        self.executions: list[dict] = []
        self.runtime_dla_core = None
        self.recorder = Recorder()


def reference_session(model):
    """ONNX Runtime on the CPU computing Q/DQ models as written (quantise, dequantise, float op).

    Basic graph optimisations only: the extended ones fuse Q/DQ into ONNX
    Runtime's int8 kernels, which on x86 CPUs without VNNI saturate 16-bit
    intermediate sums (u8 x s8 pairs) and give other answers than TensorRT,
    which accumulates in int32.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def make_tensorrt(state: FakeTrtState, cuda: FakeCudaState) -> types.ModuleType:
    v = version_tuple(state.version)
    named = v >= (8, 5)  # get_tensor_name, set_tensor_address, execute_async_v3
    bindings = v < (10, 0)  # num_bindings, execute_async_v2 (removed in 10)
    weak = v < (11, 0)  # BuilderFlag.FP16/INT8, calibrators (11: strongly typed networks only)

    trt = _TracedModule("tensorrt")
    trt.__version__ = state.version
    trt._recorder = state.recorder
    trt._state = state
    Base = _traced_base(state.recorder)

    if v >= (11, 0):
        creation_flags = {"STRONGLY_TYPED": 0}  # deprecated: always on
    elif v >= (10, 0):
        creation_flags = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    else:
        creation_flags = {"EXPLICIT_BATCH": 0}
    NetworkDefinitionCreationFlag = _enum(Base, "NetworkDefinitionCreationFlag", creation_flags)
    MemoryPoolType = _enum(Base, "MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1})
    BuilderFlag = _enum(Base, "BuilderFlag", {"FP16": 0, "INT8": 1, "GPU_FALLBACK": 3} if weak
                        else {"GPU_FALLBACK": 3})
    DeviceType = _enum(Base, "DeviceType", {"GPU": 0, "DLA": 1})
    LayerType = _enum(Base, "LayerType", {"CONVOLUTION": 0, "ELEMENTWISE": 9, "MATRIX_MULTIPLY": 17,
                                          "QUANTIZE": 33 if v < (10, 0) else 32,
                                          "DEQUANTIZE": 34 if v < (10, 0) else 33})
    TensorIOMode = _enum(Base, "TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    DataType = _enum(Base, "DataType", {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "UINT8": 5})
    Severity = _enum(Base, "Logger.Severity", {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3,
                                               "VERBOSE": 4})

    np_of = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
             DataType.INT32: np.int32, DataType.UINT8: np.uint8}
    onnx_elem = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 2: DataType.UINT8}

    def nptype(dt):
        return np_of[dt]

    class Logger(Base):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (Severity.INTERNAL_ERROR, Severity.ERROR,
                                                         Severity.WARNING, Severity.INFO, Severity.VERBOSE)

        def __init__(self, min_severity=Severity.WARNING):
            assert isinstance(min_severity, EnumMember), min_severity
            self.min_severity = min_severity

    class ITensor(Base):
        def __init__(self, name, shape, dtype):
            self.name, self.shape, self.dtype = name, tuple(shape), dtype

    class ILayer(Base):
        def __init__(self, kind):
            self.type = kind

    class INetworkDefinition(Base):
        def __init__(self, flags):
            self._flags = flags
            self._inputs, self._outputs, self._layers, self._onnx = [], [], [], b""
            self._strongly_typed = not weak or bool(
                flags & (1 << int(creation_flags.get("STRONGLY_TYPED", 99))))
            self._weights: set[str] = set()

        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))
        num_layers = property(lambda self: len(self._layers))

        def get_input(self, i):
            return self._inputs[i]

        def get_output(self, i):
            return self._outputs[i]

        def get_layer(self, i):
            return self._layers[i]

    class ParserError(Base):
        def __init__(self, text):
            self._text = text

        def desc(self):
            return self._text

        def __str__(self):
            return f"In node -1 (parse): {self._text}"

    class OnnxParser(Base):
        def __init__(self, network, logger):
            self._network, self._errors = network, []

        num_errors = property(lambda self: len(self._errors))

        def get_error(self, i):
            return self._errors[i]

        def parse(self, data):
            import onnx

            try:
                model = onnx.load_from_string(bytes(data))
                onnx.checker.check_model(model)
            except Exception as exc:  # noqa: BLE001
                self._errors.append(ParserError(f"cannot read ONNX: {type(exc).__name__}"))
                return False
            state.parsed.append(bytes(data))
            net = self._network
            net._onnx = bytes(data)
            initializers = {i.name for i in model.graph.initializer}

            def dims(value):
                return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]

            for value in model.graph.input:
                if value.name not in initializers:
                    net._inputs.append(ITensor(value.name, dims(value), onnx_elem[value.type.tensor_type.elem_type]))
            for value in model.graph.output:
                net._outputs.append(ITensor(value.name, dims(value), onnx_elem[value.type.tensor_type.elem_type]))
            kinds = {"QuantizeLinear": LayerType.QUANTIZE, "DequantizeLinear": LayerType.DEQUANTIZE,
                     "Conv": LayerType.CONVOLUTION, "MatMul": LayerType.MATRIX_MULTIPLY}
            net._layers = [ILayer(kinds.get(n.op_type, LayerType.ELEMENTWISE)) for n in model.graph.node]
            net._weights = {onnx_elem[i.data_type].name for i in model.graph.initializer
                            if i.data_type in (1, 10) and len(i.dims) >= 2}
            return True

    class IOptimizationProfile(Base):
        def __init__(self):
            self._shapes = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 - TensorRT's keyword names
            assert all(a <= b <= c for a, b, c in zip(min, opt, max)), (min, opt, max)
            self._shapes[input] = (tuple(min), tuple(opt), tuple(max))

    class IBuilderConfig(Base):
        def __init__(self):
            self._flags, self._pools, self._profiles = set(), {}, []
            self._calibration_profile = None
            self.default_device_type = DeviceType.GPU
            self.DLA_core = -1

        def set_flag(self, flag):
            assert isinstance(flag, EnumMember) and flag.enum == "BuilderFlag", flag
            self._flags.add(flag)

        def set_memory_pool_limit(self, pool, pool_size):
            self._pools[pool] = pool_size

        def add_optimization_profile(self, profile):
            self._profiles.append(profile)
            return len(self._profiles) - 1

        if weak:
            int8_calibrator = None  # a property of the real class

            def set_calibration_profile(self, profile):
                self._calibration_profile = profile
                return True

    class IHostMemory(Base):
        def __init__(self, data):
            self._data = data
            self.nbytes = len(data)

        def __buffer__(self, flags):
            return memoryview(self._data)

        def __bytes__(self):
            return self._data

    class Builder(Base):
        def __init__(self, logger):
            self._logger = logger
            self.num_DLA_cores = 2

        def create_network(self, flags=0):
            valid = 0
            for value in creation_flags.values():
                valid |= 1 << value
            assert flags & ~valid == 0, f"network creation flags {flags:#x} not in this TensorRT {state.version}"
            state.network_flags.append(flags)
            return INetworkDefinition(flags)

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def build_serialized_network(self, network, config):
            calib = getattr(config, "int8_calibrator", None)
            record = {
                "flags": {f.name for f in config._flags},
                "strongly_typed": network._strongly_typed,
                "weights": set(network._weights),
                "qdq": any(layer.type in (LayerType.QUANTIZE, LayerType.DEQUANTIZE) for layer in network._layers),
                "workspace": config._pools.get(MemoryPoolType.WORKSPACE),
                "device": config.default_device_type.name,
                "dla_core": config.DLA_core,
                "profiles": [p._shapes for p in config._profiles],
                "calibrator": calib is not None,
                "calibration_batches": 0,
            }
            state.builds.append(record)
            if state.fail_build:
                return None
            if network._strongly_typed and record["flags"] & {"FP16", "INT8"}:
                return None  # TensorRT 10: precision flags are an error on a strongly typed network
            dynamic = any(d < 0 for t in network._inputs for d in t.shape)
            if dynamic and not config._profiles:
                return None  # TensorRT: "Network has dynamic or shape inputs, but no optimization profile"
            if calib is not None:
                assert getattr(calib, "_base_init", False), "calibrator did not call the base __init__"
                table = calib.read_calibration_cache()
                if table is None:
                    table = self._calibrate(network, config, calib, record)
                    if not record["calibration_batches"]:
                        return None  # TensorRT: calibration failed (no batches)
                    calib.write_calibration_cache(table)
                record["table"] = bytes(table)
            header = {
                "version": state.version,
                "inputs": [(t.name, list(t.shape), t.dtype.name) for t in network._inputs],
                "outputs": [(t.name, list(t.shape), t.dtype.name) for t in network._outputs],
                "profiles": [{k: [list(s) for s in v] for k, v in p._shapes.items()} for p in config._profiles],
                "flags": sorted(record["flags"]),
            }
            blob = json.dumps(header).encode()
            return IHostMemory(b"FAKETRT\0" + len(blob).to_bytes(4, "little") + blob + network._onnx)

        @staticmethod
        def _calibrate(network, config, calib, record):
            """Like TensorRT: batches of the calibration profile's OPT shape are read at the pointers given."""
            tensor = network._inputs[0]
            if config._profiles:
                profile = config._calibration_profile or config._profiles[0]
                shape = profile._shapes[tensor.name][1]
            else:
                shape = tensor.shape
            record["calibration_shape"] = tuple(shape)
            dtype = np.dtype(np_of[tensor.dtype])
            nbytes = int(np.prod(shape)) * dtype.itemsize
            calib.get_batch_size()
            peak = 0.0
            while True:
                ptrs = calib.get_batch([tensor.name])
                if ptrs is None:
                    break
                data = cuda.buffer_at(int(ptrs[0]), nbytes).view(dtype)  # fails past the allocation
                peak = max(peak, float(np.abs(data).max()))
                record["calibration_batches"] += 1
                state.calibration_batches += 1
            return f"TRT-{state.version}-EntropyCalibration2\n{tensor.name}: {peak:.6f}\n".encode()

    class ICudaEngine(Base):
        def __init__(self, header, onnx_bytes):
            self._header = header
            self._device = cuda.current_device
            self._session = reference_session(onnx_bytes)
            self._io = [(n, tuple(s), DataType[d], TensorIOMode.INPUT) for n, s, d in header["inputs"]]
            self._io += [(n, tuple(s), DataType[d], TensorIOMode.OUTPUT) for n, s, d in header["outputs"]]
            self._contexts = []

        num_optimization_profiles = property(lambda self: max(1, len(self._header["profiles"])))

        def _profile(self, name, index):
            return [tuple(s) for s in self._header["profiles"][index][name]]

        def create_execution_context(self):
            context = IExecutionContext(self)
            self._contexts.append(context)
            return context

        def _find(self, name):
            return next(t for t in self._io if t[0] == name)

        if named:
            num_io_tensors = property(lambda self: len(self._io))

            def get_tensor_name(self, index):
                return self._io[index][0]

            def get_tensor_mode(self, name):
                return self._find(name)[3]

            def get_tensor_shape(self, name):
                return self._find(name)[1]

            def get_tensor_dtype(self, name):
                return self._find(name)[2]

            def get_tensor_profile_shape(self, name, profile_index):
                return self._profile(name, profile_index)

        if bindings:  # one set of bindings per optimisation profile
            num_bindings = property(lambda self: len(self._io) * self.num_optimization_profiles)

            def _binding(self, i):
                return self._io[i % len(self._io)]

            def get_binding_name(self, index):
                name = self._binding(index)[0]
                k = index // len(self._io)
                return name if k == 0 else f"{name} [profile {k}]"

            def binding_is_input(self, index):
                return self._binding(index)[3] == TensorIOMode.INPUT

            def get_binding_shape(self, index):
                return self._binding(index)[1]

            def get_binding_dtype(self, index):
                return self._binding(index)[2]

            def get_profile_shape(self, profile_index, binding):
                return self._profile(self._binding(binding)[0], profile_index)

    class IExecutionContext(Base):
        def __init__(self, engine):
            self._engine = engine
            self._addresses, self._shapes = {}, {}
            self._profile = 0
            self._profile_calls = []

        def set_optimization_profile_async(self, profile_index, stream_handle):
            assert isinstance(stream_handle, int)
            self._profile = profile_index
            self._profile_calls.append(profile_index)
            return True

        if named:
            def set_tensor_address(self, name, memory):
                assert isinstance(memory, int)
                self._addresses[name] = memory
                return True

            def set_input_shape(self, name, shape):
                self._shapes[name] = tuple(shape)
                return True

            def execute_async_v3(self, stream_handle):
                return self._run(stream_handle, self._addresses, "v3")

        if bindings:
            def set_binding_shape(self, binding, shape):
                per = len(self._engine._io)
                assert binding // per == self._profile, f"binding {binding} is not in profile {self._profile}"
                self._shapes[self._engine._io[binding % per][0]] = tuple(shape)
                return True

            def execute_async_v2(self, bindings, stream_handle):
                per = len(self._engine._io)
                assert len(bindings) == self._engine.num_bindings
                addresses = {t[0]: bindings[self._profile * per + i] for i, t in enumerate(self._engine._io)}
                return self._run(stream_handle, addresses, "v2")

        def _run(self, stream_handle, addresses, api):
            assert isinstance(stream_handle, int) and stream_handle in cuda.streams, "bad stream handle"
            engine = self._engine
            if cuda.current_device != engine._device or cuda.streams[stream_handle] != engine._device:
                cuda.errors.append(f"execute on device {cuda.current_device} (thread "
                                   f"{threading.current_thread().name}), engine on device {engine._device}")
                return False  # TensorRT logs the CUDA error and returns False
            feeds, outs = {}, []
            for name, shape, dt, mode in engine._io:
                if mode == TensorIOMode.INPUT:
                    if shape[0] < 0:
                        assert name in self._shapes, f"input shape of {name} not set"
                        shape = self._shapes[name]
                        lo, _, hi = engine._profile(name, self._profile)
                        assert lo[0] <= shape[0] <= hi[0], f"batch {shape[0]} outside profile {lo[0]}..{hi[0]}"
                    dtype = np.dtype(np_of[dt])
                    nbytes = int(np.prod(shape)) * dtype.itemsize
                    feeds[name] = cuda.buffer_at(addresses[name], nbytes).view(dtype).reshape(shape).copy()
                else:
                    outs.append((name, dt))
            results = engine._session.run([n for n, _ in outs], feeds)
            for (name, dt), value in zip(outs, results):
                raw = np.ascontiguousarray(value, np_of[dt]).view(np.uint8).reshape(-1)
                cuda.buffer_at(addresses[name], raw.nbytes)[:] = raw
            state.executions.append({"api": api, "context": id(self), "profile": self._profile,
                                     "batch": len(next(iter(feeds.values()))),
                                     "thread": threading.current_thread().name})
            return True

    class Runtime(Base):
        def __init__(self, logger):
            self.DLA_core = -1

        def deserialize_cuda_engine(self, serialized_engine):
            data = bytes(serialized_engine)
            if not data.startswith(b"FAKETRT\0"):
                return None  # real TensorRT logs an error and returns None
            size = int.from_bytes(data[8:12], "little")
            header = json.loads(data[12:12 + size])
            if header["version"] != state.version:
                return None  # engines are tied to the TensorRT version
            state.deserialized += 1
            state.runtime_dla_core = self.DLA_core
            return ICudaEngine(header, data[12 + size:])

    exported = [Logger, NetworkDefinitionCreationFlag, MemoryPoolType, BuilderFlag, DeviceType, LayerType,
                TensorIOMode, DataType, OnnxParser, ParserError, Builder, Runtime, IBuilderConfig,
                INetworkDefinition, ITensor, ILayer, IOptimizationProfile, ICudaEngine, IExecutionContext,
                IHostMemory, nptype]
    if weak:
        class IInt8EntropyCalibrator2:  # subclassed by our code: not traced (its attributes are ours)
            def __init__(self):
                self._base_init = True

        exported.append(IInt8EntropyCalibrator2)
    for obj in exported:
        setattr(trt, obj.__name__, obj)
    return trt


def install(monkeypatch, trt_state: FakeTrtState | None = None, cuda_state: FakeCudaState | None = None,
            with_tensorrt: bool = True):
    """Put fake ``tensorrt`` and ``cuda.bindings.runtime`` into sys.modules; return both states."""
    trt_state = trt_state or FakeTrtState()
    cuda_state = cuda_state or FakeCudaState()
    runtime = make_cudart(cuda_state)
    cuda_pkg = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.__version__ = cuda_state.version
    bindings.runtime = runtime
    cuda_pkg.bindings = bindings
    monkeypatch.setitem(sys.modules, "cuda", cuda_pkg)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", runtime)
    if with_tensorrt:
        monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt(trt_state, cuda_state))
    else:
        monkeypatch.setitem(sys.modules, "tensorrt", None)  # import raises ImportError
    return trt_state, cuda_state
