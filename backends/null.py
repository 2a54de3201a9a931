"""A backend that runs no model: it answers zeros at once.

Used to measure the harness itself and to test it with no runtime installed.
It describes a model from ``extra`` options (default: MobileNet-like uint8
224x224x3 input, 1001 float outputs), so any dataset can be paired with it.
"""

from __future__ import annotations

import numpy as np

from backends.base import Backend, ModelInfo, TensorSpec


class NullBackend(Backend):
    name = "null"

    def load_impl(self, model_path):
        extra = self.options.extra
        input_shape = tuple(extra.get("input_shape", (224, 224, 3)))
        layout = extra.get("layout", "NHWC" if len(input_shape) == 3 and input_shape[-1] == 3 else None)
        dtype = np.dtype(extra.get("input_dtype", "uint8"))
        quant = {"scale": 1 / 128, "zero_point": 128} if dtype == np.uint8 else {}
        classes = int(extra.get("classes", 1001))
        self._out = np.zeros((max(1, self.options.max_batch_size), classes), np.float32)
        return ModelInfo(
            inputs=(TensorSpec("input", input_shape, dtype, layout, **quant),),
            outputs=(TensorSpec("output", (classes,), np.float32),),
            max_batch_size=max(1, self.options.max_batch_size),
            instances=max(1, self.options.instances or 1),
        )

    def predict_impl(self, batch, instance):
        n = len(batch)
        if n > len(self._out):
            return np.zeros((n, self._out.shape[1]), np.float32)
        return self._out[:n]

    def version(self):
        return "null"
