"""OpenVINO 2021.4 (``IECore`` API): the only release with the NCS2 / MYRIAD plugin.

:class:`backends.openvino.OpenVINOBackend` hands its work to this class when
the installed ``openvino`` has ``openvino.inference_engine`` but no
``openvino.Core`` (``pip install openvino==2021.4.2``, Python 3.6-3.9).

* Models: IR (.xml + .bin beside it, written by the 2021.4 Model Optimizer:
  IR v10) or ONNX. One input, one output; batch 1 (MYRIAD has no dynamic batch).
  An IR from a newer converter (IR v11) cannot be read: ModelError says so.
* Float inputs are fed as FP16 on MYRIAD/HDDL (and GPU when ``precision="fp16"``),
  as the NCS2 port of the MLPerf reference did: the input precision is set to
  FP16 and ModelInfo reports float16, so the dataset's cache holds fp16 tensors
  and no conversion happens on the host at run time. 2021.4's CPU plugin refuses
  FP16 input ("Input image format FP16 is not supported yet"), so
  ``precision="fp16"`` on the CPU is a ConfigError. Integer (quantised) inputs
  keep their precision; their scale/zero point come from ``backend_options``
  ``input_scale``/``input_zero_point`` (the 2021.4 API does not expose them).
* ``instances``: that many infer requests (0 -> the device's optimal number,
  ``load_network(num_requests=0)``); predict runs request ``instance``
  synchronously.
* Precision (:meth:`OpenVINOLegacyBackend.check_precision`, asked by the
  harness before any run): MYRIAD/HDDL compute in FP16 only, so they take
  ``fp16`` alone; the CPU takes ``fp32`` (its plugin refuses FP16 input) and
  ``int8`` of a model that is already quantised (ONNX Q/DQ, an IR with
  FakeQuantize layers). ``int8`` of a float ONNX model is refused: 2021.4's
  ONNX importer rejects the Q/DQ copy that :mod:`backends.int8_calibration`
  makes (a per-tensor ``DequantizeLinear`` of a 1-D bias fails its axis
  check: "Parameter axis 1 out of the tensor rank range [-1, 0]"), so the
  OpenVINO backend does not swap one in here. ``bf16`` is not applied by
  this API. ``describe()["precision"]`` adds what the executable graph says
  its convolution/matmul layers run in (on a CPU without VNNI the Q/DQ
  MobileNet's convolutions run in FP32 on 2021.4.2).

Tested for real on the CPU with ``openvino==2021.4.2`` on Python 3.9
(``.ci/compat/openvino-2021.4.sh``); MYRIAD is tested with the runtime module
faked (tests/backends/fake_openvino_legacy.py, checked against the real
module's API there): untested on an NCS2.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from backends.base import Backend, ModelInfo, TensorSpec, check_model_file, require_module
from backends.openvino import FP16_DEVICES, NCS2_INSTALL, newer_ir_error, one_line, release
from sut.errors import BackendUnavailable, ConfigError, ModelError

log = logging.getLogger(__name__)

#: IE precision name -> NumPy dtype
PRECISIONS = {"FP32": np.float32, "FP16": np.float16, "U8": np.uint8, "I8": np.int8,
              "I16": np.int16, "U16": np.uint16, "I32": np.int32, "I64": np.int64}


class OpenVINOLegacyBackend(Backend):
    name = "openvino"
    extra_name = "openvino"
    precisions = ("fp32", "fp16", "int8")

    def __init__(self, options=None):
        super().__init__(options)
        self._exec_net = None
        self._input_name = ""
        self._output_name = ""
        self._output_shape: tuple[int, ...] = ()
        self._device = "CPU"
        self._ie = None

    def supported_precisions(self, model_path=None):
        """fp16 alone on MYRIAD/HDDL; no fp16 where the CPU is one of the devices."""
        names = [n.split(".")[0].upper() for n in device_names(self.options.device or "CPU")]
        if all(n in FP16_DEVICES for n in names):
            return ("fp16",)
        return tuple(p for p in self.precisions if not (p == "fp16" and "CPU" in names))

    def check_precision(self, precision, model_path=None):
        """Backend.check_precision with this API's reasons: the CPU plugin refuses FP16 input,
        the NCS2 computes in FP16 only, int8 needs a model that is already quantised."""
        names = [n.split(".")[0].upper() for n in device_names(self.options.device or "CPU")]
        if precision == "fp16" and "CPU" in names:
            raise ConfigError(f"OpenVINO 2021.4's CPU plugin refuses fp16 input (device '{self._device_name()}'): "
                              "use precision fp32 on the CPU, fp16 on MYRIAD or GPU")
        if precision not in (None, "fp16") and all(n in FP16_DEVICES for n in names):
            raise ConfigError(f"device '{self._device_name()}' (the NCS2) computes in FP16 only: use precision "
                              f"fp16 or leave it unset, not {precision}")
        super().check_precision(precision, model_path)
        if precision == "int8" and model_path:
            reason = _not_quantised(model_path)
            if reason:
                raise ConfigError(f"OpenVINO 2021.4 cannot apply precision int8 to {model_path}: {reason}")

    def _device_name(self) -> str:
        return self.options.device or "CPU"

    def applied_precision(self) -> str:
        asked = self.options.precision
        head = ("int8 (the model's own quantisation)" if asked == "int8" else asked) or "the model's own"
        runtime = self.runtime_precision()
        return f"{head}; {runtime}" if runtime else head

    def runtime_precision(self):
        """What 2021.4's executable graph says its convolution/matmul layers run in; None if it cannot say."""
        if self._exec_net is None:
            return None
        try:
            import ngraph

            function = ngraph.function_from_cnn(self._exec_net.get_exec_graph_info())
            counts: dict = {}
            for op in function.get_ordered_ops():
                info = op.get_rt_info()
                kind, precision = str(info["layerType"].get()), str(info["runtimePrecision"].get())
                if kind in ("Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul"):
                    counts[precision] = counts.get(precision, 0) + 1
        except Exception:  # noqa: BLE001 - a plugin without an executable graph, or no ngraph module
            return None
        if not counts:
            return None
        return "conv/matmul layers: " + ", ".join(f"{n} in {p}" for p, n in sorted(counts.items()))

    def load_impl(self, model_path):
        check_model_file(model_path, (".xml", ".onnx"), self.name)
        engine = require_module("openvino.inference_engine", self.name, self.extra_name)
        check_floor(engine.get_version())
        self._device = self.options.device or "CPU"
        self._ie = engine.IECore()
        check_device(self._ie, self._device)
        try:
            network = self._ie.read_network(model=model_path, weights=weights_path(model_path))
        except Exception as exc:  # the 2021.4 bindings raise plain Exception/RuntimeError
            newer = newer_ir_error(model_path, engine.get_version(), exc)
            raise (newer or ModelError(f"OpenVINO 2021.4 cannot read {model_path}: {one_line(exc)}")) from exc
        if len(network.input_info) != 1 or len(network.outputs) != 1:
            raise ModelError(f"{model_path} has {len(network.input_info)} inputs and "
                             f"{len(network.outputs)} outputs; the harness feeds one and reads one")
        if self.options.max_batch_size > 1:
            log.warning("openvino (2021.4): batches are one sample; ignoring max_batch_size=%d",
                        self.options.max_batch_size)
        input_spec = self._configure_input(network)
        output_spec = self._configure_output(network)
        try:
            self._exec_net = self._ie.load_network(network=network, device_name=self._device,
                                                   config=self._config(), num_requests=max(0, self.options.instances))
        except Exception as exc:
            raise BackendUnavailable(f"OpenVINO 2021.4 could not load the model on '{self._device}': "
                                     f"{one_line(exc)}") from exc
        return ModelInfo(inputs=(input_spec,), outputs=(output_spec,), max_batch_size=1,
                         instances=len(self._exec_net.requests))

    def _configure_input(self, network) -> TensorSpec:
        self._input_name = next(iter(network.input_info))
        info = network.input_info[self._input_name]
        if info.precision in ("FP32", "FP16"):
            info.precision = "FP16" if self._wants_fp16() else "FP32"
        elif info.precision not in PRECISIONS:
            raise ModelError(f"input '{self._input_name}' has precision {info.precision}; "
                             f"supported: {', '.join(PRECISIONS)}")
        shape = tuple(info.input_data.shape)[1:]
        layout = info.layout if info.layout in ("NCHW", "NHWC") else None
        dtype = np.dtype(PRECISIONS[info.precision])
        scale = zero_point = None
        if dtype.kind in "iu":
            extra = self.options.extra
            if "input_scale" not in extra or "input_zero_point" not in extra:
                raise ModelError(f"input '{self._input_name}' is {dtype.name}; OpenVINO 2021.4 does not "
                                 "report its quantisation: set backend_options input_scale and input_zero_point")
            scale, zero_point = float(extra["input_scale"]), int(extra["input_zero_point"])
        return TensorSpec(self._input_name, shape, dtype, layout, scale, zero_point)

    def _configure_output(self, network) -> TensorSpec:
        self._output_name = next(iter(network.outputs))
        data = network.outputs[self._output_name]
        data.precision = "FP32"
        self._output_shape = tuple(data.shape)[1:]
        return TensorSpec(self._output_name, self._output_shape, np.float32)

    def _wants_fp16(self) -> bool:
        """FP16 input on MYRIAD/HDDL, or when fp16 is asked for; ConfigError on the CPU, which refuses it."""
        names = device_names(self._device)
        if all(n.split(".")[0].upper() in FP16_DEVICES for n in names):
            return True
        if self.options.precision != "fp16":
            return False
        if any(n.split(".")[0].upper() == "CPU" for n in names):
            raise ConfigError(f"OpenVINO 2021.4's CPU plugin refuses fp16 input (device '{self._device}'): "
                              "use precision fp32 on the CPU, fp16 on MYRIAD or GPU")
        return True

    def _config(self) -> dict[str, str]:
        config = {}
        if self.options.threads > 0 and self._device.upper().startswith("CPU"):
            config["CPU_THREADS_NUM"] = str(self.options.threads)
        config.update({str(k): str(v) for k, v in (self.options.extra.get("config") or {}).items()})
        return config

    def predict_impl(self, batch, instance):
        request = self._exec_net.requests[instance]
        request.infer({self._input_name: batch})
        out = request.output_blobs[self._output_name].buffer
        return np.array(out, copy=True).reshape(len(batch), *self._output_shape)

    def close_impl(self):
        self._exec_net = None

    def version(self):
        return installed_version()

    def describe(self):
        out = {**super().describe(), "api": "IECore (2021.4)", "device": self._device,
               "infer_requests": len(self._exec_net.requests) if self._exec_net else 0}
        if self._ie is not None:
            try:
                out["device_name"] = str(self._ie.get_metric(self._device, "FULL_DEVICE_NAME"))
            except Exception:  # not every plugin reports it
                pass
        return out


