"""OpenVINO backend: IR (.xml/.bin), ONNX and .tflite models on CPU, GPU, NPU, AUTO, MULTI...

Uses the OpenVINO 2.0 API (``import openvino as ov``). When only the old
2021.4 ``IECore`` API is installed (the last release with the NCS2 / MYRIAD
plugin) the work is handed to :mod:`backends.openvino_legacy`.

Settings taken from :class:`BackendOptions`:

* ``device``: ``CPU`` (default), ``GPU``, ``GPU.1``, ``NPU``, ``AUTO``,
  ``MULTI:GPU,CPU``, ``HETERO:...``; a device OpenVINO does not list raises
  BackendUnavailable with the list.
* ``precision``: float parts run in ``f32`` (``INFERENCE_PRECISION_HINT``) unless
  ``fp16``/``bf16`` is asked for; CPUs with AMX would otherwise drop to bf16.
* ``threads``: ``INFERENCE_NUM_THREADS`` when above 0.
* ``instances``: 1 -> ``PERFORMANCE_HINT=LATENCY`` and one infer request;
  otherwise ``THROUGHPUT`` and one request per instance (0 -> the compiled
  model's ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``). The harness runs one worker
  per instance and each calls ``infer`` synchronously on its own request;
  OpenVINO releases the GIL while inferring, so the requests run concurrently.
* ``max_batch_size`` > 1: the batch dimension is made dynamic (1..N) when the
  model allows it (its output batch follows its input batch); otherwise the
  model runs one sample at a time and a warning says so.

``extra`` (profile ``backend_options``): ``performance_hint`` (``LATENCY``,
``THROUGHPUT``, ``CUMULATIVE_THROUGHPUT``), ``config`` (a dict of further
compile properties), ``input_scale`` / ``input_zero_point``.

Quantised inputs: OpenVINO keeps a quantised model's integer input (uint8
[1,128,128,3] for the MobileNet .tflite and IR) and expresses the
dequantisation as the ``FakeQuantize`` that follows the input, so scale and
zero point are read from that node (for .tflite files they equal the file's
own values). ``input_scale``/``input_zero_point`` override them, or supply
them for a model without such a node.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from backends.base import Backend, ModelInfo, TensorSpec, check_model_file, require_module

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".xml", ".onnx", ".tflite")
PRECISION_HINTS = {None: "f32", "fp32": "f32", "int8": "f32", "fp16": "f16", "bf16": "bf16"}
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
COMPOSITE_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
EXTRA_OPTIONS = ("performance_hint", "config", "input_scale", "input_zero_point")
#: ops that pass an input through unchanged on the way to its FakeQuantize
PASS_THROUGH_OPS = ("Convert", "Transpose", "Reshape", "Squeeze", "Unsqueeze")


class OpenVINOBackend(Backend):
    name = "openvino"
    extra_name = "openvino"

    def __init__(self, options=None):
        super().__init__(options)
        self._legacy: Backend | None = None
        self._requests: list = []
        self._compiled = None
        self._device = "CPU"
        self._hint = "LATENCY"

    # --- load ------------------------------------------------------------------
    def load_impl(self, model_path):
        check_extra(self.options.extra)
        check_model_file(model_path, MODEL_SUFFIXES, self.name)
        if installed_api() == "legacy":
            from backends.openvino_legacy import OpenVINOLegacyBackend

            self._legacy = OpenVINOLegacyBackend(self.options)
            return self._legacy.load_impl(model_path)
        ov = require_module("openvino", self.name, self.extra_name)
        self._device = self.options.device or "CPU"
        core = ov.Core()
        check_device(core, self._device)
        model = read_model(core, model_path)
        input_spec = describe_input(model, self.options.extra)
        output_spec = describe_output(model)
        max_batch = set_batch(ov, model, self.options.max_batch_size)
        self._hint = performance_hint(self.options)
        config = compile_config(core, self._device, self.options, self._hint)
        self._compiled = compile_model(core, model, self._device, config)
        count = self._request_count()
        self._requests = [_Request(ov, self._compiled.create_infer_request(), self._compiled.inputs[0])
                          for _ in range(count)]
        return ModelInfo(inputs=(input_spec,), outputs=(output_spec,),
                         max_batch_size=max_batch, instances=count)

    def _request_count(self) -> int:
        if self._hint == "LATENCY":
            if self.options.instances > 1:
                log.warning("openvino: %d instances with PERFORMANCE_HINT=LATENCY; they share the "
                            "device's single low-latency stream", self.options.instances)
            return max(1, self.options.instances)
        if self.options.instances > 0:
            return self.options.instances
        return int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    # --- run -------------------------------------------------------------------
    def predict_impl(self, batch, instance):
        if self._legacy is not None:
            return self._legacy.predict_impl(batch, instance)
        return self._requests[instance](batch)

    def close_impl(self):
        if self._legacy is not None:
            self._legacy.close_impl()
        self._requests = []
        self._compiled = None

    # --- reporting ---------------------------------------------------------------
    def version(self):
        if self._legacy is not None:
            return self._legacy.version()
        try:
            import openvino as ov

            return f"openvino {ov.get_version()}"
        except (ImportError, AttributeError):
            return "openvino (not installed)"

    def describe(self):
        if self._legacy is not None:
            return self._legacy.describe()
        out = super().describe()
        out.update({"device": self._device, "performance_hint": self._hint,
                    "infer_requests": len(self._requests)})
        if self._compiled is not None:
            out["compiled"] = compiled_properties(self._compiled)
        return out


class _Request:
    """One infer request, fed the cheapest way OpenVINO's public API allows.

    ``infer({0: batch}, share_inputs=True)`` runs OpenVINO's Python input
    dispatcher and builds an output dict on every call (about 20 us on a small
    CPU, 2-3% of a 0.25 MobileNet inference). A C-contiguous, writeable batch of
    the input's own dtype is wrapped in a Tensor that shares its memory and set
    directly instead; anything else (another dtype, a read-only or strided view)
    still goes through the dispatcher, which converts or copies it.
    """

    __slots__ = ("request", "tensor", "shared_dtype")

    def __init__(self, ov, request, port):
        self.request = request
        self.tensor = ov.Tensor
        self.shared_dtype = _shareable_dtype(ov, port.get_element_type())

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        request = self.request
        flags = batch.flags
        if batch.dtype == self.shared_dtype and flags.c_contiguous and flags.writeable:
            request.set_input_tensor(self.tensor(batch, shared_memory=True))
            request.infer(share_outputs=True)
        else:
            request.infer({0: batch}, share_inputs=True, share_outputs=True)
        return request.get_output_tensor(0).data.copy()  # the request reuses its output buffer


def _shareable_dtype(ov, element):
    """The NumPy dtype whose arrays an input of type ``element`` can share, or None
    (bf16 and string inputs, and types NumPy lacks, need the dispatcher's conversions)."""
    special = [getattr(ov.Type, name) for name in ("bf16", "string") if hasattr(ov.Type, name)]
    if any(element == t for t in special):
        return None
    try:
        return np.dtype(element.to_dtype())
    except (RuntimeError, TypeError, ValueError):
        return None


# --- helpers (free functions, also used by native_throughput) -------------------------
def installed_api() -> str:
    """``"2.0"`` when ``openvino.Core`` exists, ``"legacy"`` for the 2021.4 IECore API.

    Raises BackendUnavailable when neither is installed.
    """
    import importlib

    from sut.errors import BackendUnavailable

    try:
        ov = importlib.import_module("openvino")
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend 'openvino' needs the Python module 'openvino', which is not installed ({exc}); "
            "pip install -e '.[openvino]'") from exc
    if hasattr(ov, "Core"):
        return "2.0"
    try:
        importlib.import_module("openvino.inference_engine")
    except ImportError as exc:
        raise BackendUnavailable(
            f"the installed 'openvino' package has neither openvino.Core nor openvino.inference_engine "
            f"({exc}); pip install -e '.[openvino]'") from exc
    return "legacy"


