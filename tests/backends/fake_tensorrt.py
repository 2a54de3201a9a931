"""Fake ``tensorrt`` and cuda-python runtime modules, for testing without a GPU.

They follow the real modules' documented Python API (TensorRT 8.6-10.x,
cuda-python's ``cudart`` with ``(err, value)`` tuples) closely enough for the
backend to run unchanged, and record what the backend passes (flags,
profiles, tensor addresses, copies) so tests can check it.

"Device" memory is ordinary host memory from ctypes, so copies are real.
The parser reads the ONNX file with the ``onnx`` package; an "engine" is a
JSON header plus the ONNX bytes, and executing it runs the model with
ONNX Runtime on the bytes found at the bound addresses. So a wrong offset,
shape or copy in the backend shows up as a wrong answer.

Install with :func:`install`, which puts both into ``sys.modules`` through
pytest's ``monkeypatch``.
"""

from __future__ import annotations

import ctypes
import enum
import json
import sys
import types

import numpy as np

# ------------------------------------------------------------------------------------------
# cuda-python runtime


class FakeCudaState:
    def __init__(self, devices=1, name="Fake GPU A100", capability=(8, 0), count_error=0):
        self.devices = devices
        self.name = name
        self.capability = capability
        self.count_error = count_error
        self.device_mem: dict[int, ctypes.Array] = {}
        self.host_mem: dict[int, ctypes.Array] = {}
        self.streams: set[int] = set()
        self.copies: list[tuple[str, int]] = []  # (kind, bytes)
        self.calls: list[str] = []
        self.current_device = None

    def buffer_at(self, ptr: int, nbytes: int) -> np.ndarray:
        """A uint8 view of ``nbytes`` of fake device memory at ``ptr`` (must be allocated)."""
        for base, buf in self.device_mem.items():
            if base <= ptr and ptr + nbytes <= base + ctypes.sizeof(buf):
                return np.frombuffer((ctypes.c_ubyte * nbytes).from_address(ptr), np.uint8)
        raise AssertionError(f"address {ptr:#x} (+{nbytes}) is not fake device memory")


