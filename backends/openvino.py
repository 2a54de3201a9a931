"""OpenVINO backend: IR (.xml/.bin), ONNX and .tflite models on CPU, GPU, NPU, AUTO, MULTI...

Uses the OpenVINO 2.0 API: ``import openvino`` (2023.1+) or, on 2022.1-2023.0,
``openvino.runtime`` (2022.3 LTS is the last release with the NCS2 / MYRIAD
plugin, in its archive distribution). How those releases differ is decided
in one place, :class:`Runtime`, by what the installed module has. When only
the 2021.4 ``IECore`` API is installed the work is handed to
:mod:`backends.openvino_legacy`.

Settings taken from :class:`BackendOptions`:

* ``device``: ``CPU`` (default), ``GPU``, ``GPU.1``, ``NPU``, ``MYRIAD``,
  ``AUTO``, ``MULTI:GPU,CPU``, ``HETERO:...``; a device OpenVINO does not list
  raises BackendUnavailable with the list, and says when the installed
  OpenVINO has no plugin for it (MYRIAD outside the 2022.3 archive install).
  A float input is fed as fp16 on MYRIAD (a ``PrePostProcessor`` converts it
  on the device), so the dataset cache holds fp16 tensors.
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

An IR written by a newer OpenVINO than the installed one is not guaranteed to
load (2022.3 reads the 2026 IR in ``../shared`` but cannot compile it): when
reading or compiling such an IR fails, the error says which versions wrote
and read it and what to do instead (ModelError).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import re
import time
from typing import Any

import numpy as np

from backends.base import Backend, ModelInfo, TensorSpec, check_model_file
from sut.errors import BackendUnavailable, ConfigError, HarnessError, ModelError

log = logging.getLogger(__name__)

MODEL_SUFFIXES = (".xml", ".onnx", ".tflite")
PRECISION_HINTS = {None: "f32", "fp32": "f32", "int8": "f32", "fp16": "f16", "bf16": "bf16"}
PERFORMANCE_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")
COMPOSITE_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
EXTRA_OPTIONS = ("performance_hint", "config", "input_scale", "input_zero_point")
#: ops that pass an input through unchanged on the way to its FakeQuantize
PASS_THROUGH_OPS = ("Convert", "Transpose", "Reshape", "Squeeze", "Unsqueeze")
#: devices that compute in fp16 and take fp16 inputs (the NCS2 and its HDDL cards)
FP16_DEVICES = ("MYRIAD", "HDDL")
#: compile properties that only some devices take (a single device that does not list them is not sent them)
HINT_PROPERTIES = ("PERFORMANCE_HINT", "PERFORMANCE_HINT_NUM_REQUESTS")
NCS2_INSTALL = ("the NCS2 needs the OpenVINO 2022.3 LTS archive install (source its setupvars.sh; Python 3.7-3.10) "
                "or pip install openvino==2021.4.2 (Python 3.6-3.9): the PyPI wheels of 2022.x have no MYRIAD "
                "plugin and OpenVINO 2023.0 removed it")


class OpenVINOBackend(Backend):
    name = "openvino"
    extra_name = "openvino"
    #: INFERENCE_PRECISION_HINT f32/f16; int8: a float ONNX model runs as its calibrated Q/DQ copy
    precisions = ("fp32", "fp16", "bf16")

    @property
    def qdq_int8(self) -> bool:
        """Not on 2021.4 (IECore), which cannot read the Q/DQ copy (see backends/openvino_legacy.py)."""
        return not _legacy_installed()

    def supported_precisions(self, model_path=None):
        if _legacy_installed():
            from backends.openvino_legacy import OpenVINOLegacyBackend

            return OpenVINOLegacyBackend(self.options).supported_precisions(model_path)
        return super().supported_precisions(model_path)

    def check_precision(self, precision, model_path=None):
        if _legacy_installed():  # 2021.4's own rules and reasons
            from backends.openvino_legacy import OpenVINOLegacyBackend

            return OpenVINOLegacyBackend(self.options).check_precision(precision, model_path)
        return super().check_precision(precision, model_path)

    def __init__(self, options=None):
        super().__init__(options)
        self._legacy: Backend | None = None
        self._runtime: Runtime | None = None
        self._requests: list = []
        self._compiled = None
        self._core = None  # kept while the compiled model lives: 2022.3's properties need it
        self._device = "CPU"
        self._hint = "LATENCY"

    # --- load ------------------------------------------------------------------
    def load_impl(self, model_path):
        check_extra(self.options.extra)
        check_model_file(model_path, MODEL_SUFFIXES, self.name)
        runtime = installed_runtime()
        if runtime is None:
            from backends.openvino_legacy import OpenVINOLegacyBackend

            self._legacy = OpenVINOLegacyBackend(self.options)
            return self._legacy.load_impl(model_path)
        self._runtime = runtime
        ov = runtime.ov
        self._device = self.options.device or "CPU"
        self._core = core = ov.Core()
        check_device(core, self._device, runtime)
        model = read_model(core, model_path, runtime)
        input_spec = describe_input(model, self.options.extra)
        output_spec = describe_output(model)
        max_batch = set_batch(ov, model, self.options.max_batch_size)
        if input_spec.dtype.kind == "f" and takes_fp16(self._device):
            model = runtime.input_element_type(model, ov.Type.f16)
            input_spec = TensorSpec(input_spec.name, input_spec.shape, np.float16, input_spec.layout)
        self._hint = performance_hint(self.options)
        config = compile_config(core, self._device, self.options, self._hint)
        self._compiled = compile_model(core, model, self._device, config, model_path, runtime)
        warn_if_newer_ir(model_path, runtime)
        count = self._request_count()
        self._requests = [_Request(runtime, self._compiled.create_infer_request(), self._compiled.inputs[0])
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
        return optimal_requests(self._compiled)

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
        self._core = None

    # --- reporting ---------------------------------------------------------------
    def version(self):
        if self._legacy is not None:
            return self._legacy.version()
        runtime = self._runtime
        if runtime is None:
            try:
                runtime = installed_runtime()
            except Exception:  # BackendUnavailable, or a broken install: version() only reports
                runtime = None
            if runtime is None:
                from backends.openvino_legacy import installed_version

                return installed_version()
        return f"openvino {runtime.version}"

    def describe(self):
        if self._legacy is not None:
            return {**self._legacy.describe(), "precision": self.applied_precision()}
        out = super().describe()
        out.update({"device": self._device, "performance_hint": self._hint,
                    "infer_requests": len(self._requests)})
        if self._compiled is not None:
            out["compiled"] = compiled_properties(self._compiled)
        return out

    def applied_precision(self):
        if self._legacy is not None and not self.qdq_path:
            return self._legacy.applied_precision()
        return super().applied_precision()

    def runtime_precision(self):
        """The compiled model's INFERENCE_PRECISION_HINT and the precisions its
        convolution/matmul layers run in (the runtime model's ``runtimePrecision``)."""
        if self._legacy is not None:
            return self._legacy.runtime_precision()
        if self._compiled is None:
            return None
        hint = compiled_properties(self._compiled).get("INFERENCE_PRECISION_HINT", "?")
        counts: dict = {}
        try:
            for op in self._compiled.get_runtime_model().get_ordered_ops():
                info = op.get_rt_info()
                kind = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
                if kind in ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul"):
                    precision = info["runtimePrecision"].astype(str)
                    counts[precision] = counts.get(precision, 0) + 1
        except (AttributeError, KeyError, RuntimeError, TypeError):
            counts = {}
        layers = ", ".join(f"{n} in {p}" for p, n in sorted(counts.items()))
        return f"{hint} (INFERENCE_PRECISION_HINT)" + (f"; conv/matmul layers: {layers}" if layers else "")


class _Request:
    """One infer request, fed the cheapest way the installed OpenVINO allows.

    ``infer({0: batch}, share_inputs=True)`` runs OpenVINO's Python input
    dispatcher and builds an output dict on every call (about 20 us on a small
    CPU, 2-3% of a 0.25 MobileNet inference). A C-contiguous, writeable batch of
    the input's own dtype is wrapped in a Tensor that shares its memory and set
    directly instead; anything else (another dtype, a read-only or strided view)
    still goes through the dispatcher, which converts or copies it.
    """

    __slots__ = ("request", "tensor", "shared_dtype", "share")

    def __init__(self, runtime: Runtime, request, port):
        self.request = request
        self.tensor = runtime.ov.Tensor
        self.shared_dtype = _shareable_dtype(runtime.ov, port.get_element_type())
        self.share = runtime.infer_sharing

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        request = self.request
        flags = batch.flags
        if batch.dtype == self.shared_dtype and flags.c_contiguous and flags.writeable:
            if batch.strides[0] * len(batch) != batch.nbytes:  # e.g. x[None]: stride 0, which 2022.3 refuses
                batch = batch.reshape(-1).reshape(batch.shape)
            request.set_input_tensor(self.tensor(batch, shared_memory=True))
            request.infer(**self.share["outputs"])
        else:
            request.infer({0: batch}, **self.share["both"])
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


# --- the installed OpenVINO --------------------------------------------------------------
class Runtime:
    """The installed OpenVINO 2.0 API, and the one place where its releases differ.

    Told apart by what the module has, not by version strings:

    * ``ov``: ``openvino`` when it has ``Core`` (2023.1+), else ``openvino.runtime``
      (2022.1-2023.0; 2022.3 LTS is the last release with MYRIAD).
    * ``infer_sharing``: keywords that let ``InferRequest.infer`` use the caller's
      input and keep outputs in the request: ``share_inputs``/``share_outputs``
      (2023.1+), ``shared_memory`` (2023.0, inputs only), none (2022.x copies).
      ``queue_sharing``: the same for ``AsyncInferQueue.start_async``.
    * ``property_text``: properties come back as ``Type`` (``to_string`` on 2023+,
      ``get_type_name`` on 2022.x), pybind enums (2022.x: ``PerformanceMode.THROUGHPUT``)
      or plain values.
    * ``opset`` / ``save_model``: the newest ``opsetN`` module and ``save_model``
      (2023.1+) or ``serialize`` (2022.x), for building small test models.
    """

    def __init__(self, ov):
        self.ov = ov
        self.version = str(ov.get_version())
        self.infer_sharing = {"outputs": _sharing_keywords(ov.InferRequest.infer, inputs=False),
                              "both": _sharing_keywords(ov.InferRequest.infer, inputs=True)}
        self.queue_sharing = _sharing_keywords(ov.AsyncInferQueue.start_async, inputs=True)

    def input_element_type(self, model, element_type):
        """``model`` with its (only) input taken as ``element_type`` and converted inside."""
        from openvino.preprocess import PrePostProcessor  # 2022.1+, same place in every release

        ppp = PrePostProcessor(model)
        ppp.input().tensor().set_element_type(element_type)
        return ppp.build()

    @staticmethod
    def property_text(value) -> str:
        if hasattr(value, "to_string"):
            return value.to_string()
        if hasattr(value, "get_type_name"):  # ov.Type on 2022.x
            return value.get_type_name()
        if hasattr(value, "__members__") and hasattr(value, "name"):  # a pybind enum on 2022.x
            return str(value.name)
        return str(value)

    def opset(self):
        """The newest complete ``opsetN`` module (one with ``parameter``; 2026's newest hold only new ops)."""
        base = self.ov.__name__  # openvino.runtime.opsetN (2022.x / 2023.0) or openvino.opsetN
        for n in range(30, 0, -1):
            name = f"{base}.opset{n}"
            try:
                if importlib.util.find_spec(name) is None:
                    continue
            except ImportError:
                continue
            module = importlib.import_module(name)
            if hasattr(module, "parameter"):
                return module
        raise RuntimeError(f"no opset module with 'parameter' under {base}")

    def save_model(self, model, path: str) -> None:
        if hasattr(self.ov, "save_model"):
            self.ov.save_model(model, path)
        else:
            self.ov.serialize(model, path)


def _sharing_keywords(method, inputs: bool) -> dict[str, bool]:
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):  # a C++ method without a Python signature: no sharing keywords
        return {}
    if "share_inputs" in params:
        keywords = {"share_inputs": True} if inputs else {}
        if "share_outputs" in params:
            keywords["share_outputs"] = True
        return keywords
    if inputs and "shared_memory" in params:
        return {"shared_memory": True}
    return {}


