"""A stand-in for OpenVINO 2021.4's ``openvino.inference_engine`` (IECore API), for its MYRIAD (NCS2) path.

Only the names and behaviour the legacy backend uses, shaped like the real
2021.4.2 Python API and checked against it where that is installed
(``test_openvino_legacy.py``'s "fake vs real" tests, run by
``.ci/compat/openvino-2021.4.sh``): every public name here exists on the
real class, and it refuses what the real one refuses:

* ``IECore().read_network(model=, weights=)``: a missing file raises
  ``Exception("Path to the model ... doesn't exist or it's a directory")``; an
  IR v11 (written by 2022.1+ converters) raises RuntimeError "Unknown model format!";
* ``net.input_info[name].precision / .layout / .input_data.shape``,
  ``net.outputs[name].precision / .shape``; an unknown precision raises ValueError
  with the real list of supported precisions;
* ``ie.load_network(network=, device_name=, config=, num_requests=)``: a device
  that is not registered raises RuntimeError; the **CPU refuses FP16 input**
  (``[ NOT_IMPLEMENTED ] Input image format FP16 is not supported yet...``);
* ``exec_net.requests[i].infer({name: data})`` copies ``data`` into the input
  blob as the real one does (``buffer[:] = data``: other dtypes are converted,
  other shapes raise ValueError), ``request.output_blobs[name].buffer``;
* ``ie.get_versions(device)``, ``ie.get_metric(device, "FULL_DEVICE_NAME")``.

The output is deterministic: every class score is 0 except index
``round(input.mean()) % classes``, per sample.
"""

from __future__ import annotations

import os
import sys
import types

import numpy as np

#: the real 2021.4.2 list, in its order (ValueError message of the precision setter)
SUPPORTED_PRECISIONS = ["FP32", "FP64", "FP16", "I64", "U64", "I32", "U32", "I16", "I4", "I8", "U16", "U4", "U8",
                        "BOOL", "BIN", "BF16"]
_DTYPES = {"FP32": np.float32, "FP16": np.float16, "U8": np.uint8, "I8": np.int8, "I32": np.int32}
MYRIAD_NAME = "Intel Movidius Myriad X VPU"


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


class InputInfoPtr:
    def __init__(self, shape, precision, layout):
        self.input_data = DataPtr(shape, precision, layout)

    @property
    def precision(self):
        return self.input_data.precision

    @precision.setter
    def precision(self, value):
        self.input_data.precision = value

    @property
    def layout(self):
        return self.input_data.layout


class IENetwork:
    def __init__(self, input_shape, input_precision, layout, classes):
        self.input_info = {"input": InputInfoPtr(input_shape, input_precision, layout)}
        self.outputs = {"prob": DataPtr([input_shape[0], classes], "FP32", "NC")}


class Blob:
    def __init__(self, buffer):
        self.buffer = buffer


class InferRequest:
    def __init__(self, network):
        self._network = network
        self.inputs_seen: list = []
        self._out = None

    def infer(self, inputs=None):
        (name, data), = inputs.items()
        if name not in self._network.input_info:
            raise AssertionError(f"No input with name {name} found in network")
        info = self._network.input_info[name]
        blob = np.empty(info.input_data.shape, _DTYPES[info.precision])
        blob[:] = data  # as the real request: converts the dtype, refuses another shape
        self.inputs_seen.append(blob)
        classes = self._network.outputs["prob"].shape[1]
        out = np.zeros((len(blob), classes), np.float32)
        for i, sample in enumerate(blob):
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
    created: list = []

    def __init__(self, xml_config_file: str = ""):
        self.available_devices = list(self.available_devices_default)
        self.loads: list = []
        self.reads: list = []
        IECore.created.append(self)

    def read_network(self, model=None, weights="", init_from_buffer=False):
        if not os.path.isfile(model):
            raise Exception(f"Path to the model {model} doesn't exist or it's a directory")
        if model.lower().endswith(".xml"):
            with open(model) as f:
                head = f.read(400)
            if 'version="11"' in head:
                raise RuntimeError(f"Unknown model format! Cannot find reader for model format: xml and read the "
                                   f"model: {model}. Please check that reader library exists in your PATH.")
        self.reads.append({"model": model, "weights": weights})
        return IENetwork(**self.network_args)

    def load_network(self, network, device_name=None, config=None, num_requests=1):
        if device_name not in self.available_devices:
            raise RuntimeError(f"Device with \"{device_name}\" name is not registered in the InferenceEngine")
        if device_name.split(".")[0] == "CPU" and any(i.precision == "FP16" for i in network.input_info.values()):
            raise RuntimeError("[ NOT_IMPLEMENTED ] Input image format FP16 is not supported yet...")
        self.loads.append({"network": network, "device_name": device_name, "config": config,
                           "num_requests": num_requests})
        return ExecutableNetwork(network, num_requests or 4)  # MYRIAD's optimal number is 4

    def get_versions(self, device_name):
        if device_name.split(".")[0] not in {d.split(".")[0] for d in self.available_devices}:
            raise RuntimeError(f"Device with \"{device_name}\" name is not registered in the InferenceEngine")
        return {device_name: "2021.4.2"}

    def get_metric(self, device_name, metric_name):
        if metric_name == "FULL_DEVICE_NAME":
            return MYRIAD_NAME if device_name.startswith("MYRIAD") else "Fake CPU"
        raise RuntimeError(f"Unsupported metric key {metric_name}")


def get_version():
    return "2021.4.2-3976-0943ed67223-refs/pull/539/head"


#: class in this module -> name of the real 2021.4 class it stands for
STANDS_FOR = {IECore: "IECore", IENetwork: "IENetwork", InputInfoPtr: "InputInfoPtr", DataPtr: "DataPtr",
              ExecutableNetwork: "ExecutableNetwork", InferRequest: "InferRequest", Blob: "Blob"}
#: names the tests read on fake objects to see what the backend did; not part of the API
TEST_ONLY = {"available_devices_default", "network_args", "created", "loads", "reads", "inputs_seen"}


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
    monkeypatch.delitem(sys.modules, "openvino.runtime", raising=False)  # a real 2.0 API must not show through
    return engine
