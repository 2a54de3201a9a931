"""The demo's dataset and model, made deterministically on first use.

``SyntheticImages`` writes a small ImageNet-format dataset (PNG, JPEG and BMP
images + ``val_map.txt``) and an ONNX model whose right answers are known by
construction, then reads the images back through the real ImageNet pipeline.

Each class is a pair of colours: one for the top half of the image, one for
the bottom half. The model averages each channel over the top and the bottom
half of its (normalised, NCHW) input and picks the nearest class prototype
(a linear layer: ``2 p.x - |p|^2``). So accuracy is 100% only if decoding,
channel order (RGB), normalisation, resize/crop, layout and sample ordering
are all right; the classes are chosen so that each of those bugs costs most
of the accuracy (``tests/datasets/test_synthetic.py`` checks it).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from datasets.imagenet import ImageNet
from sut.errors import BackendUnavailable

log = logging.getLogger(__name__)

VERSION = 1
CLASSES = 10
IMAGES = 60
INPUT_SIZE = 32
SEED = 20261122
FORMATS = (".png", ".jpg", ".bmp")


def prototypes() -> np.ndarray:
    """(CLASSES, 2, 3) colours in 0..255: [class, top/bottom, RGB].

    Drawn until every pair of classes is far apart and no class is close to
    another one's channel-swapped (BGR) or vertically flipped version.
    """
    rng = np.random.default_rng(SEED)
    while True:
        colours = rng.integers(30, 226, size=(CLASSES, 2, 3)).astype(np.float64)
        flat = colours.reshape(CLASSES, -1)
        dist = np.linalg.norm(flat[:, None] - flat[None], axis=-1) + np.eye(CLASSES) * 1e9
        swapped = colours[:, :, ::-1].reshape(CLASSES, -1)
        flipped = colours[:, ::-1, :].reshape(CLASSES, -1)
        own = np.linalg.norm(flat - swapped, axis=-1).min(), np.linalg.norm(flat - flipped, axis=-1).min()
        if dist.min() > 90 and min(own) > 90:
            return colours


def make_images(directory: Path) -> None:
    """Write the images and val_map.txt (sizes vary, non-square, noisy)."""
    from PIL import Image

    rng = np.random.default_rng(SEED + 1)
    colours = prototypes()
    lines = []
    for i in range(IMAGES):
        label = int(rng.integers(CLASSES))
        h, w = int(rng.integers(40, 64)), int(rng.integers(40, 64))
        img = np.empty((h, w, 3), np.float64)
        img[: h // 2] = colours[label, 0]
        img[h // 2:] = colours[label, 1]
        img += rng.normal(0, 12, size=img.shape)
        name = f"synthetic_{i:04d}{FORMATS[i % len(FORMATS)]}"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(directory / name, quality=95)
        lines.append(f"{name} {label}")
    (directory / "val_map.txt").write_text("\n".join(lines) + "\n")


def make_model(path: Path) -> None:
    """Write the nearest-prototype classifier as ONNX (needs the ``onnx`` package)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise BackendUnavailable("the demo builds its model with the 'onnx' package: "
                                 "pip install -e '.[demo]'") from exc
    half = INPUT_SIZE // 2
    # features: per-channel means of top and bottom halves, in mobilenet's [-1, 1] scale
    protos = (prototypes() / 255.0 * 2 - 1).reshape(CLASSES, 6)
    weight = (2 * protos.T).astype(np.float32)
    bias = (-(protos ** 2).sum(axis=1)).astype(np.float32)
    inits = [
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([half], np.int64), "half"),
        numpy_helper.from_array(np.array([INPUT_SIZE], np.int64), "end"),
        numpy_helper.from_array(np.array([2], np.int64), "axis_h"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "axes_hw"),
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(bias, "bias"),
    ]
    nodes = [
        helper.make_node("Slice", ["input", "zero", "half", "axis_h"], ["top"]),
        helper.make_node("Slice", ["input", "half", "end", "axis_h"], ["bottom"]),
        helper.make_node("ReduceMean", ["top", "axes_hw"], ["top_mean"], keepdims=0),
        helper.make_node("ReduceMean", ["bottom", "axes_hw"], ["bottom_mean"], keepdims=0),
        helper.make_node("Concat", ["top_mean", "bottom_mean"], ["features"], axis=1),
        helper.make_node("MatMul", ["features", "weight"], ["scores"]),
        helper.make_node("Add", ["scores", "bias"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "synthetic_demo",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", CLASSES])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    tmp = path.with_suffix(".partial")
    onnx.save(model, tmp)
    os.replace(tmp, path)


class SyntheticImages(ImageNet):
    """ImageNet-format demo data made on first use (``path`` optional)."""

    path_hint = None

    name = "synthetic"
    CLASSES = (CLASSES,)

    def __init__(self, path, count=None, options=None):
        options = {"preprocessing": "mobilenet", **(options or {})}
        super().__init__(path, count, options)

    def _directory(self) -> Path:
        if self.path:
            return Path(self.path)
        from datasets.cache import DEFAULT_CACHE_DIR

        return Path(self.cache_root or DEFAULT_CACHE_DIR) / f"synthetic-v{VERSION}"

    def scan(self) -> None:
        directory = self._directory()
        marker = directory / "complete.json"
        if not marker.exists():
            directory.mkdir(parents=True, exist_ok=True)
            log.info("writing the synthetic demo dataset to %s", directory)
            make_images(directory)
            marker.write_text(json.dumps({"version": VERSION, "images": IMAGES}))
        self.path = str(directory)
        super().scan()

    def model_hint(self) -> dict:
        """The demo model's shapes (:func:`make_model`), so the null backend stands in for it."""
        return {"classes": CLASSES, "input_shape": [3, INPUT_SIZE, INPUT_SIZE], "input_dtype": "float32",
                "layout": "NCHW"}

    def default_model(self) -> str:
        path = Path(self.path) / "synthetic_classifier.onnx"
        if not path.exists():
            make_model(path)
        return str(path)