def check_extra(extra) -> None:
    from sut.errors import ConfigError

    unknown = sorted(set(extra) - set(EXTRA_OPTIONS))
    if unknown:
        raise ConfigError(f"backend 'openvino' has no option {', '.join(unknown)}; "
                          f"accepted backend_options: {', '.join(EXTRA_OPTIONS)}")
    hint = extra.get("performance_hint")
    if hint is not None and str(hint).upper() not in PERFORMANCE_HINTS:
        raise ConfigError(f"unknown performance_hint '{hint}'; choose one of: {', '.join(PERFORMANCE_HINTS)}")


def hardware_devices(core, device: str) -> list[str]:
    """The real devices behind ``device``: ``MULTI:GPU,CPU`` -> [GPU, CPU]; ``AUTO`` -> all."""
    base, _, listed = device.partition(":")
    if base.upper() in COMPOSITE_DEVICES:
        names = [d.strip() for d in listed.split(",") if d.strip()]
        return names or list(core.available_devices)
    return [device]


def check_device(core, device: str) -> None:
    """Raise BackendUnavailable unless every device in ``device`` is available."""
    from sut.errors import BackendUnavailable

    if device.split(":")[0].split(".")[0].upper() == "MYRIAD":
        raise BackendUnavailable(
            "device MYRIAD (Intel NCS2) needs openvino 2021.4 (pip install openvino==2021.4.2, "
            "Python 3.6-3.9): OpenVINO 2023.0 removed the MYRIAD plugin and 2022.x wheels never had it")
    available = list(core.available_devices)
    known = set(available) | {d.split(".")[0] for d in available}
    missing = [d for d in hardware_devices(core, device) if d not in known]
    if missing or not available:
        raise BackendUnavailable(
            f"OpenVINO device '{device}' is not available (missing: {', '.join(missing) or device}); "
            f"this machine has: {', '.join(available) or 'none'} (or AUTO / MULTI:<list> of them)")


