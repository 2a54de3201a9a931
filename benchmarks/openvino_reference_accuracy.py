#!/usr/bin/env python3
"""Independent reference: MobileNet top-1 with OpenVINO, the reference preprocessing and nothing of ours.

The harness's OpenVINO accuracy must equal what the installed OpenVINO
computes on the same model and data. This script is the other side of that
comparison, written apart from the harness: it imports nothing from this
project (no datasets/, backends/, sut/ code), decodes with Pillow, implements
the reference preprocessing of ``../shared/docs/preprocessing.md`` with NumPy
and drives OpenVINO directly, with whichever API the installed release has
(``openvino.Core`` 2023.1+, ``openvino.runtime.Core`` 2022.x, ``IECore`` 2021.4).

Preprocessing (the MLPerf reference's, which uses OpenCV):

* decode to RGB, EXIF orientation applied (``cv2.imread`` does);
* resize so the short side is ``int(100 * size / 87.5)`` and the long side
  ``int(short * long / short_orig)`` with ``cv2.resize(INTER_LINEAR)`` on uint8,
  reproduced here bit for bit: 11-bit fixed-point weights, an exact integer
  horizontal pass, a vertical pass rounded as OpenCV's SIMD loop does
  (``>> 4``, high 16 bits of the 16-bit product, ``(v + 2) >> 2``); columns past
  the source are clamped with weight 0, rows are clamped but keep their weights;
* centre crop ``size x size`` at ``int((W - size) / 2)``, ``int((H - size) / 2)``;
* float32 ``x / 255 * 2 - 1``; a quantised input gets
  ``clip(round(x / scale + zero_point))`` (``--input-scale``/``--input-zero-point``,
  the shared MobileNet's 1/128 and 128 by default);
* NCHW or NHWC as the model's input shape says; 1001 outputs -> label argmax - 1.

``--check-opencv`` compares every resized image with ``cv2.resize`` when
OpenCV is installed (a check of this script, not needed for the figure).

Usage::

    python benchmarks/openvino_reference_accuracy.py \\
        --model ../shared/models/mobilenet/mobilenet_v1_1.0_224_quant_qdq_nchw.onnx \\
        --data ../shared/data/imagenet-mini [--expect 'accuracy=77.692%, good=202, total=260']

Prints the OpenVINO version and ``accuracy=XX.XXX%, good=N, total=M``;
with ``--expect``, exits 1 unless that line matches. Runs on Python 3.8+.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

COEF_BITS = 11
COEF_SCALE = 1 << COEF_BITS
CROP_PERCENT = 87.5


# --- decoding and resizing -------------------------------------------------------------
def decode_rgb(path: str) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _axis_table(src: int, dst: int, clamp_weights: bool):
    """Source index, next index and 11-bit weights (w0, w1) for each output position along one axis."""
    scale = 1.0 / (dst / src)  # OpenCV: scale = 1 / inv_scale, inv_scale = dst / src (doubles)
    pos = np.float32((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5)  # computed in double, stored as float
    first = np.floor(pos).astype(np.int64)
    frac = (pos - first.astype(np.float32)).astype(np.float32)
    if clamp_weights:  # columns: outside the source the weight of the neighbour is 0
        low = first < 0
        first[low], frac[low] = 0, np.float32(0)
        high = first >= src - 1
        first[high], frac[high] = src - 1, np.float32(0)
    w0 = np.rint((np.float32(1) - frac) * np.float32(COEF_SCALE)).astype(np.int64)  # saturate_cast<short>: round half even
    w1 = np.rint(frac * np.float32(COEF_SCALE)).astype(np.int64)
    second = np.clip(first + 1, 0, src - 1)
    first = np.clip(first, 0, src - 1)
    return first, second, w0, w1


def resize_linear(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)`` for uint8 HxWxC."""
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) == (height, width):
        return image.copy()
    x0, x1, a0, a1 = _axis_table(src_w, width, clamp_weights=True)
    y0, y1, b0, b1 = _axis_table(src_h, height, clamp_weights=False)
    pixels = image.astype(np.int64)
    # horizontal pass: exact integers, weights sum to 2048
    rows = pixels[:, x0, :] * a0[None, :, None] + pixels[:, x1, :] * a1[None, :, None]
    # vertical pass, as OpenCV's SIMD loop: 16-bit products' high halves, then (v + 2) >> 2
    top = np.clip(rows[y0] >> 4, -32768, 32767)
    bottom = np.clip(rows[y1] >> 4, -32768, 32767)
    value = ((top * b0[:, None, None]) >> 16) + ((bottom * b1[:, None, None]) >> 16)
    return np.clip((value + 2) >> 2, 0, 255).astype(np.uint8)


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    short = int(100 * size / CROP_PERCENT)
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def preprocess(path: str, size: int, check_opencv: bool = False) -> np.ndarray:
    """RGB uint8 (size, size, 3): resized, centre-cropped."""
    image = decode_rgb(path)
    new_h, new_w = resized_size(image.shape[0], image.shape[1], size)
    resized = resize_linear(image, new_w, new_h)
    if check_opencv:
        import cv2

        expected = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        if not np.array_equal(resized, expected):
            diff = np.abs(resized.astype(int) - expected.astype(int))
            raise SystemExit(f"{path}: resize differs from cv2.resize at {int((diff > 0).sum())} values "
                             f"(max {int(diff.max())})")
    top, left = int((new_h - size) / 2), int((new_w - size) / 2)
    return resized[top:top + size, left:left + size]