def api_module():
    """The module with the 2.0 API's ``Core``, or None when only IECore (2021.4) is installed.

    Raises BackendUnavailable when no OpenVINO is installed.
    """
    try:
        ov = importlib.import_module("openvino")
    except ImportError as exc:
        raise BackendUnavailable(
            f"backend 'openvino' needs the Python module 'openvino', which is not installed ({exc}); "
            "pip install -e '.[openvino]'") from exc
    if hasattr(ov, "Core"):
        return ov
    try:
        runtime = importlib.import_module("openvino.runtime")
    except ImportError:
        runtime = None
    if runtime is not None and hasattr(runtime, "Core"):
        return runtime
    try:
        importlib.import_module("openvino.inference_engine")
    except ImportError as exc:
        raise BackendUnavailable(
            f"the installed 'openvino' package has neither openvino.Core, openvino.runtime.Core nor "
            f"openvino.inference_engine ({exc}); pip install -e '.[openvino]'") from exc
    return None


def _legacy_installed() -> bool:
    """Whether the installed OpenVINO is the 2021.4 IECore API (False when none is installed)."""
    try:
        return installed_api() == "legacy"
    except HarnessError:
        return False


def installed_runtime() -> Runtime | None:
    """The installed 2.0 API as a :class:`Runtime`; None for the 2021.4 IECore API."""
    ov = api_module()
    return None if ov is None else Runtime(ov)