def read_model(core, model_path: str):
    from sut.errors import ModelError

    try:
        model = core.read_model(model_path)
    except RuntimeError as exc:
        raise ModelError(f"OpenVINO cannot read {model_path}: {exc}") from exc
    if len(model.inputs) != 1:
        names = [i.any_name for i in model.inputs]
        raise ModelError(f"{model_path} has {len(names)} inputs ({', '.join(names)}); the harness feeds one")
    return model


def image_layout(shape: tuple[int, ...]) -> str | None:
    """NHWC for (H, W, 3), NCHW for (3, H, W), None otherwise (per-sample shape)."""
    if len(shape) == 3 and shape[-1] == 3 and shape[0] != 3:
        return "NHWC"
    if len(shape) == 3 and shape[0] == 3:
        return "NCHW"
    return None


def sample_shape(port) -> tuple[int, ...]:
    """Shape without the batch dimension; ModelError if any other dimension is dynamic."""
    from sut.errors import ModelError

    dims = list(port.get_partial_shape())[1:]
    if any(d.is_dynamic for d in dims):
        raise ModelError(f"tensor '{port.any_name}' has dynamic dimensions {port.get_partial_shape()}; "
                         "only the batch dimension may be dynamic")
    return tuple(d.get_length() for d in dims)


def describe_input(model, extra) -> TensorSpec:
    from sut.errors import ModelError

    port = model.inputs[0]
    shape = sample_shape(port)
    dtype = np.dtype(port.get_element_type().to_dtype())
    scale = zero_point = None
    if dtype.kind in "iu":
        scale, zero_point = input_quantization(port.get_node())
        if "input_scale" in extra or "input_zero_point" in extra:
            scale, zero_point = float(extra["input_scale"]), int(extra["input_zero_point"])
        if scale is None:
            raise ModelError(
                f"input '{port.any_name}' is {dtype.name} but the model does not say how to quantise it "
                "(no FakeQuantize after the input); set backend_options input_scale and input_zero_point")
    return TensorSpec(port.any_name, shape, dtype, image_layout(shape), scale, zero_point)


def describe_output(model) -> TensorSpec:
    port = model.outputs[0]
    shape = sample_shape(port)
    dtype = np.dtype(port.get_element_type().to_dtype())
    scale = zero_point = None
    if dtype.kind in "iu":
        scale, zero_point = output_quantization(port.get_node())
    return TensorSpec(port.any_name, shape, dtype, None, scale, zero_point)


def _constant(node, index: int) -> float | None:
    source = node.input(index).get_source_output().get_node()
    if source.get_type_name() != "Constant":
        return None
    data = source.get_data()
    return float(data.ravel()[0]) if data.size == 1 else None


def _fake_quantize_ranges(node):
    ranges = [_constant(node, i) for i in range(1, 5)]
    return None if None in ranges else ranges


def input_quantization(parameter) -> tuple[float | None, int | None]:
    """(scale, zero_point) from the FakeQuantize fed by an integer input, else (None, None).

    The node maps integers [in_low, in_high] to reals [out_low, out_high], so
    ``scale = (out_high - out_low) / (in_high - in_low)`` and
    ``zero_point = in_low - out_low / scale``.
    """
    node = parameter
    for _ in range(8):
        targets = [t.get_node() for out in node.outputs() for t in out.get_target_inputs()]
        if len(targets) != 1:
            return None, None
        node = targets[0]
        if node.get_type_name() == "FakeQuantize":
            ranges = _fake_quantize_ranges(node)
            if ranges is None:
                return None, None
            in_low, in_high, out_low, out_high = ranges
            scale = (out_high - out_low) / (in_high - in_low)
            return float(np.float32(scale)), int(round(in_low - out_low / scale))
        if node.get_type_name() not in PASS_THROUGH_OPS:
            return None, None
    return None, None


def output_quantization(result) -> tuple[float | None, int | None]:
    """(scale, zero_point) from the FakeQuantize that produces an integer output, else (None, None)."""
    node = result.input(0).get_source_output().get_node()
    for _ in range(8):
        if node.get_type_name() == "FakeQuantize":
            ranges = _fake_quantize_ranges(node)
            if ranges is None:
                return None, None
            in_low, in_high, out_low, out_high = ranges
            scale = (in_high - in_low) / (out_high - out_low)
            return float(np.float32(scale)), int(round(out_low - in_low / scale))
        if node.get_type_name() not in PASS_THROUGH_OPS:
            return None, None
        node = node.input(0).get_source_output().get_node()
    return None, None


