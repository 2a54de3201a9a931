"""NVIDIA TensorRT backend: ONNX -> cached engine -> named-tensor execution.

``load`` parses the ONNX file, builds an engine for the requested precision
(or takes it from the engine cache, see :mod:`backends.tensorrt_engine`) and
creates ``instances`` execution contexts, each with its own CUDA stream,
device buffers and page-locked host buffers (see :mod:`backends.cuda_memory`).
A model with a dynamic batch dimension gets one optimisation profile per
context (TensorRT lets a profile serve one context at a time).

Precision (``BackendOptions.precision``): ``fp32`` (default), ``fp16``, or
``int8``; how it is applied depends on what the installed TensorRT has:

* TensorRT 8.4-10.x: builder flags (``FP16``; ``INT8`` whenever the network
  holds Q/DQ layers). ``calibrator = "entropy"`` (8.x-10.x only) calibrates a
  float model with TensorRT's entropy calibrator and a stored table
  (:mod:`backends.tensorrt_calibrator`).
* TensorRT 11 (strongly typed networks, no precision flags): ``fp16`` builds
  from an fp16 copy of the model (:mod:`backends.onnx_fp16`), ``int8`` from
  a Q/DQ model.
* ``int8`` of a float model with the default ``calibrator = "qdq"``: the
  same path as every ONNX backend (``qdq_int8``): ``Backend.load`` swaps in a
  Q/DQ copy calibrated by ONNX Runtime (:mod:`backends.int8_calibration`, the
  same int8 model ONNX Runtime and OpenVINO run) and this backend builds from
  it. "Float" and "quantised" mean what :func:`backends.int8_calibration.is_quantized`
  says (activations quantised): a model whose weights alone are int8 behind
  ``DequantizeLinear`` is float and is calibrated.
* A quantised (Q/DQ) model runs its quantised layers in INT8 whatever is
  asked, so only ``int8`` is accepted for it; ``fp16`` and ``int8`` for an
  fp16 model. Refused precisions are ConfigErrors from
  :meth:`TensorRTBackend.check_precision`, which the harness calls before any
  run (it also refuses ``calibrator = "entropy"`` where TensorRT has no
  calibrators, ``dla_core`` with fp32, and a missing fp16 converter on 11).

``describe()["build"]`` records how (``strongly_typed``, ``builder_flags``,
``onnx``) and ``describe()["precision"]`` says it in words
(:meth:`TensorRTBackend.applied_precision`).

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

from backends.base import Backend, ModelInfo, TensorSpec, check_model_file, file_sha256, require_module
from sut.errors import BackendFailure, ConfigError, HarnessError, ModelError

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
    """(3,H,W) is NCHW, (H,W,3) NHWC, anything else None: the rule of the other ONNX
    backends and of backends/int8_calibration.py, so one model gets one input layout."""
    if len(shape) != 3:
        return None
    return "NCHW" if shape[0] == 3 else "NHWC" if shape[-1] == 3 else None


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
    #: applied by builder flags (8.x-10.x) or by the ONNX the network is built from (11); see the module notes
    precisions = ("fp32", "fp16", "int8")

    def __init__(self, options=None):
        super().__init__(options)
        self._instances: list[_Instance] = []
        self._cuda = None
        self._engine = None
        self.engine_path: Path | None = None
        self.engine_from_cache = False
        self.build_model_path: Path | None = None  # the ONNX the engine was built from (a copy for fp16/int8)
        self.settings = None  # te.BuildSettings of the loaded engine
        self._quantised = False  # the built network's activations are quantised (Q/DQ)
        self._calibration_table: Path | None = None
        self.set_calibration_data(self.options.extra.get("calibration_batches"))

    @property
    def qdq_int8(self) -> bool:
        """int8 of a float model through Backend.load's calibrated Q/DQ copy, unless calibrator = "entropy"."""
        return self.options.extra.get("calibrator", "qdq") != "entropy"

    def set_calibration_data(self, batches) -> None:
        """Give INT8 calibration batches (an iterable, or a callable returning one) before ``load``;
        they feed the Q/DQ copy's calibration (``BackendOptions.calibration``) or the entropy calibrator."""
        self._calibration = batches
        if batches is not None:
            self.options = dataclasses.replace(self.options, calibration=lambda spec: _LazyBatches(batches))

    def _scratch_dir(self) -> str:
        """Where Backend.load keeps the calibrated Q/DQ copy: ``cache_dir`` (shared with the other ONNX
        backends, so they run the same copy), else beside the engines rather than in a temporary directory."""
        return self.options.cache_dir or str(self._cache_root(self.options.extra))

    def _cache_root(self, extra) -> Path:
        return Path(extra.get("engine_cache") or (
            Path(self.options.cache_dir) / "tensorrt" if self.options.cache_dir else default_cache_root()))

    # --- precision -------------------------------------------------------------------
    def supported_precisions(self, model_path=None):
        """fp32, fp16 and int8 for a float32 model; fp16 and int8 for an fp16 one; int8 alone for a
        quantised (Q/DQ) model, whose quantised layers run in INT8 at any setting."""
        own = _model_precision(model_path) if model_path else None
        if own == "int8":
            return ("int8",)
        if own == "fp16":
            return ("fp16", "int8")
        return super().supported_precisions(model_path)

    def check_precision(self, precision, model_path=None):
        """Backend.check_precision, plus what only TensorRT decides (before any run):
        ``dla_core`` with fp32, the entropy calibrator where TensorRT has none (11), and on
        strongly typed TensorRT (11) fp16's converter (BackendUnavailable when absent)."""
        super().check_precision(precision, model_path)
        if precision is None:
            return
        extra = self._extra()
        _check_dla(extra, precision)
        entropy = (precision == "int8" and not self.qdq_int8
                   and (not model_path or _model_precision(model_path) != "int8"))
        if precision != "fp16" and not entropy:
            return
        from backends import tensorrt_engine as te

        trt = require_module("tensorrt", self.name, self.extra_name)
        if entropy and not te.has_entropy_calibrator(trt):
            raise ConfigError(
                f"tensorrt option calibrator = \"entropy\": TensorRT {trt.__version__} has no INT8 "
                "calibrators (its networks are strongly typed); use calibrator = \"qdq\" (the default)")
        if precision == "fp16" and te.strongly_typed(trt):
            from backends import onnx_fp16

            onnx_fp16.converter_version()

    def applied_precision(self) -> str:
        """What the engine runs, from how it was built: e.g. ``fp16 (BuilderFlag.FP16)``,
        ``fp16 (fp16 ONNX copy; strongly typed)``, ``int8 (Q/DQ copy calibrated on 500 samples;
        BuilderFlag.FP16+INT8)``, ``int8 (entropy calibrator, table ...; BuilderFlag.FP16+INT8)``."""
        s = self.settings
        if s is None:
            return super().applied_precision()
        if self.qdq_path:
            head, source = "int8", _qdq_copy_description(self.qdq_path)
        elif s.calibrated:
            head, source = "int8", f"entropy calibrator, table {self._calibration_table}"
        elif self._quantised:
            head, source = "int8", "the model's Q/DQ nodes"
        elif s.onnx == "fp16":
            head, source = "fp16", "fp16 ONNX copy"
        else:
            head, source = s.precision, None
        flags = [f for f in s.builder_flags() if f in ("FP16", "INT8")]
        typing = ("strongly typed" if s.strongly_typed else
                  "BuilderFlag." + "+".join(flags) if flags else "no precision flags")
        where = ""
        if s.dla_core is not None:
            where = f"; DLA core {s.dla_core}" + (" with GPU fallback" if s.gpu_fallback else "")
        return f"{head} ({'; '.join(p for p in (source, typing) if p)}{where})"

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
        _check_dla(extra, precision)
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
        # Q/DQ layers in the network (weight-only DequantizeLinear included): TensorRT 8-10 needs the INT8 flag
        qdq = te.network_has_qdq(trt, network)
        # activations quantised (backends/int8_calibration's definition): the model runs int8 as it is
        own = _model_precision(model_path, default="int8" if qdq else None)
        self._quantised = bool(self.qdq_path) or own == "int8"
        model_sha = file_sha256(model_path)
        cache_root = self._cache_root(extra)
        calibration_path = Path(extra.get("calibration_cache") or cache_root / f"{model_sha[:24]}.calib")
        self._calibration_table = calibration_path
        strong = te.strongly_typed(trt)
        build_path, source, calibrated = self._network_source(
            trt, model_path, model_sha, precision, qdq, strong, extra, cache_root)
        if str(build_path) != str(model_path):
            network, _ = te.parse_onnx(trt, builder, logger, build_path)
            first = self._single_input(network, build_path)
        elif qdq:
            log.info("tensorrt: %s is quantised (Q/DQ nodes): its quantised layers run in INT8, the rest in %s",
                     model_path, "the model's float type" if strong else precision)
        build_sha = file_sha256(build_path) if str(build_path) != str(model_path) else model_sha
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
            if str(build_path) != str(model_path):
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

    def _network_source(self, trt, model_path, model_sha, precision, qdq, strong, extra, cache_root):
        """``(onnx path, BuildSettings.onnx, entropy-calibrated)``: what the network is built from.

        ``model_path`` is already the calibrated Q/DQ copy when ``Backend.load``
        made one (int8 of a float model, ``calibrator = "qdq"``). Otherwise builder
        flags (TensorRT <= 10) take the model as it is, calibrating a float model
        for int8 with the entropy calibrator; strongly typed TensorRT (11) builds
        ``fp16`` from an fp16 copy.
        """
        if self.qdq_path:
            return model_path, "qdq", False
        if precision == "int8" and not self._quantised:
            if self.qdq_int8:  # Backend.load found the model quantised, but TensorRT sees no Q/DQ layer
                raise ModelError(f"TensorRT finds no Q/DQ layers in {model_path}, which quantises its activations "
                                 "with other ops (QOperator format?): export it in the QDQ format, or give "
                                 "the float model")
            if qdq:
                raise ConfigError(
                    f"tensorrt option calibrator = \"entropy\" cannot calibrate {model_path}: it holds "
                    "DequantizeLinear nodes (int8 weights), and TensorRT ignores a calibrator on a network with "
                    "Q/DQ layers; use calibrator = \"qdq\" (the default)")
            return model_path, "model", True
        if precision == "fp16" and strong and not self._quantised:
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
    return TensorSpec(tensor.name, shape, trt.nptype(tensor.dtype), guess_layout(shape))


def _check_dla(extra, precision: str) -> None:
    if extra.get("dla_core") is not None and precision == "fp32":
        raise ConfigError(f"tensorrt option dla_core={extra['dla_core']} needs precision fp16 or int8 "
                          "(DLA cores have no FP32 kernels)")


def _model_precision(model_path, default=None) -> str | None:
    """``fp32``/``fp16``/``int8`` as :func:`backends.int8_calibration.model_precision` reads the
    model (int8: activations quantised); ``default`` when it cannot be read here (no ``onnx``)."""
    from backends import int8_calibration
    try:
        return int8_calibration.model_precision(model_path)
    except HarnessError:
        return default


def _qdq_copy_description(path: str) -> str:
    """``Q/DQ copy calibrated on N samples`` from the copy's cache record (int8_calibration writes
    ``<copy stem>.json`` beside it), or just the copy's path."""
    import json

    try:
        count = json.loads(Path(path).with_suffix(".json").read_text())["calibration"]["count"]
        return f"Q/DQ copy calibrated on {int(count)} samples: {path}"
    except (OSError, ValueError, KeyError, TypeError):
        return f"Q/DQ copy {path}"