def installed_api() -> str:
    """``"2.0"`` when the 2.0 API is installed, ``"legacy"`` for the 2021.4 IECore API.

    Raises BackendUnavailable when neither is installed.
    """
    return "legacy" if api_module() is None else "2.0"


def one_line(exc: BaseException, limit: int = 240) -> str:
    """The first non-empty line of an exception's message (OpenVINO's run to many lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def release(version: str) -> tuple[int, int] | None:
    """(year, release) of an OpenVINO version string: ``"2022.3.2-9279-..."`` -> (2022, 3)."""
    found = re.match(r"\s*(\d{4})\.(\d+)", version or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


def ir_writer(model_path: str) -> str | None:
    """The OpenVINO version that wrote an IR (.xml), from its ``rt_info``; None if not said."""
    if not model_path.lower().endswith(".xml"):
        return None
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(model_path).getroot()
    except (OSError, ET.ParseError):
        return None
    info = root.find("rt_info")
    if info is None:
        return None
    for tag in ("Runtime_version", "MO_version"):
        node = info.find(tag)
        if node is not None and node.get("value"):
            return node.get("value")
    for node in info.iter("info"):
        if node.get("name") in ("OpenVINO Runtime", "MO_version") and node.get("value"):
            return node.get("value")
    return None


def _short_version(version: str) -> str:
    """``"2026.4.1-22982-e213a147257-releases/2026/4"`` -> ``"2026.4.1"``."""
    return version.split("-")[0].strip()


def newer_ir_error(model_path: str, installed: str, exc: BaseException):
    """A ModelError when ``model_path`` is an IR written by a newer OpenVINO than ``installed``, else None."""
    writer = ir_writer(model_path)
    if writer is None or release(writer) is None or release(installed) is None:
        return None
    if release(writer) <= release(installed):
        return None
    short = _short_version
    return ModelError(
        f"{model_path} is an IR written by OpenVINO {short(writer)}, newer than the installed OpenVINO "
        f"{short(installed)} can read ({one_line(exc, 120)}); use the ONNX model instead, or re-convert it "
        f"with OpenVINO {short(installed)}'s Model Optimizer (mo --input_model model.onnx)")


def check_extra(extra) -> None:
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


def check_device(core, device: str, runtime: Runtime) -> None:
    """Raise BackendUnavailable unless every device in ``device`` is available.

    For a device that is not listed, the error says whether the installed
    OpenVINO has no plugin for it (MYRIAD: how to get one) or the plugin found
    no device.
    """
    available = list(core.available_devices)
    known = set(available) | {d.split(".")[0] for d in available}
    missing = [d for d in hardware_devices(core, device) if d not in known]
    for name in missing:
        reason = missing_device_reason(core, name, runtime.version)
        if reason:
            raise BackendUnavailable(f"{reason}; this machine has: {', '.join(available) or 'none'}")
    if missing or not available:
        raise BackendUnavailable(
            f"OpenVINO device '{device}' is not available (missing: {', '.join(missing) or device}); "
            f"this machine has: {', '.join(available) or 'none'} (or AUTO / MULTI:<list> of them)")


def plugin_state(core, base: str) -> tuple[bool, str | None]:
    """(registered, load problem) of the plugin for device ``base``.

    ``Core.get_versions`` loads the plugin: 2022.x raises 'not registered' for a
    device it has no plugin for (2023+ returns nothing), and any release raises
    the loader's message when the plugin's library does not load (e.g. libusb).
    """
    try:
        versions = core.get_versions(base)
    except RuntimeError as exc:
        if "not registered" in str(exc):
            return False, None
        return True, one_line(exc)
    return bool(versions), None


def missing_device_reason(core, name: str, version: str) -> str | None:
    """Why OpenVINO device ``name`` is missing, for MYRIAD/HDDL; None for other devices."""
    base = name.split(".")[0].upper()
    if base not in FP16_DEVICES:
        return None
    registered, problem = plugin_state(core, base)
    if not registered:
        return (f"OpenVINO {_short_version(version)} has no {base} plugin, so device '{name}' (Intel NCS2) "
                f"cannot be used: {NCS2_INSTALL}")
    if problem:
        hint = " (install libusb: apt install libusb-1.0-0)" if "libusb" in problem else ""
        return f"OpenVINO's {base} plugin for device '{name}' does not load: {problem}{hint}"
    return (f"no Intel NCS2 found for device '{name}': plug it in and install the udev rules "
            "(install_dependencies/install_NCS_udev_rules.sh in the OpenVINO install)")


def read_model(core, model_path: str, runtime: Runtime):
    try:
        model = core.read_model(model_path)
    except RuntimeError as exc:
        raise read_error(model_path, runtime, exc) from exc
    if len(model.inputs) != 1:
        names = [port_name(i) for i in model.inputs]
        raise ModelError(f"{model_path} has {len(names)} inputs ({', '.join(names)}); the harness feeds one")
    return model


def warn_if_newer_ir(model_path: str, runtime: Runtime) -> None:
    """Warn about an IR from a newer OpenVINO that did load (older releases do not promise to read it)."""
    writer = ir_writer(model_path)
    if writer and release(writer) and release(runtime.version) and release(writer) > release(runtime.version):
        log.warning("openvino: %s was written by OpenVINO %s, newer than the installed %s; "
                    "re-convert it if its results look wrong", model_path,
                    _short_version(writer), _short_version(runtime.version))


def read_error(model_path: str, runtime: Runtime, exc: BaseException):
    """The ModelError for a model OpenVINO could not read: a newer IR, a format this release
    has no frontend for (.tflite before 2023.0), or OpenVINO's own first line."""
    newer = newer_ir_error(model_path, runtime.version, exc)
    if newer is not None:
        return newer
    suffix = os.path.splitext(model_path)[1].lower().lstrip(".")
    frontends = available_frontends()
    if suffix == "tflite" and frontends is not None and "tflite" not in frontends:
        return ModelError(f"OpenVINO {_short_version(runtime.version)} cannot read .tflite models (it reads "
                          f"{', '.join(sorted(frontends))}; .tflite needs OpenVINO 2023.0+): "
                          f"use the ONNX model or an IR converted by this version")
    return ModelError(f"OpenVINO cannot read {model_path}: {one_line(exc)}")


