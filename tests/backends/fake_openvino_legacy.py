"""A stand-in for OpenVINO 2021.4's ``openvino.inference_engine`` (IECore API).

Only the names and behaviour the legacy backend uses, shaped like the real
2021.4 Python API: ``IECore().read_network(model=, weights=)``,
``net.input_info[name].precision / .layout / .input_data.shape``,
``net.outputs[name].precision / .shape``,
``ie.load_network(network=, device_name=, config=, num_requests=)``,
``exec_net.requests[i].infer({name: data})``, ``request.output_blobs[name].buffer``.
The output is deterministic: every class score is 0 except index
``round(input.mean()) % classes``, per sample.
"""

from __future__ import annotations

import sys
import types

import numpy as np

SUPPORTED_PRECISIONS = ["FP32", "FP16", "I64", "I32", "I16", "I8", "U16", "U8"]
_DTYPES = {"FP32": np.float32, "FP16": np.float16, "U8": np.uint8, "I8": np.int8}


class DataPtr:
    def __init__(self, shape, precision, layout):
        self.shape = list(shape)
        self._precision = precision
        self.layout = layout

    @property
    def precision(self):
        return self._precision

    @precision.setter
    def precision(self, value):
        if value not in SUPPORTED_PRECISIONS:
            raise ValueError(f"Unsupported precision {value}! List of supported precisions: {SUPPORTED_PRECISIONS}")
        self._precision = value


class InputInfo(DataPtr):
    def __init__(self, shape, precision, layout):
        super().__init__(shape, precision, layout)
        self.input_data = self  # the real InputInfoPtr.input_data is a DataPtr with the same shape


class IENetwork:
    def __init__(self, input_shape, input_precision, layout, classes):
        self.input_info = {"input": InputInfo(input_shape, input_precision, layout)}
        self.outputs = {"prob": DataPtr([input_shape[0], classes], "FP32", "NC")}


class Blob:
    def __init__(self, buffer):
        self.buffer = buffer


class InferRequest:
    def __init__(self, network):
        self._network = network
        self.inputs_seen: list[np.ndarray] = []
        self._out = None

    def infer(self, inputs=None):
        (name, data), = inputs.items()
        info = self._network.input_info[name]
        expected = np.dtype(_DTYPES[info.precision])
        if data.dtype != expected:
            raise ValueError(f"Data type {data.dtype} of provided numpy array doesn't match to precision {info.precision}")
        self.inputs_seen.append(np.array(data))
        classes = self._network.outputs["prob"].shape[1]
        out = np.zeros((len(data), classes), np.float32)
        for i, sample in enumerate(data):
            out[i, int(round(float(np.asarray(sample, np.float64).mean()))) % classes] = 1.0
        self._out = out

    @property
    def output_blobs(self):
        return {"prob": Blob(self._out)}


class ExecutableNetwork:
    def __init__(self, network, num_requests):
        self.requests = [InferRequest(network) for _ in range(num_requests)]


class IECore:
    #: what the next IECore reports / builds; tests change these
    available_devices_default = ["CPU", "MYRIAD"]
    network_args = {"input_shape": [1, 3, 224, 224], "input_precision": "FP32", "layout": "NCHW", "classes": 1001}
    created: list["IECore"] = []

    def __init__(self, xml_config_file: str = ""):
        self.available_devices = list(self.available_devices_default)
        self.loads: list[dict] = []
        self.reads: list[dict] = []
        IECore.created.append(self)

    def read_network(self, model, weights="", init_from_buffer=False):
        self.reads.append({"model": model, "weights": weights})
        return IENetwork(**self.network_args)

    def load_network(self, network, device_name=None, config=None, num_requests=1):
        if device_name not in self.available_devices:
            raise RuntimeError(f"Device with \"{device_name}\" name is not registered in the InferenceEngine")
        self.loads.append({"network": network, "device_name": device_name, "config": config,
                           "num_requests": num_requests})
        return ExecutableNetwork(network, num_requests or 4)  # MYRIAD's optimal number is 4

    def get_metric(self, device_name, metric_name):
        if metric_name == "FULL_DEVICE_NAME":
            return "Intel Movidius Myriad X VPU" if device_name.startswith("MYRIAD") else "Fake CPU"
        raise RuntimeError(f"Unsupported metric key {metric_name}")


def get_version():
    return "2021.4.2-3976-0943ed67223-refs/pull/539/head"


def install(monkeypatch) -> types.ModuleType:
    """Put a 2021.4-like ``openvino`` (no ``Core``) with this ``inference_engine`` in sys.modules."""
    IECore.created = []
    package = types.ModuleType("openvino")
    package.__path__ = []
    engine = types.ModuleType("openvino.inference_engine")
    engine.IECore = IECore
    engine.get_version = get_version
    package.inference_engine = engine
    monkeypatch.setitem(sys.modules, "openvino", package)
    monkeypatch.setitem(sys.modules, "openvino.inference_engine", engine)
    return engine
