"""A backend that runs no model: it answers zeros at once.

Used to measure the harness itself and to test it with no runtime installed.
It describes a model from ``extra`` options (``input_shape``, ``input_dtype``,
``layout``, ``classes``), each defaulting to what the dataset expects
(``BackendOptions.hints``, from :meth:`datasets.base.Dataset.model_hint`:
the demo's 10 classes, ImageNet's 1001), else to a MobileNet-like uint8
224x224x3 input with 1001 float outputs, so any dataset can be paired with it.
"""

from __future__ import annotations

import numpy as np

from backends.base import Backend, ModelInfo, TensorSpec


class NullBackend(Backend):
    name = "null"
    #: it runs no model, so any precision is "applied" (runtime_precision says so)
    precisions = ("fp32", "fp16", "int8")

    def runtime_precision(self):
        return "none (the null backend runs no model)"

    def load_impl(self, model_path):
        hints = dict(getattr(self.options, "hints", None) or {})
        if "input_shape" in self.options.extra:  # the user's own input: none of the dataset's shape hints
            hints = {k: v for k, v in hints.items() if k not in ("input_shape", "input_dtype", "layout")}
        extra = {**hints, **self.options.extra}
        input_shape = tuple(extra.get("input_shape", (224, 224, 3)))
        layout = extra.get("layout", "NHWC" if len(input_shape) == 3 and input_shape[-1] == 3 else None)
        dtype = np.dtype(extra.get("input_dtype", "uint8"))
        quant = {"scale": 1 / 128, "zero_point": 128} if dtype == np.uint8 else {}
        classes = int(extra.get("classes", 1001))
        out = np.zeros((max(1, self.options.max_batch_size), classes), np.float32)
        self._answers = [out[:n] for n in range(len(out) + 1)]  # made once: answering costs a lookup
        self._many = out
        return ModelInfo(
            inputs=(TensorSpec("input", input_shape, dtype, layout, **quant),),
            outputs=(TensorSpec("output", (classes,), np.float32),),
            max_batch_size=max(1, self.options.max_batch_size),
            instances=max(1, self.options.instances or 1),
        )

    def predict_each(self, samples, instance=0):
        return self._zeros(len(samples))

    def _zeros(self, n: int) -> np.ndarray:
        answers = self._many
        if len(answers) < n:  # grown, never written: sharing it between threads is safe
            answers = self._many = np.zeros((n, answers.shape[1]), np.float32)
        return answers[:n]

    def predict_impl(self, batch, instance):
        try:
            return self._answers[len(batch)]
        except IndexError:
            return self._zeros(len(batch))

    def version(self):
        return "null"
