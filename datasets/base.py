"""The interface every dataset implements.

A dataset is a list of labelled sources (image or audio files). Creating one
is cheap; :meth:`Dataset.scan` reads the index and checks files exist. The
work of turning a source into the model's input tensor is a *pure,
picklable* function returned by :meth:`Dataset.preprocessor`, so that
``datasets.cache`` can run it in worker processes and cache its output under
a key made of everything that changes that output (:meth:`Dataset.cache_key`).

Responses sent to LoadGen are one ``float32`` per sample: the predicted class
index (the MLPerf reference classification harness's default response dtype,
so its ``accuracy-imagenet.py`` re-scores our logs with default arguments).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from backends.base import ModelInfo, TensorSpec
from sut.errors import ConfigError, DatasetError

RESPONSE_DTYPE = np.dtype(np.float32)


@dataclasses.dataclass(frozen=True)
class Accuracy:
    good: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.good / self.total if self.total else 0.0

    def line(self) -> str:
        """The reference scorer's line, e.g. ``accuracy=77.692%, good=202, total=260``."""
        return f"accuracy={self.percent:.3f}%, good={self.good}, total={self.total}"


class Dataset(abc.ABC):
    """Base class for labelled classification datasets."""

    name: str = ""
    #: options this dataset accepts in the profile's ``dataset_options``
    option_names: tuple[str, ...] = ()
    #: what ``--dataset-path`` must point at; None when the dataset needs no path
    path_hint: str | None = "the dataset folder"

    def __init__(self, path: str | None, count: int | None = None, options: Mapping[str, Any] | None = None):
        self.path = path
        self.count = count
        self.options = dict(options or {})
        unknown = set(self.options) - set(self.option_names)
        if unknown:
            raise ConfigError(
                f"dataset '{self.name}' has no option {', '.join(sorted(unknown))}; "
                f"accepted: {', '.join(self.option_names) or 'none'}"
            )
        self.sources: list[str] = []
        self.labels: list[int] = []
        #: where the dataset may write files it derives (None: keep to memory/defaults)
        self.cache_root = None

    # --- index ------------------------------------------------------------
    @abc.abstractmethod
    def scan(self) -> None:
        """Fill ``sources`` and ``labels`` (first ``count`` only); raise DatasetError."""

    def __len__(self) -> int:
        return len(self.sources)

    def _apply_count(self) -> None:
        if not self.sources:
            raise DatasetError(f"dataset '{self.name}' at {self.path} holds no samples")
        if self.count is not None:
            if self.count < 1:
                raise ConfigError(f"--count must be at least 1, got {self.count}")
            if self.count > len(self.sources):
                raise DatasetError(
                    f"--count {self.count} asks for more samples than {self.path} holds ({len(self.sources)})"
                )
            self.sources = self.sources[: self.count]
            self.labels = self.labels[: self.count]

    def default_model(self) -> str | None:
        """A model that goes with this dataset when the user names none (demo)."""
        return None

    # --- model fit ----------------------------------------------------------
    def model_hint(self) -> dict[str, Any]:
        """What a model for this dataset looks like, for a backend that runs no
        model (null): ``classes`` (the last of ``CLASSES``, the model output
        sizes a subclass accepts), and where a subclass fixes them
        ``input_shape``, ``input_dtype``, ``layout``."""
        classes = getattr(self, "CLASSES", None)
        return {"classes": int(classes[-1])} if classes else {}

    @abc.abstractmethod
    def check_model(self, info: ModelInfo) -> None:
        """Raise ModelError when the model's input/output cannot fit this dataset."""

    # --- preprocessing -------------------------------------------------------
    @abc.abstractmethod
    def preprocessor(self, spec: TensorSpec) -> Callable[[str], np.ndarray]:
        """A picklable function: source path -> one input tensor matching ``spec``."""

    @abc.abstractmethod
    def cache_key(self, spec: TensorSpec) -> dict[str, Any]:
        """Everything (besides the source files) that changes the preprocessed output."""

    # --- responses and scoring ------------------------------------------------
    @abc.abstractmethod
    def postprocess(self, outputs: np.ndarray, info: ModelInfo) -> np.ndarray:
        """Model outputs (batch, ...) -> responses (batch, k) of RESPONSE_DTYPE."""

    def response_writer(self, info: ModelInfo) -> ResponseWriter | None:
        """:meth:`postprocess` bound to one loaded model, writing into memory
        the SUT allocated once instead of returning a new array: the per-query
        hot path (``sut.scenarios.Predictor.into``). None (the default): the
        SUT calls :meth:`postprocess` and copies its result, which costs a
        few thousand instructions per query more. A writer must give exactly
        what :meth:`postprocess` gives (tests/datasets check ours)."""
        return None

    def score(self, predictions: Mapping[int, np.ndarray]) -> Accuracy:
        """Top-1 over unique sample indices; ``predictions[i][0]`` is the class."""
        good = sum(int(round(float(p[0]))) == self.labels[i] for i, p in predictions.items())
        return Accuracy(good=good, total=len(predictions))


@dataclasses.dataclass(frozen=True)
class ResponseWriter:
    """``write(outputs, out)`` puts the responses to ``outputs`` (a batch of
    ``n`` model outputs) into ``out[:n]``; ``out`` is a preallocated
    RESPONSE_DTYPE array of ``width`` columns and at least ``n`` rows."""

    width: int
    write: Callable[[np.ndarray, np.ndarray], None]


def argmax_writer(offset: int = 0) -> ResponseWriter:
    """:func:`argmax_classes` writing into a preallocated (rows, 1) array."""

    def write(outputs: np.ndarray, out: np.ndarray) -> None:
        n = len(outputs)
        if n == 1:  # one sample: a flat argmax and one scalar store, no array made
            out[0, 0] = outputs.argmax() - offset
        else:
            out[:n, 0] = np.argmax(outputs.reshape(n, -1), axis=1) - offset

    return ResponseWriter(1, write)


def argmax_classes(outputs: np.ndarray, offset: int = 0) -> np.ndarray:
    """Top-1 class per row minus ``offset``, as a (batch, 1) response array."""
    if len(outputs) == 1:
        # one sample (SingleStream, Server): the flat argmax of the whole array is
        # the row's class; about a tenth of the instructions of the general path
        return np.array([[outputs.argmax() - offset]], RESPONSE_DTYPE)
    flat = outputs.reshape(len(outputs), -1)
    return (np.argmax(flat, axis=1) - offset).astype(RESPONSE_DTYPE).reshape(-1, 1)