def available_frontends() -> list[str] | None:
    try:
        from openvino.frontend import FrontEndManager

        return list(FrontEndManager().get_available_front_ends())
    except (ImportError, AttributeError, RuntimeError):
        return None


def takes_fp16(device: str) -> bool:
    """True for MYRIAD/HDDL (and MULTI/HETERO of only those): their inputs are fed as fp16."""
    base, _, listed = device.partition(":")
    names = [d.strip() for d in listed.split(",") if d.strip()] if base.upper() in COMPOSITE_DEVICES else [device]
    return bool(names) and all(n.split(".")[0].upper() in FP16_DEVICES for n in names)


def image_layout(shape: tuple[int, ...]) -> str | None:
    """NHWC for (H, W, 3), NCHW for (3, H, W), None otherwise (per-sample shape)."""
    if len(shape) == 3 and shape[-1] == 3 and shape[0] != 3:
        return "NHWC"
    if len(shape) == 3 and shape[0] == 3:
        return "NCHW"
    return None


def port_name(port) -> str:
    """A tensor's name; its node's name when the tensor has none (2022.3 raises for ``any_name`` then)."""
    try:
        return port.any_name
    except RuntimeError:
        return port.get_node().get_friendly_name()


def sample_shape(port) -> tuple[int, ...]:
    """Shape without the batch dimension; ModelError if any other dimension is dynamic."""
    dims = list(port.get_partial_shape())[1:]
    if any(d.is_dynamic for d in dims):
        raise ModelError(f"tensor '{port_name(port)}' has dynamic dimensions {port.get_partial_shape()}; "
                         "only the batch dimension may be dynamic")
    return tuple(d.get_length() for d in dims)


