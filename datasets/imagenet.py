"""ImageNet validation images listed in an MLPerf ``val_map.txt``.

``val_map.txt`` holds one ``<file name> <label 0..999>`` per line; line i is
sample i. Preprocessing (MobileNet or ResNet50 style, see
:mod:`datasets.image_preprocessing`) is chosen with the ``preprocessing``
dataset option.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable

import numpy as np

from backends.base import LAYOUTS, ModelInfo, TensorSpec
from datasets import image_preprocessing, index
from datasets.base import Dataset, ResponseWriter, argmax_classes, argmax_writer
from sut.errors import ConfigError, DatasetError, ModelError

log = logging.getLogger(__name__)

NUM_LABELS = 1000


class ImageNet(Dataset):
    name = "imagenet"
    path_hint = "the folder of validation images and val_map.txt"
    option_names = ("preprocessing", "val_map")
    #: model output sizes accepted; 1001 means class 0 is "background"
    CLASSES: tuple[int, ...] = (1000, 1001)

    def __init__(self, path, count=None, options=None):
        super().__init__(path, count, options)
        self.preprocessing = self.options.get("preprocessing", "mobilenet")
        if self.preprocessing not in image_preprocessing.PREPROCESSINGS:
            raise ConfigError(
                f"dataset option preprocessing = '{self.preprocessing}' is not known; accepted: "
                f"{', '.join(image_preprocessing.PREPROCESSINGS)}"
            )
        self.val_map = self.options.get("val_map")

    # --- index ------------------------------------------------------------
    def scan(self) -> None:
        if not self.path or not os.path.isdir(self.path):
            raise DatasetError(
                f"ImageNet directory not found: {self.path!r}; pass --dataset-path DIR holding the "
                f"validation images and val_map.txt"
            )
        val_map = self.val_map or os.path.join(self.path, "val_map.txt")
        if not os.path.isfile(val_map):
            raise DatasetError(f"ImageNet label file not found: {val_map} (expected lines '<file> <label>')")
        sources, labels = read_val_map(val_map, self.path)
        missing = [s for s in sources if not os.path.isfile(s)]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise DatasetError(f"image listed in {val_map} not found: {index.visible(missing[0])}{more}")
        self.sources, self.labels = sources, labels
        self._apply_count()
        log.info("imagenet: %d images from %s", len(self.sources), val_map)

    # --- model fit ----------------------------------------------------------
    def check_model(self, info: ModelInfo) -> None:
        spec = info.input
        if spec.layout not in LAYOUTS or len(spec.shape) != 3:
            raise ModelError(
                f"dataset '{self.name}' needs an image input (H, W, 3) in NHWC or (3, H, W) in NCHW; "
                f"the model's input '{spec.name}' has shape {list(spec.shape)}, layout {spec.layout}"
            )
        channels = spec.shape[2] if spec.layout == "NHWC" else spec.shape[0]
        if channels != 3:
            raise ModelError(
                f"dataset '{self.name}' needs 3 colour channels; the model's input '{spec.name}' has "
                f"{channels} ({spec.layout} shape {list(spec.shape)})"
            )
        if spec.dtype.kind in "iu" and not spec.quantized:
            raise ModelError(
                f"the model's input '{spec.name}' is {spec.dtype.name} without a scale and zero point; "
                f"cannot map {self.preprocessing} preprocessing onto it"
            )
        classes = int(np.prod(info.output.shape))
        if classes not in self.CLASSES:
            raise ModelError(
                f"dataset '{self.name}' needs a model with {' or '.join(map(str, self.CLASSES))} "
                f"outputs; the model's output '{info.output.name}' has {classes} "
                f"(shape {list(info.output.shape)})"
            )

    # --- preprocessing -------------------------------------------------------
    def params(self, spec: TensorSpec) -> image_preprocessing.ImageParams:
        return image_preprocessing.ImageParams(self.preprocessing, spec)

    def preprocessor(self, spec: TensorSpec) -> Callable[[str], np.ndarray]:
        return image_preprocessing.ImagePreprocessor(self.params(spec))

    def cache_key(self, spec: TensorSpec) -> dict[str, Any]:
        params = self.params(spec)
        return {
            "dataset": self.name,
            "preprocessing": params.preprocessing,
            "resize": params.resize_method,
            "crop_percent": image_preprocessing.CROP_PERCENT,
            "size": list(params.size),
            "shape": list(spec.shape),
            "layout": spec.layout,
            "dtype": spec.dtype.name,
            "scale": spec.scale,
            "zero_point": spec.zero_point,
            "libraries": image_preprocessing.decoder_versions(),
        }

    # --- responses ----------------------------------------------------------
    def postprocess(self, outputs: np.ndarray, info: ModelInfo) -> np.ndarray:
        return argmax_classes(outputs, offset=_label_offset(info))

    def response_writer(self, info: ModelInfo) -> ResponseWriter:
        return argmax_writer(offset=_label_offset(info))


def _label_offset(info: ModelInfo) -> int:
    """1 for a model with a background class first (1001 outputs), else 0."""
    return 1 if math.prod(info.output.shape) == NUM_LABELS + 1 else 0


def read_val_map(val_map: str, directory: str) -> tuple[list[str], list[int]]:
    """Parse ``<file> <label>`` lines into (paths under ``directory``, labels).

    DatasetError names the file and line of a malformed line, a byte that is
    not UTF-8 or an image listed twice (it would be scored twice); a UTF-8
    BOM at the start is ignored (:mod:`datasets.index`).
    """
    sources: list[str] = []
    labels: list[int] = []
    unique = index.Unique(val_map)
    for number, line in index.read_lines(val_map):
        fields = line.split()
        label = _parse_label(fields[-1]) if len(fields) == 2 else None
        if label is None:
            raise DatasetError(
                f"{val_map} line {number}: expected '<file> <label 0..{NUM_LABELS - 1}>', "
                f"got {line.rstrip()!r}"
            )
        unique.add(os.path.normpath(fields[0]), number)
        sources.append(os.path.join(directory, fields[0]))
        labels.append(label)
    return sources, labels


def _parse_label(text: str) -> int | None:
    try:
        label = int(text)
    except ValueError:
        return None
    return label if 0 <= label < NUM_LABELS else None
