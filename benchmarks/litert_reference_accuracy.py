#!/usr/bin/env python3
"""Independent reference: MobileNet top-1 with LiteRT / tflite-runtime, nothing of the harness's.

The harness's LiteRT accuracy must equal what the installed LiteRT package
computes on the same model and data; runtimes differ (ai-edge-litert 2.3's
XNNPACK uint8 kernels give 202/260 on imagenet-mini with MobileNet 1.0,
tflite-runtime 2.7-2.13 give 203/260, as do ai-edge-litert's own reference
kernels). This script is the other side of that comparison: it imports no
harness code, takes the reference preprocessing from
``benchmarks/openvino_reference_accuracy.py`` (Pillow decode, OpenCV's
INTER_LINEAR reproduced in NumPy, centre crop, ``x / 255 * 2 - 1``, quantised
with the model's own input scale and zero point) and drives the interpreter
directly: ``ai_edge_litert.interpreter`` or else ``tflite_runtime.interpreter``.

Usage::

    python benchmarks/litert_reference_accuracy.py \\
        --model ../shared/models/mobilenet/mobilenet_v1_1.0_224_quant.tflite \\
        --data ../shared/data/imagenet-mini [--expect 'accuracy=78.077%, good=203, total=260']

Prints the runtime and ``accuracy=XX.XXX%, good=N, total=M`` (last line);
with ``--expect``, exits 1 unless that line matches. Runs on Python 3.8+.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from openvino_reference_accuracy import model_input, preprocess, read_val_map  # noqa: E402  (no OpenVINO import)


def interpreter_module():
    """(interpreter module, "package version"): ai_edge_litert first, else tflite_runtime."""
    for package in ("ai_edge_litert", "tflite_runtime"):
        try:
            module = __import__(f"{package}.interpreter", fromlist=["Interpreter"])
        except ImportError:
            continue
        return module, f"{package} {getattr(sys.modules[package], '__version__', '?')}"
    sys.exit("error: neither ai_edge_litert nor tflite_runtime is installed")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="MobileNet .tflite (uint8 or float input)")
    parser.add_argument("--data", required=True, help="ImageNet folder with val_map.txt")
    parser.add_argument("--expect", help="exit 1 unless the accuracy line equals this")
    args = parser.parse_args(argv)

    module, version = interpreter_module()
    interpreter = module.Interpreter(model_path=args.model)
    interpreter.allocate_tensors()
    source, = interpreter.get_input_details()
    target = interpreter.get_output_details()[0]["index"]
    size = int(source["shape"][1])
    scale, zero_point = source["quantization"]
    entries = read_val_map(args.data)
    good = 0
    for name, label in entries:
        crop = preprocess(os.path.join(args.data, name), size)
        interpreter.set_tensor(source["index"],
                               model_input(crop, "NHWC", np.dtype(source["dtype"]), scale, zero_point))
        interpreter.invoke()
        scores = interpreter.get_tensor(target).reshape(-1)
        good += int(np.argmax(scores)) - (1 if scores.size == 1001 else 0) == label
    line = f"accuracy={100.0 * good / len(entries):.3f}%, good={good}, total={len(entries)}"
    print(f"runtime   : {version}; python {sys.version.split()[0]}, numpy {np.__version__}")
    print(line)
    if args.expect is not None and line != args.expect:
        print(f"expected  : {args.expect}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