def describe_input(model, extra) -> TensorSpec:
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
                f"input '{port_name(port)}' is {dtype.name} but the model does not say how to quantise it "
                "(no FakeQuantize after the input); set backend_options input_scale and input_zero_point")
    return TensorSpec(port_name(port), shape, dtype, image_layout(shape), scale, zero_point)


def describe_output(model) -> TensorSpec:
    port = model.outputs[0]
    shape = sample_shape(port)
    dtype = np.dtype(port.get_element_type().to_dtype())
    scale = zero_point = None
    if dtype.kind in "iu":
        scale, zero_point = output_quantization(port.get_node())
    return TensorSpec(port_name(port), shape, dtype, None, scale, zero_point)


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
    A single device that does not list the performance hints (none today; the
    check keeps old plugins working) is compiled without them.
    """
    if options.precision not in PRECISION_HINTS:
        raise ConfigError(f"openvino: unknown precision '{options.precision}'; "
                          f"choose one of: {', '.join(p for p in PRECISION_HINTS if p)}")
    wanted = {"INFERENCE_PRECISION_HINT": PRECISION_HINTS[options.precision]}
    if options.threads > 0:
        wanted["INFERENCE_NUM_THREADS"] = options.threads
    supported_by = {}
    for hw in hardware_devices(core, device):
        supported_by[hw] = supported = set(core.get_property(hw, "SUPPORTED_PROPERTIES"))
        props = {k: v for k, v in wanted.items() if k in supported}
        skipped = sorted(set(wanted) - set(props))
        if skipped:
            log.info("openvino: device %s does not take %s", hw, ", ".join(skipped))
        if props:
            core.set_property(hw, props)
    config: dict[str, Any] = {"PERFORMANCE_HINT": hint}
    if hint != "LATENCY" and options.instances > 1:
        config["PERFORMANCE_HINT_NUM_REQUESTS"] = options.instances
    if list(supported_by) == [device]:
        dropped = [k for k in HINT_PROPERTIES if k in config and k not in supported_by[device]]
        for key in dropped:
            log.info("openvino: device %s does not take %s", device, key)
            del config[key]
    config.update(options.extra.get("config") or {})
    return config


def compile_model(core, model, device: str, config: dict[str, Any], model_path: str = "",
                  runtime: Runtime | None = None):
    try:
        return core.compile_model(model, device, config)
    except RuntimeError as exc:
        newer = newer_ir_error(model_path, runtime.version, exc) if runtime and model_path else None
        if newer is not None:
            raise newer from exc
        raise BackendUnavailable(f"OpenVINO could not compile the model for device '{device}' "
                                 f"with {config}: {one_line(exc)}") from exc


def optimal_requests(compiled) -> int:
    """The compiled model's ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` (1 with a warning if not reported)."""
    try:
        return max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    except RuntimeError as exc:
        log.warning("openvino: the device does not report OPTIMAL_NUMBER_OF_INFER_REQUESTS (%s); "
                    "using 1 infer request", one_line(exc))
        return 1


