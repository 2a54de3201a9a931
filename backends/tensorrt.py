"""NVIDIA TensorRT backend: ONNX -> cached engine -> named-tensor execution.

``load`` parses the ONNX file, builds an engine for the requested precision
(or takes it from the engine cache, see :mod:`backends.tensorrt_engine`) and
creates ``instances`` execution contexts, each with its own CUDA stream,
device buffers and page-locked host buffers (see :mod:`backends.cuda_memory`).
A model with a dynamic batch dimension gets one optimisation profile per
context (TensorRT lets a profile serve one context at a time).

Precision (``BackendOptions.precision``): ``fp32`` (default), ``fp16``, or
``int8``; how it is applied depends on what the installed TensorRT has:

* TensorRT 8.4-10.x: builder flags. ``int8`` uses the model's own Q/DQ nodes
  when it has them; for a float model the default (``calibrator = "qdq"``)
  builds from a Q/DQ copy calibrated by ONNX Runtime
  (:mod:`backends.int8_calibration`, the same int8 model ONNX Runtime and
  OpenVINO run); ``calibrator = "entropy"`` uses TensorRT's entropy calibrator
  and a stored table instead (:mod:`backends.tensorrt_calibrator`).
* TensorRT 11 (strongly typed networks, no precision flags): ``fp16`` builds
  from an fp16 copy of the model (:mod:`backends.onnx_fp16`), ``int8`` from
  the Q/DQ model; a Q/DQ model runs its quantised layers in INT8 and the rest
  in its float type at any precision.

``describe()["build"]`` records which (``strongly_typed``, ``builder_flags``,
``onnx``).

``BackendOptions.extra`` keys: see :data:`EXTRA_OPTIONS`.

UNTESTED ON A REAL GPU. Every TensorRT name this code uses is checked against
the real bindings of TensorRT 8.6, 10.3, 10.16 and 11.4
(tests/backends/test_tensorrt_real_api.py); the behaviour is tested with a
fake ``tensorrt`` and CUDA runtime that check what this code passes to them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from backends.base import Backend, ModelInfo, TensorSpec, check_model_file, require_module
from sut.errors import BackendFailure, ConfigError, ModelError

log = logging.getLogger(__name__)

EXTRA_OPTIONS = {
    "workspace_mb": "builder workspace memory pool limit in MiB (default: TensorRT's)",
    "dla_core": "run on this DLA core (Jetson); layers DLA cannot run fall back to the GPU",
    "gpu_fallback": "with dla_core: allow GPU fallback (default true)",
    "dynamic_batch": "for models with a dynamic batch dimension: build for batches 1..max_batch_size "
                     "(default true); false builds for exactly max_batch_size and pads smaller batches",
    "opt_batch": "batch size TensorRT tunes kernels for (default max_batch_size)",
    "engine_cache": "engine cache directory (default $MLPERF_EDGE_CACHE/tensorrt or ~/.cache/mlperf-edge/tensorrt)",
    "rebuild": "build the engine even when the cache holds one (default false)",
    "calibrator": "int8 of a float model: \"qdq\" (default; a Q/DQ copy calibrated by ONNX Runtime, any TensorRT) "
                  "or \"entropy\" (TensorRT's entropy calibrator, TensorRT 8.x-10.x only)",
    "calibration_batches": "int8: iterable of preprocessed input batches, or a callable returning one",
    "calibration_cache": "int8 with calibrator \"entropy\": calibration table path "
                         "(default <engine_cache>/<model sha256>.calib)",
    "cuda_binding": "cuda-python or pycuda (default: whichever imports, cuda-python first)",
}


def default_cache_root() -> Path:
    base = os.environ.get("MLPERF_EDGE_CACHE", str(Path.home() / ".cache" / "mlperf-edge"))
    return Path(base) / "tensorrt"


def parse_device(device: str | None) -> int:
    """``None``/``"gpu"`` -> 0; ``"1"``, ``"cuda:1"``, ``"gpu:1"`` -> 1."""
    if device in (None, "", "gpu", "cuda"):
        return 0
    text = str(device).lower()
    for prefix in ("cuda:", "gpu:"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if not text.isdigit():
        raise ConfigError(f"tensorrt device '{device}' is not a GPU index; use e.g. 0, cuda:0 or gpu:1")
    return int(text)


def guess_layout(shape: tuple[int, ...]) -> str | None:
    if len(shape) != 3:
        return None
    if shape[0] in (1, 3) and shape[-1] not in (1, 3):
        return "NCHW"
    if shape[-1] in (1, 3):
        return "NHWC"
    return None


@dataclasses.dataclass
class _Tensor:
    name: str
    is_input: bool
    shape: tuple[int, ...]  # engine shape, batch first (-1 when dynamic)
    dtype: np.dtype
    index: int = -1  # binding index (bindings API only)


@dataclasses.dataclass
class _Instance:
    """One execution context with its stream and buffers."""

    context: Any
    stream: Any
    profile: int
    device: dict[str, int]
    host: dict[str, Any]
    bindings: list[int] | None = None


class TensorRTBackend(Backend):
    name = "tensorrt"
    extra_name = "tensorrt"

    def __init__(self, options=None):
        super().__init__(options)
        self._calibration = self.options.extra.get("calibration_batches")
        self._instances: list[_Instance] = []
        self._cuda = None
        self._engine = None
        self.engine_path: Path | None = None
        self.engine_from_cache = False
        self.build_model_path: Path | None = None  # the ONNX the engine was built from (a copy for fp16/int8)

    def set_calibration_data(self, batches) -> None:
        """Give INT8 calibration batches (see :mod:`backends.tensorrt_calibrator`) before ``load``."""
        self._calibration = batches

    # --- load ------------------------------------------------------------------------
    def _extra(self) -> dict[str, Any]:
        extra = dict(self.options.extra)
        unknown = sorted(set(extra) - set(EXTRA_OPTIONS))
        if unknown:
            raise ConfigError(f"tensorrt has no option {', '.join(unknown)}; accepted: {', '.join(EXTRA_OPTIONS)}")
        for key in ("workspace_mb", "dla_core", "opt_batch"):
            value = extra.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"tensorrt option {key} must be a non-negative integer, got {value!r}")
        if extra.get("calibrator", "qdq") not in ("qdq", "entropy"):
            raise ConfigError(f"tensorrt option calibrator must be \"qdq\" or \"entropy\", "
                              f"got {extra['calibrator']!r}")
        return extra

    def load_impl(self, model_path):
        from backends import tensorrt_engine as te
        from backends.cuda_memory import open_cuda

        extra = self._extra()
        precision = self.options.precision or "fp32"
        if precision not in te.PRECISIONS:
            raise ConfigError(f"unknown precision '{precision}' for tensorrt; "
                              f"choose one of: {', '.join(te.PRECISIONS)}")
        if extra.get("dla_core") is not None and precision == "fp32":
            raise ConfigError(f"tensorrt option dla_core={extra['dla_core']} needs precision fp16 or int8 "
                              "(DLA cores have no FP32 kernels)")
        check_model_file(model_path, (".onnx",), self.name)
        trt = require_module("tensorrt", self.name, self.extra_name)
        te.check_supported(trt)
        self._trt = trt
        self._cuda = cuda = open_cuda(parse_device(self.options.device), self.name, extra.get("cuda_binding"))
        with cuda.active():
            self._engine = self._get_engine(trt, cuda, model_path, precision, extra)
            return self._create_instances(trt, cuda)

    def _get_engine(self, trt, cuda, model_path, precision, extra):
        from backends import tensorrt_engine as te

        self._logger = logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network, _ = te.parse_onnx(trt, builder, logger, model_path)
        first = self._single_input(network, model_path)
        profiles = self._profiles(first, model_path, extra)
        qdq = te.onnx_has_qdq(model_path)
        if qdq is None:
            qdq = te.network_has_qdq(trt, network)
        model_sha = te.file_sha256(model_path)
        cache_root = Path(extra.get("engine_cache") or (
            Path(self.options.cache_dir) / "tensorrt" if self.options.cache_dir else default_cache_root()))
        calibration_path = Path(extra.get("calibration_cache") or cache_root / f"{model_sha[:24]}.calib")
        strong = te.strongly_typed(trt)
        build_path, source, calibrated = self._network_source(
            trt, model_path, model_sha, first, precision, bool(qdq), strong, extra, cache_root)
        if source != "model":
            network, _ = te.parse_onnx(trt, builder, logger, build_path)
            first = self._single_input(network, build_path)
            qdq = qdq or source == "qdq"
        elif qdq:
            log.info("tensorrt: %s is quantised (Q/DQ nodes): its quantised layers run in INT8, the rest in %s",
                     model_path, "the model's float type" if strong else precision)
        build_sha = te.file_sha256(build_path) if source != "model" else model_sha
        workspace = extra.get("workspace_mb")
        settings = te.BuildSettings(
            precision=precision, profiles=profiles,
            workspace_bytes=workspace * (1 << 20) if workspace else None,
            dla_core=extra.get("dla_core"), gpu_fallback=bool(extra.get("gpu_fallback", True)),
            calibrated=calibrated, qdq=bool(qdq), strongly_typed=strong, onnx=source,
        )
        self.settings, self.build_model_path = settings, Path(build_path)
        gpu = (cuda.device_name(), cuda.compute_capability())

        def identity():
            ident = te.engine_identity(model_sha, settings, str(trt.__version__), *gpu)
            if source != "model":
                ident["onnx_sha256"] = build_sha
            if calibrated:
                table = calibration_path.read_bytes() if calibration_path.exists() else b""
                ident["calibration_sha256"] = hashlib.sha256(table).hexdigest()
            return ident

        cache = te.EngineCache(cache_root)
        self._runtime = runtime = trt.Runtime(logger)
        if settings.dla_core is not None:
            runtime.DLA_core = int(settings.dla_core)

        ident = identity()
        key = te.engine_key(ident)
        if not extra.get("rebuild") and (not calibrated or calibration_path.exists()):
            data = cache.read(key, ident)
            if data is not None:
                engine = self._deserialize(runtime, data)
                if engine is not None:
                    self.engine_path, self.engine_from_cache = cache.paths(key)[0], True
                    log.info("tensorrt: using cached engine %s", self.engine_path)
                    return engine
                log.warning("tensorrt: cached engine %s does not deserialize: rebuilding", cache.paths(key)[0])

        data = self._build(trt, cuda, builder, network, settings, first, model_path, calibration_path)
        ident = identity()  # a calibrated build has just written its table
        key = te.engine_key(ident)
        self.engine_path, self.engine_from_cache = cache.write(key, ident, data), False
        engine = self._deserialize(runtime, data)
        if engine is None:
            raise BackendFailure(f"TensorRT cannot deserialize the engine it just built ({self.engine_path})")
        return engine

    @staticmethod
    def _single_input(network, model_path):
        if network.num_inputs != 1:
            raise ModelError(f"{model_path} has {network.num_inputs} inputs; the tensorrt backend runs "
                             "single-input models")
        return network.get_input(0)

    def _profiles(self, first, model_path, extra) -> tuple:
        """One ``(min, opt, max)`` batch triple per instance for a dynamic batch, else ()."""
        batch_dim = tuple(first.shape)[0]
        instances = max(1, self.options.instances or 1)
        max_batch = max(1, self.options.max_batch_size)
        if batch_dim < 0:
            if extra.get("dynamic_batch", True):
                opt = min(max_batch, extra.get("opt_batch") or max_batch) or 1
                return ((1, opt, max_batch),) * instances
            return ((max_batch, max_batch, max_batch),) * instances
        if max_batch > batch_dim:
            log.warning("tensorrt: %s has a fixed batch of %d; max_batch_size %d is not used",
                        model_path, batch_dim, max_batch)
        return ()

    def _network_source(self, trt, model_path, model_sha, first, precision, qdq, strong, extra, cache_root):
        """``(onnx path, BuildSettings.onnx, entropy-calibrated)``: what the network is built from.

        Builder flags (TensorRT <= 10) take the model as it is, except int8 of a
        float model with the default ``calibrator = "qdq"`` (its Q/DQ copy).
        Strongly typed TensorRT (11) also needs an fp16 copy for ``fp16``.
        """
        from backends import tensorrt_engine as te

        if precision == "int8" and not qdq:
            if extra.get("calibrator", "qdq") == "entropy":
                if strong or not te.has_entropy_calibrator(trt):
                    raise ConfigError(
                        f"tensorrt option calibrator = \"entropy\": TensorRT {trt.__version__} has no INT8 "
                        "calibrators (its networks are strongly typed); use calibrator = \"qdq\" (the default)")
                return model_path, "model", True
            return self._qdq_copy(trt, model_path, first, cache_root), "qdq", False
        if precision == "fp16" and strong and not qdq:
            from backends import onnx_fp16

            return onnx_fp16.fp16_model(model_path, model_sha, cache_root / "onnx"), "fp16", False
        return model_path, "model", False

    def _calibration_source(self, spec):
        """Calibration batches (an iterable or a callable returning one), or None."""
        if self._calibration is not None:
            return self._calibration
        if self.options.calibration is not None:
            return lambda: self.options.calibration(spec)
        return None

    def _qdq_copy(self, trt, model_path, first, cache_root) -> Path:
        """A Q/DQ copy of the float model, calibrated by ONNX Runtime (see backends/int8_calibration.py)."""
        from backends import int8_calibration

        spec = _calibration_spec(first, trt)
        source = self._calibration_source(spec)
        if source is None:
            raise ConfigError(
                f"int8 for {model_path} needs calibration data: the model has no Q/DQ nodes; run it with a "
                "dataset (calibration_count samples are used), give calibration_batches, or use a Q/DQ model "
                "or precision fp16/fp32")
        root = Path(self.options.cache_dir) if self.options.cache_dir else cache_root
        return Path(int8_calibration.qdq_model(model_path, spec, _LazyBatches(source), cache_root=root))

    def _build(self, trt, cuda, builder, network, settings, first, model_path, calibration_path) -> bytes:
        from backends import tensorrt_engine as te
        from backends.tensorrt_calibrator import make_calibrator

        calibrator = None
        batch = settings.profiles[0][1] if settings.profiles else int(tuple(first.shape)[0])
        if settings.calibrated:
            spec = _calibration_spec(first, trt)
            source = self._calibration_source(spec)
            if source is None and not calibration_path.exists():
                raise ConfigError(
                    f"int8 for {model_path} needs calibration: the model has no Q/DQ nodes and there is no "
                    f"calibration table at {calibration_path}; give calibration_batches "
                    "(or call set_calibration_data), or use precision fp16/fp32"
                )
            calibrator = make_calibrator(trt, cuda, source, first.name, spec.dtype, spec.shape, batch,
                                         calibration_path)
        log.info("tensorrt: building engine for %s (%s); this can take minutes", model_path, settings.describe())
        try:
            data = te.build_serialized(trt, builder, network, settings, calibrator)
        except BackendFailure:
            if calibrator is not None and calibrator.error is not None:
                raise calibrator.error from None
            if calibrator is not None and not calibrator.batches_used and not calibration_path.exists():
                raise ConfigError(
                    f"int8 calibration of {model_path} got no batch of {batch} samples (TensorRT calibrates at "
                    f"the optimisation profile's opt batch, {batch}): give at least {batch} calibration samples, "
                    "or a smaller opt_batch") from None
            raise
        finally:
            if calibrator is not None:
                calibrator.release()
        if calibrator is not None and calibrator.error is not None:
            raise calibrator.error
        return data

    @staticmethod
    def _deserialize(runtime, data: bytes):
        try:
            return runtime.deserialize_cuda_engine(data)
        except Exception as exc:  # noqa: BLE001 - TensorRT raises RuntimeError/TypeError variants
            log.warning("tensorrt: deserialize failed: %s", exc)
            return None

    # --- contexts and buffers -----------------------------------------------------------
    def _tensors(self, trt, engine) -> list[_Tensor]:
        if hasattr(engine, "num_io_tensors"):
            tensors = []
            for i in range(engine.num_io_tensors):
                name = engine.get_tensor_name(i)
                tensors.append(_Tensor(
                    name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                    tuple(engine.get_tensor_shape(name)), np.dtype(trt.nptype(engine.get_tensor_dtype(name)))))
            return tensors
        per_profile = engine.num_bindings // max(1, engine.num_optimization_profiles)
        return [_Tensor(engine.get_binding_name(i), engine.binding_is_input(i), tuple(engine.get_binding_shape(i)),
                        np.dtype(trt.nptype(engine.get_binding_dtype(i))), i) for i in range(per_profile)]

    def _batch_range(self, engine, tensor: _Tensor) -> tuple[int, int]:
        """Smallest and largest batch the engine's first profile takes."""
        if tensor.shape[0] >= 0:
            return tensor.shape[0], tensor.shape[0]
        if hasattr(engine, "get_tensor_profile_shape"):
            lo, _, hi = engine.get_tensor_profile_shape(tensor.name, 0)
        else:
            lo, _, hi = engine.get_profile_shape(0, tensor.index)
        return int(tuple(lo)[0]), int(tuple(hi)[0])

    def _create_instances(self, trt, cuda) -> ModelInfo:
        engine = self._engine
        self._tensors_ = tensors = self._tensors(trt, engine)
        self._named = hasattr(engine, "num_io_tensors")
        self._input = next(t for t in tensors if t.is_input)
        self._outputs = [t for t in tensors if not t.is_input]
        self._dynamic = self._input.shape[0] < 0
        self._min_batch, self._run_batch = self._batch_range(engine, self._input)
        profiles = max(1, engine.num_optimization_profiles) if self._dynamic else 1
        count = max(1, self.options.instances or 1)
        per_profile = len(tensors)
        for i in range(count):
            context = engine.create_execution_context()
            if context is None:
                raise BackendFailure(f"TensorRT could not create execution context {i} (out of GPU memory?)")
            stream = cuda.stream_create()
            profile = i % profiles
            if self._dynamic and profiles > 1:
                context.set_optimization_profile_async(profile, cuda.stream_handle(stream))
            inst = _Instance(context, stream, profile, {}, {})
            for t in tensors:
                shape = (self._run_batch, *t.shape[1:])
                inst.host[t.name] = cuda.host_empty(shape, t.dtype)
                inst.device[t.name] = cuda.malloc(inst.host[t.name].nbytes)
                if self._named:
                    context.set_tensor_address(t.name, inst.device[t.name])
            if not self._named:
                inst.bindings = [0] * engine.num_bindings
                for t in tensors:
                    inst.bindings[profile * per_profile + t.index] = inst.device[t.name]
            self._instances.append(inst)
        if profiles > 1 and count > profiles:
            log.warning("tensorrt: %d instances share %d optimisation profiles", count, profiles)
        sample = self._input.shape[1:]
        return ModelInfo(
            inputs=(TensorSpec(self._input.name, sample, self._input.dtype, guess_layout(sample)),),
            outputs=tuple(TensorSpec(t.name, t.shape[1:], t.dtype) for t in self._outputs),
            max_batch_size=self._run_batch,
            instances=count,
        )

    # --- predict --------------------------------------------------------------------------
    def predict_impl(self, batch, instance):
        inst = self._instances[instance]
        cuda = self._cuda
        n = len(batch)
        if not 1 <= n <= self._run_batch:
            raise BackendFailure(f"tensorrt got a batch of {n}; this engine takes 1 to {self._run_batch}")
        run = max(n, self._min_batch)  # pad up to the smallest batch the engine takes
        host_in = inst.host[self._input.name].array
        host_in[:n] = batch
        if run > n:
            host_in[n:run] = 0
        out = self._outputs[0]
        host_out = inst.host[out.name].array
        with cuda.active():
            cuda.copy_to_device_async(inst.device[self._input.name], host_in[:run], inst.stream)
            handle = cuda.stream_handle(inst.stream)
            if self._named:
                if self._dynamic:
                    inst.context.set_input_shape(self._input.name, (run, *self._input.shape[1:]))
                ok = inst.context.execute_async_v3(handle)
            else:
                if self._dynamic:
                    per_profile = len(self._tensors_)
                    inst.context.set_binding_shape(inst.profile * per_profile + self._input.index,
                                                   (run, *self._input.shape[1:]))
                ok = inst.context.execute_async_v2(inst.bindings, handle)
            if not ok:
                raise BackendFailure(f"TensorRT execution failed on instance {instance} (batch {n})")
            cuda.copy_to_host_async(host_out[:run], inst.device[out.name], inst.stream)
            cuda.stream_sync(inst.stream)
        return host_out[:n].copy()

    # --- misc ------------------------------------------------------------------------------
    def close_impl(self):
        cuda = self._cuda
        if cuda is None:
            return
        with cuda.active():
            for inst in self._instances:
                try:
                    cuda.stream_sync(inst.stream)
                finally:
                    for ptr in inst.device.values():
                        cuda.free(ptr)
                    for buf in inst.host.values():
                        cuda.host_free(buf)
                    cuda.stream_destroy(inst.stream)
        self._instances = []
        self._engine = None

    def version(self):
        try:
            import tensorrt

            return f"tensorrt {tensorrt.__version__}"
        except ImportError:
            return "tensorrt (not installed)"

    def describe(self):
        out = super().describe()
        if self._cuda is not None:
            out.update({
                "gpu": self._cuda.device_name(),
                "compute_capability": "%d.%d" % self._cuda.compute_capability(),
                "cuda_binding": self._cuda.binding,
            })
        if self.engine_path is not None:
            out.update({"engine": str(self.engine_path), "engine_from_cache": self.engine_from_cache,
                        "build": self.settings.describe(), "built_from": str(self.build_model_path)})
        return out


class _LazyBatches:
    """Batches from a source that is called (when callable) only once they are iterated."""

    def __init__(self, source):
        self.source = source

    def __iter__(self):
        return iter(self.source() if callable(self.source) else self.source)


def _calibration_spec(tensor, trt) -> TensorSpec:
    """The per-sample input a calibration batch must hold (float, model layout)."""
    shape = tuple(int(d) for d in tensor.shape)[1:]
    layout = "NCHW" if len(shape) == 3 and shape[0] == 3 else "NHWC" if len(shape) == 3 and shape[-1] == 3 else None
    return TensorSpec(tensor.name, shape, trt.nptype(tensor.dtype), layout)
