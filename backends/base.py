"""The interface every backend implements.

A backend owns one runtime. The harness talks to it only through this class:
``load`` returns a :class:`ModelInfo` that says everything the harness needs
to know about the model (inputs, outputs, accepted batch sizes, how many
predictions may run at once), ``predict`` runs a batch, ``close`` frees it.
The harness never asks which backend it is.

Runtimes are imported when a backend is created or loaded, never at module
import time, so ``import backends`` works with only NumPy installed.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from sut.errors import BackendFailure, BackendUnavailable, ConfigError, HarnessError, ModelError, one_line

log = logging.getLogger(__name__)

LAYOUTS = ("NHWC", "NCHW")
#: every value ``BackendOptions.precision`` may hold (besides None)
KNOWN_PRECISIONS = ("fp32", "fp16", "bf16", "amp", "int8")


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One model input or output, described per sample (no batch dimension).

    ``scale``/``zero_point`` are the tensor's affine quantisation
    (``real = scale * (q - zero_point)``); both ``None`` for float tensors.
    ``layout`` is ``"NHWC"``/``"NCHW"`` for images, ``None`` otherwise.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    layout: str | None = None
    scale: float | None = None
    zero_point: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    @property
    def quantized(self) -> bool:
        return self.scale is not None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "layout": self.layout,
            "scale": self.scale,
            "zero_point": self.zero_point,
        }


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a loaded model accepts and produces.

    ``batch_sizes`` lists the batch sizes ``predict`` accepts; ``None`` means
    any size from 1 to ``max_batch_size``. ``instances`` is how many
    ``predict`` calls may run concurrently (each with its own ``instance``
    number); the harness runs one worker thread per instance.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int = 1
    batch_sizes: tuple[int, ...] | None = None
    instances: int = 1

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    @property
    def output(self) -> TensorSpec:
        return self.outputs[0]

    def accepts_batch(self, n: int) -> bool:
        if self.batch_sizes is not None:
            return n in self.batch_sizes
        return 1 <= n <= self.max_batch_size

    def split_batch(self, n: int) -> list[int]:
        """Split ``n`` samples into batch sizes this model accepts, largest first."""
        sizes = sorted(self.batch_sizes or range(1, self.max_batch_size + 1), reverse=True)
        if 1 not in sizes:
            sizes.append(1)  # every backend must accept a single sample
        out = []
        for size in sizes:
            while n >= size:
                out.append(size)
                n -= size
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "inputs": [t.describe() for t in self.inputs],
            "outputs": [t.describe() for t in self.outputs],
            "max_batch_size": self.max_batch_size,
            "batch_sizes": list(self.batch_sizes) if self.batch_sizes else None,
            "instances": self.instances,
        }


@dataclasses.dataclass(frozen=True)
class BackendOptions:
    """Options common to all backends, plus ``extra`` for backend-specific ones.

    ``threads``: runtime threads per instance (0 = runtime default).
    ``instances``: model instances for concurrent prediction (0 = backend's choice).
    ``max_batch_size``: largest batch the harness will ask for.
    ``device``: backend-specific device string (``"usb:0"``, ``"CPU"``, ...).
    ``precision``: ``"fp32"``, ``"fp16"``, ``"int8"`` or ``None`` (model's own).
    ``cache_dir``: where a backend may keep compiled artifacts (engines).
    ``calibration``: ``f(spec) -> iterable of equal-sized input batches`` made
    by the dataset for ``spec``; backends that calibrate (int8) call it
    during ``load``, others ignore it. Preprocessing happens only if called.
    ``hints``: what the dataset expects of a model (``classes``, and where it
    has one ``input_shape``, ``input_dtype``, ``layout``;
    :meth:`datasets.base.Dataset.model_hint`): a backend that runs a real model
    ignores it; one that makes up its model (null) describes one like it.
    """

    threads: int = 0
    instances: int = 0
    max_batch_size: int = 1
    device: str | None = None
    precision: str | None = None
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cache_dir: str | None = None
    calibration: Callable[[TensorSpec], Iterable[np.ndarray]] | None = None
    hints: Mapping[str, Any] = dataclasses.field(default_factory=dict)


class Backend(abc.ABC):
    """Base class: subclasses fill in the ``*_impl`` hooks.

    Precision (``--precision``): a backend declares what it can apply in
    ``precisions`` (or :meth:`supported_precisions` when it depends on the
    model or options); anything else is refused with ConfigError, by the
    harness before any run and again by :meth:`load`. ``None`` (option unset)
    always means the model's own precision. A backend that reads ONNX and runs
    Q/DQ models sets ``qdq_int8``: ``int8`` on a float ONNX model then loads a
    Q/DQ copy calibrated by :mod:`backends.int8_calibration` (done here in
    :meth:`load`, so every such backend runs the same int8 model).
    :meth:`applied_precision` says what the runtime actually ran.
    """

    #: name used on the command line and in profiles
    name: str = ""
    #: pip extra that installs the runtime, used in "not installed" errors
    extra_name: str | None = None
    #: precisions ``--precision`` may ask for; None: not declared (load_impl decides)
    precisions: tuple[str, ...] | None = None
    #: int8 on a float ONNX model runs a calibrated Q/DQ copy (backends that read ONNX)
    qdq_int8: bool = False
    #: the calibrated Q/DQ copy :meth:`load` loaded instead of the model, if any
    qdq_path: str | None = None

    def __init__(self, options: BackendOptions | None = None):
        self.options = options or BackendOptions()
        self.info: ModelInfo | None = None

    # --- public API -------------------------------------------------------
    def load(self, model_path: str | None) -> ModelInfo:
        """Load the model; raises ModelError / BackendUnavailable (ConfigError
        for a precision this backend cannot apply to it). Anything else a
        runtime or plugin raises is a BackendFailure naming the backend."""
        with self._failures_named("load " + (str(model_path) if model_path else "its model")):
            return self._load(model_path)

    def _load(self, model_path: str | None) -> ModelInfo:
        self.check_precision(self.options.precision, model_path)
        path, spec = model_path, None
        if self.options.precision == "int8" and self.qdq_int8 and _is_onnx(model_path):
            from backends import int8_calibration

            path, spec = int8_calibration.for_backend(model_path, self.options, self._scratch_dir())
            self.qdq_path = None if path == model_path else path
        log.info("%s: loading %s", self.name, path)
        self.info = self.load_impl(path)
        if spec is not None and self.qdq_path:
            _check_calibrated_input(spec, self.info.input, self.name)
        log.info("%s: %s", self.name, self.info.describe())
        return self.info

    def supported_precisions(self, model_path: str | None = None) -> tuple[str, ...] | None:
        """Precisions ``--precision`` may ask for with this model (``None``: not
        declared, the backend's ``load_impl`` decides)."""
        if self.precisions is None:
            return None
        allowed = list(self.precisions)
        if self.qdq_int8 and "int8" not in allowed and (model_path is None or _is_onnx(model_path)):
            allowed.append("int8")
        return tuple(allowed)

    def check_precision(self, precision: str | None, model_path: str | None = None) -> None:
        """Raise ConfigError unless this backend can apply ``precision`` to the model."""
        if precision is None:
            return
        allowed = self.supported_precisions(model_path)
        if allowed is None or precision in allowed:
            return
        if precision not in KNOWN_PRECISIONS:
            raise ConfigError(f"unknown precision '{precision}' for backend '{self.name}'; "
                              f"choose one of: {', '.join(allowed) or 'none (leave it unset)'}")
        what = f" to {model_path}" if model_path else ""
        can = (f"it can apply {', '.join(allowed)}" if allowed else
               "it runs every model in the model's own precision")
        hint = (" (int8 needs an ONNX model, which it runs as a calibrated Q/DQ copy)"
                if precision == "int8" and self.qdq_int8 else "")
        raise ConfigError(f"backend '{self.name}' cannot apply precision {precision}{what}: {can}{hint}; "
                          "choose another precision or leave --precision unset")

    def applied_precision(self) -> str:
        """What the runtime runs, for the results: the calibrated Q/DQ copy, then
        what the runtime reports (:meth:`runtime_precision`), else the precision
        asked for (the backend accepted it) or the model's own."""
        runtime = self.runtime_precision()
        if self.qdq_path:
            return f"int8 (Q/DQ model {self.qdq_path})" + (f"; {runtime}" if runtime else "")
        if runtime:
            return runtime
        return self.options.precision or "the model's own"

    def predict(self, batch: np.ndarray, instance: int = 0) -> np.ndarray:
        """Run one batch (first dimension = samples) and return the first output.

        ``batch`` already has the model's dtype and layout; it may be a view of
        the harness's sample memory, which the backend must not modify. The
        returned array belongs to the caller: the backend must not write to it
        later (copy out of buffers it reuses). Must be safe to call concurrently
        for distinct ``instance`` values below ``info.instances``.
        """
        return self.predict_impl(batch, instance)

    def predict_each(self, samples: Sequence[np.ndarray], instance: int = 0) -> np.ndarray:
        """Run single-sample batches one after another; their first outputs stacked.

        The harness calls this for a model that takes one sample per inference
        (``max_batch_size`` 1) when it has several samples to run, so a backend
        can loop in the cheapest way its runtime allows (or pipeline the
        requests). The default calls :meth:`predict_impl` per sample. Same
        concurrency rules as :meth:`predict`.
        """
        predict, outputs = self.predict_impl, []
        append = outputs.append
        for sample in samples:
            out = predict(sample, instance)
            if len(out) != 1:
                raise BackendFailure(f"backend returned {len(out)} results for a batch of 1 sample")
            append(out)
        return np.concatenate(outputs)

    def close(self) -> None:
        """Free the runtime; anything but a HarnessError it raises is a
        BackendFailure naming the backend."""
        with self._failures_named("close"):
            self.close_impl()
        scratch = self.__dict__.pop("_scratch", None)
        if scratch is not None:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)

    def _scratch_dir(self) -> str:
        """Where derived models go: ``options.cache_dir``, else a temporary
        directory removed by :meth:`close` (nothing kept without a cache)."""
        if self.options.cache_dir:
            return self.options.cache_dir
        if "_scratch" not in self.__dict__:
            import tempfile

            self._scratch = tempfile.mkdtemp(prefix=f"mlperf-edge-{self.name}-")
        return self._scratch

    def version(self) -> str:
        """Runtime name and version, e.g. ``"onnxruntime 1.20.1"``."""
        return self.name

    def runtime_precision(self) -> str | None:
        """What the runtime reports it runs in (e.g. OpenVINO's compiled
        ``INFERENCE_PRECISION_HINT``); None when it cannot say (or before load)."""
        return None

    def describe(self) -> dict[str, Any]:
        """What to record with the results to reproduce the run."""
        return {"backend": self.name, "runtime": self.version(), "precision": self.applied_precision()}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None:
            self.close()
            return
        try:  # already failing: a failure to close must not hide why
            self.close()
        except Exception as problem:
            log.debug("closing backend %s after %s also failed: %s", self.label(), exc_type.__name__, problem)

    def label(self) -> str:
        """How errors name this backend: its ``name`` for a built-in one, the
        ``module:Class`` a plugin was given as (plugins often reuse a built-in's name)."""
        cls = type(self)
        if cls.__module__.startswith("backends.") and self.name:
            return self.name
        return f"{cls.__module__}:{cls.__qualname__}"

    @contextlib.contextmanager
    def _failures_named(self, doing: str):
        try:
            yield
        except HarnessError:
            raise
        except Exception as exc:
            reason = one_line(exc)
            raise BackendFailure(f"backend '{self.label()}' failed to {doing}: {type(exc).__name__}"
                                 + (f": {reason}" if reason else "")) from exc

    # --- hooks ------------------------------------------------------------
    @abc.abstractmethod
    def load_impl(self, model_path: str | None) -> ModelInfo: ...

    @abc.abstractmethod
    def predict_impl(self, batch: np.ndarray, instance: int) -> np.ndarray: ...

    def close_impl(self) -> None:
        pass


def _is_onnx(path: str | None) -> bool:
    return bool(path) and str(path).lower().endswith(".onnx")


def _check_calibrated_input(spec: TensorSpec, loaded: TensorSpec, backend: str) -> None:
    """The calibration data was made for ``spec`` (read from the ONNX file); the
    backend must feed the Q/DQ model the same input, or calibration was wrong."""
    if (spec.shape, spec.dtype, spec.layout) != (loaded.shape, loaded.dtype, loaded.layout):
        raise ModelError(f"backend '{backend}' reads the model input as {loaded.dtype.name}{list(loaded.shape)} "
                         f"{loaded.layout or ''}, but int8 calibration data was made for "
                         f"{spec.dtype.name}{list(spec.shape)} {spec.layout or ''}")


def require_module(module: str, backend: str, extra: str | None):
    """Import a runtime module, or raise BackendUnavailable saying what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install -e '.[{extra}]'" if extra else f"install the '{module}' package"
        raise BackendUnavailable(
            f"backend '{backend}' needs the Python module '{module}', which is not installed "
            f"({exc}); {hint}"
        ) from exc


def file_sha256(path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks (model identities in caches)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_model_file(path: str | None, suffixes: tuple[str, ...], backend: str):
    """Raise ModelError unless ``path`` is an existing file with one of ``suffixes``."""
    import os

    if not path:
        raise ModelError(f"backend '{backend}' needs a model: pass --model PATH")
    if not os.path.exists(path):
        raise ModelError(f"model file not found: {path}")
    if suffixes and not path.lower().endswith(suffixes):
        raise ModelError(
            f"backend '{backend}' cannot read {path}: expected a file ending in {', '.join(suffixes)}"
        )