def _not_quantised(model_path: str) -> str | None:
    """Why ``model_path`` cannot run int8 here (it is float), or None when it is quantised."""
    if model_path.lower().endswith(".xml"):
        try:
            with open(model_path, encoding="utf-8", errors="replace") as f:
                quantised = 'type="FakeQuantize"' in f.read()
        except OSError:
            return None  # load reports a missing file
        return None if quantised else ("the IR has no FakeQuantize layers, and this API runs int8 only from a "
                                       "model quantised beforehand (e.g. with the Post-training Optimization Tool)")
    if not model_path.lower().endswith(".onnx"):
        return None
    from backends import int8_calibration
    try:
        own = int8_calibration.model_precision(model_path)
    except BackendUnavailable:
        return ("whether the model is quantised is read with the 'onnx' module, which is not installed "
                "(pip install onnx)")
    except ModelError:
        return None  # load reports an unreadable model
    if own == "int8":
        return None
    return ("it is a float model, and 2021.4's ONNX importer rejects the Q/DQ copy int8 calibration makes of it "
            "(a per-tensor DequantizeLinear of a 1-D bias fails its axis check); use OpenVINO 2022.3 or newer, "
            "or the onnxruntime backend, or a quantised model")


def weights_path(model_path: str) -> str:
    """The .bin beside an .xml IR; empty for ONNX."""
    if model_path.lower().endswith(".onnx"):
        return ""
    weights = os.path.splitext(model_path)[0] + ".bin"
    if not os.path.exists(weights):
        raise ModelError(f"IR weights not found: {weights} (expected beside {model_path})")
    return weights


