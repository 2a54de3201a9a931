"""OpenVINO 2022.3's MYRIAD (NCS2) plugin, faked at the ``Core`` boundary of the real installed OpenVINO.

No NCS2 exists here and the PyPI wheels have no MYRIAD plugin, so :func:`install`
swaps the installed module's ``Core`` for a subclass that adds a MYRIAD device.
Everything else (reading the model, PrePostProcessor, the CPU plugin that runs
the model, infer requests) is the real runtime. What the fake answers for
MYRIAD is what 2022.3's plugin answers (``src/plugins/intel_myriad``:
``myriad_plugin.cpp``, ``myriad_executable_network.cpp``):

* ``SUPPORTED_PROPERTIES``: :data:`SUPPORTED_PROPERTIES` (no
  ``INFERENCE_PRECISION_HINT``, no ``INFERENCE_NUM_THREADS``: MYRIAD computes
  in fp16); a key the plugin does not know, given to ``set_property`` or
  ``compile_model``, raises as the plugin's option parser does;
* compiled model: ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` is 2 x executors, with
  2 executors under ``PERFORMANCE_HINT=THROUGHPUT`` (1 under ``LATENCY``,
  which also makes it 1), capped by ``PERFORMANCE_HINT_NUM_REQUESTS``; other
  properties come from its config, anything else raises "Unsupported
  ExecutableNetwork config key";
* inputs of f16, f32, u8 or i32 only (the plugin's supported precisions).

``state`` picks the machine: ``"device"`` (plugin and stick present),
``"no_device"`` (plugin loads, no stick), ``"libusb"`` (the plugin's library
does not load).
"""

from __future__ import annotations

SUPPORTED_PROPERTIES = {
    "AVAILABLE_DEVICES": "RO", "FULL_DEVICE_NAME": "RO", "SUPPORTED_PROPERTIES": "RO",
    "OPTIMIZATION_CAPABILITIES": "RO", "RANGE_FOR_ASYNC_INFER_REQUESTS": "RO", "DEVICE_THERMAL": "RO",
    "DEVICE_ARCHITECTURE": "RO", "NUM_STREAMS": "RW", "PERFORMANCE_HINT": "RW",
    "PERFORMANCE_HINT_NUM_REQUESTS": "RW",
}
#: config keys 2022.3's MYRIAD option parser accepts (public ones; the plugin has more MYRIAD_* keys)
CONFIG_KEYS = {"NUM_STREAMS", "PERFORMANCE_HINT", "PERFORMANCE_HINT_NUM_REQUESTS", "PERF_COUNT", "LOG_LEVEL",
               "DEVICE_ID", "EXCLUSIVE_ASYNC_REQUESTS", "MYRIAD_ENABLE_HW_ACCELERATION",
               "MYRIAD_THROUGHPUT_STREAMS", "MYRIAD_ENABLE_RECEIVING_TENSOR_TIME", "MYRIAD_CUSTOM_LAYERS"}
INPUT_TYPES = ("f16", "f32", "u8", "i32")
FULL_NAME = "Intel Movidius Myriad X VPU"
LIBUSB_ERROR = ("Cannot load library '/opt/intel/openvino_2022/runtime/lib/intel64/libopenvino_intel_myriad_plugin.so': "
                "libusb-1.0.so.0: cannot open shared object file: No such file or directory")


def _is_myriad(device) -> bool:
    return str(device).split(".")[0].upper() == "MYRIAD"


def _check_keys(config):
    for key in config or {}:
        if key not in CONFIG_KEYS:
            raise RuntimeError(f"[ NOT_FOUND ] Unsupported configuration key: {key}")


class CompiledOnMyriad:
    """The real CPU compiled model, answering properties as MYRIAD's executable network."""

    def __init__(self, compiled, config):
        self._compiled = compiled
        self.config = dict(config)

    def __getattr__(self, name):
        return getattr(self._compiled, name)

    def get_property(self, name):
        if name == "OPTIMAL_NUMBER_OF_INFER_REQUESTS":
            hint = str(self.config.get("PERFORMANCE_HINT", ""))
            executors = 1 if hint == "LATENCY" else 2
            optimal = 2 * executors if hint != "LATENCY" else 1
            cap = int(self.config.get("PERFORMANCE_HINT_NUM_REQUESTS", 0))
            return min(optimal, cap) if cap else optimal
        if name == "NETWORK_NAME":
            return self._compiled.get_property("NETWORK_NAME")
        if name in self.config:
            return self.config[name]
        raise RuntimeError(f"Unsupported ExecutableNetwork config key: {name}")


def install(monkeypatch, runtime, state: str = "device"):
    """Replace ``runtime.ov.Core`` with one that has a MYRIAD device in ``state``; returns that class."""
    real_core = runtime.ov.Core

    class MyriadCore(real_core):
        compiled: list = []
        set_calls: list = []

        @property
        def available_devices(self):
            devices = list(super().available_devices)
            return devices + ["MYRIAD"] if state == "device" else devices

        def get_versions(self, device_name):
            if _is_myriad(device_name):
                if state == "libusb":
                    raise RuntimeError(LIBUSB_ERROR)
                return {"MYRIAD": "2022.3 (fake)"}
            return super().get_versions(device_name)

        def get_property(self, device_name, name, *args):
            if _is_myriad(device_name):
                if name == "SUPPORTED_PROPERTIES":
                    return dict(SUPPORTED_PROPERTIES)
                if name == "FULL_DEVICE_NAME":
                    return FULL_NAME
                raise RuntimeError(f"Unsupported configuration key: {name}")
            return super().get_property(device_name, name, *args)

        def set_property(self, *args):
            if len(args) == 2 and _is_myriad(args[0]):
                _check_keys(args[1])
                MyriadCore.set_calls.append(dict(args[1]))
                return None
            return super().set_property(*args)

        def compile_model(self, model, device_name=None, config=None):
            if not _is_myriad(device_name):
                return super().compile_model(model, device_name, config or {})
            if state != "device":
                raise RuntimeError("Can not init Myriad device: NC_ERROR")
            _check_keys(config)
            for port in model.inputs:
                kind = port.get_element_type().get_type_name()
                if kind not in INPUT_TYPES:
                    raise RuntimeError(f"[ GENERAL_ERROR ] Input {port.any_name} has unsupported precision {kind}")
            compiled = CompiledOnMyriad(super().compile_model(model, "CPU", {}), config or {})
            MyriadCore.compiled.append(compiled)
            return compiled

    MyriadCore.compiled = []
    MyriadCore.set_calls = []
    monkeypatch.setattr(runtime.ov, "Core", MyriadCore)
    return MyriadCore