def compiled_properties(compiled) -> dict[str, str]:
    """The compiled model's settings worth recording (those the device reports)."""
    out = {}
    for key in ("EXECUTION_DEVICES", "PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT", "NUM_STREAMS",
                "INFERENCE_NUM_THREADS", "OPTIMAL_NUMBER_OF_INFER_REQUESTS"):
        try:
            value = compiled.get_property(key)
        except RuntimeError:
            continue
        out[key] = Runtime.property_text(value)
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
    runtime = installed_runtime()
    if runtime is None:
        raise BackendUnavailable("native_throughput needs the OpenVINO 2.0 API (2022.1+); "
                                 "the installed OpenVINO has only IECore")
    ov = runtime.ov
    core = ov.Core()
    check_device(core, device, runtime)
    model = read_model(core, model_path, runtime)
    batch = set_batch(ov, model, batch_size)
    options = BackendOptions(precision=precision, max_batch_size=batch_size)
    compiled = compile_model(core, model, device, compile_config(core, device, options, "THROUGHPUT"),
                             model_path, runtime)
    port = model.inputs[0]
    shape = (batch, *sample_shape(port))
    data = random_input(np.dtype(port.get_element_type().to_dtype()), shape)
    queue = ov.AsyncInferQueue(compiled, optimal_requests(compiled))
    done = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        queue.start_async({0: data}, **runtime.queue_sharing)
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
