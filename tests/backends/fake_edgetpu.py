"""Stand-ins for the Edge TPU delegate and the LiteRT interpreter that uses it.

Only the boundary is faked: ``load_delegate(library, options)`` and the
``Interpreter(model_path=, experimental_delegates=, num_threads=)`` class of
``ai_edge_litert.interpreter``. The fake interpreter describes the real model
file's tensors (read with backends.tflite_model), records which delegate
(hence which TPU) it was built with, and answers deterministically: the
output is all zeros except index ``device number * 100 + round(mean(input))
% 100``, so a test can tell which TPU answered and that the input arrived.
"""

from __future__ import annotations

import numpy as np

from backends import edgetpu, tflite_model


class FakeDelegate:
    def __init__(self, library, options):
        self.library = library
        self.options = dict(options or {})


class Recorder:
    """Installs the fakes on a runtime module and keeps what they saw."""

    def __init__(self, monkeypatch, runtime, present=("usb:0", "usb:1", "usb:2", "pci:0", "usb", "pci", None)):
        self.present = set(present)
        self.delegates: list[FakeDelegate] = []
        self.interpreters: list[FakeInterpreter] = []
        monkeypatch.setattr(runtime, "load_delegate", self.load_delegate)
        monkeypatch.setattr(edgetpu, "load_library", lambda library: None)  # the library is "installed"
        monkeypatch.setattr(runtime, "Interpreter", self.make_interpreter)

    def load_delegate(self, library, options=None):
        device = (options or {}).get("device")
        if device not in self.present:
            # what ai_edge_litert raises when libedgetpu finds no such TPU
            raise ValueError(f"Failed to load delegate from {library}\n")
        delegate = FakeDelegate(library, options)
        self.delegates.append(delegate)
        return delegate

    def make_interpreter(self, model_path=None, experimental_delegates=None, num_threads=None, **kwargs):
        interpreter = FakeInterpreter(model_path, list(experimental_delegates or []), num_threads)
        self.interpreters.append(interpreter)
        return interpreter


def device_number(delegate: FakeDelegate | None) -> int:
    device = (delegate.options.get("device") if delegate else None) or "usb:0"
    return int(device.split(":")[1]) if ":" in device and device.split(":")[1] else 0


class FakeInterpreter:
    def __init__(self, model_path, delegates, num_threads):
        self.model_path = model_path
        self.delegates = delegates
        self.num_threads = num_threads
        inputs, outputs = tflite_model.io_tensors(model_path)
        self._inputs = [self._details(t, i) for i, t in enumerate(inputs)]
        self._outputs = [self._details(t, 100 + i) for i, t in enumerate(outputs)]
        self._tensors: dict[int, np.ndarray] = {}
        self.allocated = False
        self.invocations = 0

    @staticmethod
    def _details(tensor, index):
        return {"name": tensor.name, "index": index, "shape": np.array(tensor.shape, np.int32),
                "shape_signature": np.array(tensor.shape_signature or tensor.shape, np.int32),
                "dtype": tensor.dtype.type,
                "quantization": (tensor.scale or 0.0, tensor.zero_point or 0)}

    def get_input_details(self):
        return self._inputs

    def get_output_details(self):
        return self._outputs

    def resize_tensor_input(self, index, shape):
        raise ValueError("Edge TPU models have a fixed batch")

    def allocate_tensors(self):
        self.allocated = True

    def set_tensor(self, index, value):
        assert self.allocated and value.dtype == self._inputs[0]["dtype"]
        assert tuple(value.shape) == tuple(self._inputs[0]["shape"])
        self._tensors[index] = np.array(value)

    def invoke(self):
        self.invocations += 1
        out = self._outputs[0]
        result = np.zeros(tuple(out["shape"]), out["dtype"])
        which = device_number(self.delegates[0] if self.delegates else None)
        mean = float(self._tensors[self._inputs[0]["index"]].astype(np.float64).mean())
        result[0, which * 100 + int(round(mean)) % 100] = 1
        self._tensors[out["index"]] = result

    def get_tensor(self, index):
        return self._tensors[index].copy()

    def tensor(self, index):
        """As LiteRT's: a function that returns a view of the tensor's current buffer."""
        return lambda: self._tensors[index]