def set_batch(ov, model, max_batch_size: int) -> int:
    """Give the model a batch dimension of 1..max_batch_size; return the batch it accepts.

    A model whose output keeps a fixed batch of 1 (e.g. a .tflite with a
    hard-coded Reshape) cannot batch: it is fixed at 1 with a warning.
    """
    port = model.inputs[0]
    shape = port.get_partial_shape()
    if max_batch_size > 1:
        shape[0] = ov.Dimension(1, max_batch_size)
        try:
            model.reshape({port: shape})
            if model.outputs[0].get_partial_shape()[0] == shape[0]:
                return max_batch_size
        except RuntimeError as exc:
            log.debug("openvino: reshape to batch %s failed: %s", shape, exc)
        log.warning("openvino: the model cannot run batches (its output batch does not follow the "
                    "input); running one sample at a time instead of max_batch_size=%d", max_batch_size)
        shape = port.get_partial_shape()
    shape[0] = 1
    model.reshape({port: shape})
    return 1


def performance_hint(options) -> str:
    hint = options.extra.get("performance_hint")
    if hint:
        return str(hint).upper()
    return "LATENCY" if options.instances == 1 else "THROUGHPUT"


def compile_config(core, device: str, options, hint: str) -> dict[str, Any]:
    """Compile properties; per-device ones (precision, threads) are set on the Core.

    Setting them on each real device lets AUTO / MULTI / HETERO pass them on.
    """
    from sut.errors import ConfigError

    if options.precision not in PRECISION_HINTS:
        raise ConfigError(f"openvino: unknown precision '{options.precision}'; "
                          f"choose one of: {', '.join(p for p in PRECISION_HINTS if p)}")
    wanted = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[options.precision]}
    if options.threads > 0:
        wanted["INFERENCE_NUM_THREADS"] = options.threads
    for hw in hardware_devices(core, device):
        supported = set(core.get_property(hw, "SUPPORTED_PROPERTIES"))
        props = {k: v for k, v in wanted.items() if k in supported}
        skipped = sorted(set(wanted) - set(props))
        if skipped:
            log.info("openvino: device %s does not take %s", hw, ", ".join(skipped))
        if props:
            core.set_property(hw, props)
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
    if hint != "LATENCY" and options.instances > 1:
        config["PERFORMANCE_HINT_NUM_REQUESTS"] = options.instances
    config.update(options.extra.get("config") or {})
    return config


def compile_model(core, model, device: str, config: dict[str, Any]):
    from sut.errors import BackendUnavailable

    try:
        return core.compile_model(model, device, config)
    except RuntimeError as exc:
        raise BackendUnavailable(f"OpenVINO could not compile the model for device '{device}' "
                                 f"with {config}: {exc}") from exc


def compiled_properties(compiled) -> dict[str, str]:
    """The compiled model's settings worth recording (those the device reports)."""
    out = {}
    for key in ("EXECUTION_DEVICES", "PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT", "NUM_STREAMS",
                "INFERENCE_NUM_THREADS", "OPTIMAL_NUMBER_OF_INFER_REQUESTS"):
        try:
            value = compiled.get_property(key)
        except RuntimeError:
            continue
        out[key] = value.to_string() if hasattr(value, "to_string") else str(value)
    return out


def native_throughput(model_path: str, seconds: float = 10.0, device: str = "CPU",
                      precision: str | None = None, batch_size: int = 1) -> float:
    """OpenVINO's own best throughput for a model, in samples per second.

    The reference for the harness's Offline figure: compiled with
    ``PERFORMANCE_HINT=THROUGHPUT`` and driven by an ``AsyncInferQueue`` of
    ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` jobs (as ``benchmark_app`` does), fed
    one constant random batch so no data loading or preprocessing is timed.
    """
    from backends.base import BackendOptions

    ov = require_module("openvino", "openvino", "openvino")
    core = ov.Core()
    check_device(core, device)
    model = read_model(core, model_path)
    batch = set_batch(ov, model, batch_size)
    options = BackendOptions(precision=precision, max_batch_size=batch_size)
    compiled = compile_model(core, model, device, compile_config(core, device, options, "THROUGHPUT"))
    port = model.inputs[0]
    shape = (batch, *sample_shape(port))
    data = random_input(np.dtype(port.get_element_type().to_dtype()), shape)
    queue = ov.AsyncInferQueue(compiled, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        queue.start_async({0: data}, share_inputs=True)
        done += 1
    queue.wait_all()
    elapsed = time.perf_counter() - start
    return done * batch / elapsed


def random_input(dtype: np.dtype, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)
