"""The demo's ONNX Runtime backend, slowed down and counting its calls (``--backend MODULE:Class``).

``NODE_DELAY_S`` (environment): seconds added to every predict call.
``NODE_CALLS_FILE``: a file that grows by one byte per predict call, so a
test knows when a node is busy with a run before it kills or stops it.
"""

import os
import time

from backends.onnxrt import OnnxRuntimeBackend


class SlowOnnxBackend(OnnxRuntimeBackend):
    def predict_impl(self, batch, instance):
        calls = os.environ.get("NODE_CALLS_FILE")
        if calls:
            with open(calls, "ab") as f:
                f.write(b".")
        time.sleep(float(os.environ.get("NODE_DELAY_S", "0.02")))
        return super().predict_impl(batch, instance)