def model_input(crop: np.ndarray, layout: str, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    x = crop.astype(np.float32) / np.float32(255) * np.float32(2) - np.float32(1)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        x = np.clip(np.round(x / np.float32(scale) + zero_point), info.min, info.max)
    x = x.astype(dtype)
    if layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None])


# --- OpenVINO, whichever API is installed -----------------------------------------------
class OpenVINO:
    """``predict(x) -> scores`` for one model on one device; ``version``, ``shape``, ``dtype``."""

    def __init__(self, model: str, device: str):
        import openvino

        ov = openvino if hasattr(openvino, "Core") else None
        if ov is None:
            try:
                import openvino.runtime as ov  # 2022.x / 2023.0
            except ImportError:
                ov = None
        if ov is not None and hasattr(ov, "Core"):
            self._init_api2(ov, model, device)
        else:
            self._init_iecore(model, device)

    def _init_api2(self, ov, model: str, device: str):
        core = ov.Core()
        self.version = ov.get_version()
        if "INFERENCE_PRECISION_HINT" in core.get_property(device, "SUPPORTED_PROPERTIES"):
            core.set_property(device, {"INFERENCE_PRECISION_HINT": "f32"})
        network = core.read_model(model)
        port = network.inputs[0]
        self.shape = tuple(port.get_shape())
        self.dtype = np.dtype(port.get_element_type().to_dtype())
        compiled = core.compile_model(network, device)
        request = compiled.create_infer_request()
        self._keep = (core, compiled)

        def predict(x):
            request.infer({0: x})
            return np.array(request.get_output_tensor(0).data)

        self.predict = predict

    def _init_iecore(self, model: str, device: str):
        from openvino.inference_engine import IECore, get_version

        self.version = get_version()
        ie = IECore()
        weights = "" if model.lower().endswith(".onnx") else os.path.splitext(model)[0] + ".bin"
        network = ie.read_network(model=model, weights=weights)
        name = next(iter(network.input_info))
        info = network.input_info[name]
        self.shape = tuple(info.input_data.shape)
        self.dtype = np.dtype({"FP32": np.float32, "U8": np.uint8, "I8": np.int8}[info.precision])
        output = next(iter(network.outputs))
        network.outputs[output].precision = "FP32"
        executable = ie.load_network(network=network, device_name=device, num_requests=1)
        request = executable.requests[0]
        self._keep = (ie, network, executable)  # 2021.4 crashes if the ExecutableNetwork dies before its requests

        def predict(x):
            request.infer({name: x})
            return np.array(request.output_blobs[output].buffer)

        self.predict = predict


def read_val_map(folder: str) -> list[tuple[str, int]]:
    entries = []
    with open(os.path.join(folder, "val_map.txt")) as f:
        for line in f:
            parts = line.split()
            if parts:
                entries.append((parts[0], int(parts[1])))
    return entries


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="MobileNet model OpenVINO reads (.onnx, .xml, .tflite)")
    parser.add_argument("--data", required=True, help="ImageNet folder with val_map.txt")
    parser.add_argument("--device", default="CPU")
    parser.add_argument("--input-scale", type=float, default=0.0078125, help="quantised input's scale")
    parser.add_argument("--input-zero-point", type=int, default=128, help="quantised input's zero point")
    parser.add_argument("--limit", type=int, default=0, help="only the first N images")
    parser.add_argument("--check-opencv", action="store_true", help="compare each resize with cv2.resize")
    parser.add_argument("--expect", help="exit 1 unless the accuracy line equals this")
    args = parser.parse_args(argv)

    runtime = OpenVINO(args.model, args.device)
    shape = runtime.shape
    layout = "NCHW" if shape[1] == 3 else "NHWC"
    size = shape[2] if layout == "NCHW" else shape[1]
    entries = read_val_map(args.data)
    if args.limit:
        entries = entries[:args.limit]
    good = 0
    start = time.perf_counter()
    for name, label in entries:
        crop = preprocess(os.path.join(args.data, name), size, args.check_opencv)
        scores = runtime.predict(model_input(crop, layout, runtime.dtype, args.input_scale, args.input_zero_point))
        scores = scores.reshape(-1)
        predicted = int(np.argmax(scores)) - (1 if scores.size == 1001 else 0)
        good += predicted == label
    line = f"accuracy={100.0 * good / len(entries):.3f}%, good={good}, total={len(entries)}"
    print(f"openvino  : {runtime.version} ({args.device}, input {layout} {runtime.dtype.name} {size}x{size})")
    print(f"python    : {sys.version.split()[0]}, numpy {np.__version__}")
    print(f"model     : {args.model}")
    print(f"data      : {args.data}")
    print(f"seconds   : {time.perf_counter() - start:.1f}")
    print(line)
    if args.expect is not None and line != args.expect:
        print(f"expected  : {args.expect}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