def make_cudart(state: FakeCudaState) -> types.ModuleType:
    rt = types.ModuleType("cuda.bindings.runtime")

    class cudaError_t(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorInvalidValue = 1
        cudaErrorMemoryAllocation = 2
        cudaErrorInsufficientDriver = 35
        cudaErrorNoDevice = 100

    class cudaMemcpyKind(enum.IntEnum):
        cudaMemcpyHostToHost = 0
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class cudaStream_t:
        def __init__(self, handle):
            self.handle = handle

        def __int__(self):
            return self.handle

    class cudaDeviceProp:
        def __init__(self):
            self.name = state.name.encode() + b"\0" * 8
            self.major, self.minor = state.capability

    ok = cudaError_t.cudaSuccess
    rt.cudaError_t = cudaError_t
    rt.cudaMemcpyKind = cudaMemcpyKind

    def log(name):
        state.calls.append(name)

    def cudaGetDeviceCount():
        log("cudaGetDeviceCount")
        if state.count_error:
            return cudaError_t(state.count_error), 0
        return ok, state.devices

    def cudaSetDevice(device):
        log("cudaSetDevice")
        state.current_device = device
        return (ok,)

    def cudaGetDeviceProperties(device):
        return ok, cudaDeviceProp()

    def cudaGetErrorName(err):
        return ok, cudaError_t(err).name.encode()

    def _alloc(table, nbytes):
        buf = (ctypes.c_ubyte * int(nbytes))()
        table[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def cudaMalloc(nbytes):
        log("cudaMalloc")
        return ok, _alloc(state.device_mem, nbytes)

    def cudaMallocHost(nbytes):
        log("cudaMallocHost")
        return ok, _alloc(state.host_mem, nbytes)

    def cudaFree(ptr):
        log("cudaFree")
        if state.device_mem.pop(int(ptr), None) is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        return (ok,)

    def cudaFreeHost(ptr):
        log("cudaFreeHost")
        if state.host_mem.pop(int(ptr), None) is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        return (ok,)

    def cudaStreamCreate():
        log("cudaStreamCreate")
        handle = 0x1000 + len(state.streams) + 1
        state.streams.add(handle)
        return ok, cudaStream_t(handle)

    def cudaStreamDestroy(stream):
        state.streams.discard(int(stream))
        return (ok,)

    def cudaStreamSynchronize(stream):
        assert int(stream) in state.streams, "synchronising an unknown stream"
        return (ok,)

    def cudaMemcpyAsync(dst, src, count, kind, stream):
        assert int(stream) in state.streams, "copy on an unknown stream"
        if kind == cudaMemcpyKind.cudaMemcpyHostToDevice:
            state.buffer_at(dst, count)
            state.copies.append(("htod", count))
        elif kind == cudaMemcpyKind.cudaMemcpyDeviceToHost:
            state.buffer_at(src, count)
            state.copies.append(("dtoh", count))
        ctypes.memmove(dst, src, count)
        return (ok,)

    for fn in (cudaGetDeviceCount, cudaSetDevice, cudaGetDeviceProperties, cudaGetErrorName, cudaMalloc,
               cudaMallocHost, cudaFree, cudaFreeHost, cudaStreamCreate, cudaStreamDestroy,
               cudaStreamSynchronize, cudaMemcpyAsync):
        setattr(rt, fn.__name__, fn)
    rt.state = state
    return rt


# ------------------------------------------------------------------------------------------
# tensorrt


class FakeTrtState:
    def __init__(self, version="10.3.0", fail_build=False, named_api=True):
        self.version = version
        self.fail_build = fail_build
        self.named_api = named_api
        self.builds: list[dict] = []  # one record per build_serialized_network call
        self.network_flags: list[int] = []
        self.deserialized = 0
        self.calibration_batches = 0
        self.executions: list[dict] = []
        self.runtime_dla_core = None


def make_tensorrt(state: FakeTrtState, cuda: FakeCudaState) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = state.version
    trt.state = state

    class Logger:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, severity=1):
            self.severity = severity

    class NetworkDefinitionCreationFlag(enum.IntEnum):
        EXPLICIT_BATCH = 0
        STRONGLY_TYPED = 5

    class MemoryPoolType(enum.Enum):
        WORKSPACE = 0
        DLA_MANAGED_SRAM = 1

    class BuilderFlag(enum.Enum):
        FP16 = 0
        INT8 = 1
        GPU_FALLBACK = 3

    class DeviceType(enum.Enum):
        GPU = 0
        DLA = 1

    class LayerType(enum.Enum):
        CONVOLUTION = 0
        MATRIX_MULTIPLY = 1
        QUANTIZE = 2
        DEQUANTIZE = 3
        OTHER = 99

    class TensorIOMode(enum.Enum):
        NONE = 0
        INPUT = 1
        OUTPUT = 2

    class DataType(enum.Enum):
        FLOAT = 0
        HALF = 1
        INT8 = 2
        INT32 = 3
        UINT8 = 5

    np_of = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
             DataType.INT32: np.int32, DataType.UINT8: np.uint8}
    onnx_elem = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 2: DataType.UINT8}

    def nptype(dt):
        return np_of[dt]

    class IInt8EntropyCalibrator2:
        def __init__(self):
            self._base_init = True

    class ITensor:
        def __init__(self, name, shape, dtype):
            self.name, self.shape, self.dtype = name, tuple(shape), dtype

    class ILayer:
        def __init__(self, kind):
            self.type = kind

    class INetworkDefinition:
        def __init__(self, flags):
            self.flags = flags
            self.inputs, self.outputs, self.layers, self.onnx = [], [], [], b""

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))
        num_layers = property(lambda self: len(self.layers))

        def get_input(self, i):
            return self.inputs[i]

        def get_output(self, i):
            return self.outputs[i]

        def get_layer(self, i):
            return self.layers[i]

    class ParserError:
        def __init__(self, text):
            self.text = text

        def desc(self):
            return self.text

        def __str__(self):
            return f"In node -1 (parse): {self.text}"

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        num_errors = property(lambda self: len(self.errors))

        def get_error(self, i):
            return self.errors[i]

        def parse(self, data):
            import onnx

            try:
                model = onnx.load_from_string(bytes(data))
                onnx.checker.check_model(model)
            except Exception as exc:  # noqa: BLE001
                self.errors.append(ParserError(f"cannot read ONNX: {type(exc).__name__}"))
                return False
            net = self.network
            net.onnx = bytes(data)
            initializers = {i.name for i in model.graph.initializer}

            def dims(value):
                return [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]

            for v in model.graph.input:
                if v.name not in initializers:
                    net.inputs.append(ITensor(v.name, dims(v), onnx_elem[v.type.tensor_type.elem_type]))
            for v in model.graph.output:
                net.outputs.append(ITensor(v.name, dims(v), onnx_elem[v.type.tensor_type.elem_type]))
            kinds = {"QuantizeLinear": LayerType.QUANTIZE, "DequantizeLinear": LayerType.DEQUANTIZE,
                     "Conv": LayerType.CONVOLUTION, "MatMul": LayerType.MATRIX_MULTIPLY}
            net.layers = [ILayer(kinds.get(n.op_type, LayerType.OTHER)) for n in model.graph.node]
            return True

    class IOptimizationProfile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's keyword names
            assert all(a <= b <= c for a, b, c in zip(min, opt, max)), (min, opt, max)
            self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

    class IBuilderConfig:
        def __init__(self):
            self.flags, self.pools, self.profiles = set(), {}, []
            self.int8_calibrator = None
            self.default_device_type = DeviceType.GPU
            self.DLA_core = -1

        def set_flag(self, flag):
            self.flags.add(flag)

        def set_memory_pool_limit(self, pool, size):
            self.pools[pool] = size

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)
            return len(self.profiles) - 1

    class IHostMemory:
        def __init__(self, data):
            self._data = data
            self.nbytes = len(data)

        def __buffer__(self, flags):
            return memoryview(self._data)

        def __bytes__(self):
            return self._data

    class Builder:
        def __init__(self, logger):
            self.logger = logger
            self.num_DLA_cores = 2

        def create_network(self, flags=0):
            state.network_flags.append(flags)
            return INetworkDefinition(flags)

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def build_serialized_network(self, network, config):
            record = {
                "flags": {f.name for f in config.flags},
                "workspace": config.pools.get(MemoryPoolType.WORKSPACE),
                "device": config.default_device_type.name,
                "dla_core": config.DLA_core,
                "profiles": [p.shapes for p in config.profiles],
                "calibrator": config.int8_calibrator is not None,
                "calibration_batches": 0,
            }
            state.builds.append(record)
            if state.fail_build:
                return None
            dynamic = any(d < 0 for t in network.inputs for d in t.shape)
            if dynamic and not config.profiles:
                return None  # TensorRT: "Network has dynamic or shape inputs, but no optimization profile"
            calib = config.int8_calibrator
            if calib is not None:
                assert getattr(calib, "_base_init", False), "calibrator did not call the base __init__"
                table = calib.read_calibration_cache()
                if table is None:
                    table = self._calibrate(network, calib, record)
                    calib.write_calibration_cache(table)
                record["table"] = bytes(table)
            header = {
                "version": state.version,
                "inputs": [(t.name, list(t.shape), t.dtype.name) for t in network.inputs],
                "outputs": [(t.name, list(t.shape), t.dtype.name) for t in network.outputs],
                "profiles": [{k: [list(s) for s in v] for k, v in p.shapes.items()} for p in config.profiles],
                "flags": sorted(record["flags"]),
            }
            blob = json.dumps(header).encode()
            return IHostMemory(b"FAKETRT\0" + len(blob).to_bytes(4, "little") + blob + network.onnx)

        @staticmethod
        def _calibrate(network, calib, record):
            name = network.inputs[0].name
            per_sample = network.inputs[0].shape[1:]
            dtype = np.dtype(np_of[network.inputs[0].dtype])
            n = calib.get_batch_size()
            peak = 0.0
            while True:
                ptrs = calib.get_batch([name])
                if ptrs is None:
                    break
                nbytes = n * int(np.prod(per_sample)) * dtype.itemsize
                data = cuda.buffer_at(int(ptrs[0]), nbytes).view(dtype)
                peak = max(peak, float(np.abs(data).max()))
                record["calibration_batches"] += 1
                state.calibration_batches += 1
            return f"TRT-{state.version}-EntropyCalibration2\n{name}: {peak:.6f}\n".encode()

    class ICudaEngine:
        def __init__(self, header, onnx_bytes):
            import onnxruntime

            self.header = header
            self.session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            self.io = [(n, tuple(s), DataType[d], TensorIOMode.INPUT) for n, s, d in header["inputs"]]
            self.io += [(n, tuple(s), DataType[d], TensorIOMode.OUTPUT) for n, s, d in header["outputs"]]
            self.contexts = []

        num_optimization_profiles = property(lambda self: max(1, len(self.header["profiles"])))

        def _profile(self, name, index):
            return [tuple(s) for s in self.header["profiles"][index][name]]

        def create_execution_context(self):
            context = IExecutionContext(self)
            self.contexts.append(context)
            return context

    class NamedEngine(ICudaEngine):
        num_io_tensors = property(lambda self: len(self.io))

        def get_tensor_name(self, i):
            return self.io[i][0]

        def _find(self, name):
            return next(t for t in self.io if t[0] == name)

        def get_tensor_mode(self, name):
            return self._find(name)[3]

        def get_tensor_shape(self, name):
            return self._find(name)[1]

        def get_tensor_dtype(self, name):
            return self._find(name)[2]

        def get_tensor_profile_shape(self, name, profile_index):
            return self._profile(name, profile_index)

    class BindingsEngine(ICudaEngine):
        """TensorRT < 8.5: one set of bindings per optimisation profile."""

        num_bindings = property(lambda self: len(self.io) * self.num_optimization_profiles)

        def _binding(self, i):
            return self.io[i % len(self.io)]

        def get_binding_name(self, i):
            name = self._binding(i)[0]
            k = i // len(self.io)
            return name if k == 0 else f"{name} [profile {k}]"

        def binding_is_input(self, i):
            return self._binding(i)[3] == TensorIOMode.INPUT

        def get_binding_shape(self, i):
            return self._binding(i)[1]

        def get_binding_dtype(self, i):
            return self._binding(i)[2]

        def get_profile_shape(self, profile_index, binding):
            return self._profile(self._binding(binding)[0], profile_index)

    class IExecutionContext:
        def __init__(self, engine):
            self.engine = engine
            self.addresses, self.shapes = {}, {}
            self.profile = 0
            self.profile_calls = []

        def set_optimization_profile_async(self, index, stream_handle):
            assert isinstance(stream_handle, int)
            self.profile = index
            self.profile_calls.append(index)
            return True

        # named API
        def set_tensor_address(self, name, ptr):
            assert isinstance(ptr, int)
            self.addresses[name] = ptr
            return True

        def set_input_shape(self, name, shape):
            self.shapes[name] = tuple(shape)
            return True

        def execute_async_v3(self, stream_handle):
            return self._run(stream_handle, self.addresses, "v3")

        # bindings API
        def set_binding_shape(self, index, shape):
            per = len(self.engine.io)
            assert index // per == self.profile, f"binding {index} is not in profile {self.profile}"
            self.shapes[self.engine.io[index % per][0]] = tuple(shape)
            return True

        def execute_async_v2(self, bindings, stream_handle):
            per = len(self.engine.io)
            assert len(bindings) == self.engine.num_bindings
            addresses = {t[0]: bindings[self.profile * per + i] for i, t in enumerate(self.engine.io)}
            return self._run(stream_handle, addresses, "v2")

        def _run(self, stream_handle, addresses, api):
            assert isinstance(stream_handle, int) and stream_handle in cuda.streams, "bad stream handle"
            engine = self.engine
            feeds, outs = {}, []
            for name, shape, dt, mode in engine.io:
                if mode == TensorIOMode.INPUT:
                    if shape[0] < 0:
                        assert name in self.shapes, f"input shape of {name} not set"
                        shape = self.shapes[name]
                        lo, _, hi = engine._profile(name, self.profile)
                        assert lo[0] <= shape[0] <= hi[0], f"batch {shape[0]} outside profile {lo[0]}..{hi[0]}"
                    dtype = np.dtype(np_of[dt])
                    nbytes = int(np.prod(shape)) * dtype.itemsize
                    feeds[name] = cuda.buffer_at(addresses[name], nbytes).view(dtype).reshape(shape).copy()
                else:
                    outs.append((name, dt))
            results = engine.session.run([n for n, _ in outs], feeds)
            for (name, dt), value in zip(outs, results):
                raw = np.ascontiguousarray(value, np_of[dt]).view(np.uint8).reshape(-1)
                cuda.buffer_at(addresses[name], raw.nbytes)[:] = raw
            state.executions.append({"api": api, "context": id(self), "profile": self.profile,
                                     "batch": len(next(iter(feeds.values())))})
            return True

    class Runtime:
        def __init__(self, logger):
            self.DLA_core = -1

        def deserialize_cuda_engine(self, data):
            data = bytes(data)
            if not data.startswith(b"FAKETRT\0"):
                return None  # real TensorRT logs an error and returns None
            size = int.from_bytes(data[8:12], "little")
            header = json.loads(data[12:12 + size])
            if header["version"] != state.version:
                return None  # engines are tied to the TensorRT version
            state.deserialized += 1
            state.runtime_dla_core = self.DLA_core
            cls = NamedEngine if state.named_api else BindingsEngine
            return cls(header, data[12 + size:])

    for obj in (Logger, NetworkDefinitionCreationFlag, MemoryPoolType, BuilderFlag, DeviceType, LayerType,
                TensorIOMode, DataType, IInt8EntropyCalibrator2, OnnxParser, Builder, Runtime, nptype):
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