def installed_version() -> str:
    try:
        from openvino.inference_engine import get_version

        return f"openvino {get_version()}"
    except ImportError:
        return "openvino (not installed)"


def check_floor(version: str) -> None:
    """BackendUnavailable for an IECore-only OpenVINO older than 2021.4 (the oldest release tested)."""
    found = release(version)
    if found is not None and found < (2021, 4):
        raise BackendUnavailable(f"OpenVINO {version.split('-')[0]} is older than the 2021.4 this backend needs; "
                                 "pip install openvino==2021.4.2 (Python 3.6-3.9), or 2022.3+ for the 2.0 API")


def device_names(device: str) -> list[str]:
    """The devices in ``device``: ``MULTI:MYRIAD,CPU`` -> [MYRIAD, CPU]."""
    base, _, listed = device.partition(":")
    if base.upper() in ("MULTI", "HETERO"):
        return [d.strip() for d in listed.split(",") if d.strip()]
    return [device]


def check_device(ie, device: str) -> None:
    """Raise BackendUnavailable unless ``device`` (or each of MULTI:/HETERO:'s list) is present."""
    available = list(ie.available_devices)
    known = set(available) | {d.split(".")[0] for d in available}
    missing = [d for d in device_names(device) if d not in known]
    if missing:
        myriad = [m for m in missing if m.split(".")[0].upper() in FP16_DEVICES]
        hint = f" ({myriad_problem(ie, myriad[0])})" if myriad else ""
        raise BackendUnavailable(f"OpenVINO 2021.4 device '{device}' is not available{hint}; "
                                 f"this machine has: {', '.join(available) or 'none'}")


def myriad_problem(ie, name: str) -> str:
    """Why the MYRIAD/HDDL device ``name`` is missing: its plugin does not load, or no NCS2 is found."""
    base = name.split(".")[0].upper()
    try:
        ie.get_versions(base)  # loads the plugin
    except Exception as exc:  # 2021.4 raises RuntimeError; the message names the library that failed
        text = str(exc)
        if "libusb" in text:
            return f"its {base} plugin does not load: libusb-1.0.so.0 is missing; apt install libusb-1.0-0"
        if "not registered" in text or "not found" in text.lower():
            return f"this OpenVINO has no {base} plugin; {NCS2_INSTALL}"
        return f"its {base} plugin does not load: {one_line(exc, 160)}"
    return ("is the NCS2 plugged in, with the udev rules installed? "
            "(install_dependencies/install_NCS_udev_rules.sh)")
