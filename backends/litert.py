"""LiteRT (TensorFlow Lite) on the CPU.

Uses ``ai_edge_litert`` and falls back to the older ``tflite_runtime``. Each
instance is its own interpreter, so distinct instances may predict at once
(``invoke`` releases the GIL). Models with a resizable batch dimension get a
second interpreter per instance resized to ``max_batch_size``.

Subclasses (the Edge TPU backend) change how interpreters are made through
``_delegates`` and which models they accept through ``_check_model``.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import sys
from importlib import metadata
from typing import NamedTuple

import numpy as np

from backends import tflite_model
from backends.base import Backend, ModelInfo, TensorSpec, check_model_file
from sut.errors import BackendFailure, BackendUnavailable, ConfigError, ModelError

log = logging.getLogger(__name__)


class Runtime(NamedTuple):
    """One package that provides LiteRT's ``interpreter`` module."""

    package: str                 # the module to import
    label: str                   # its name in version()
    pip_name: str                # its name on PyPI
    floor: tuple[int, int]       # the oldest version this backend runs on
    numpy1_only: bool            # built against NumPy 1.x (cannot import under NumPy 2)


# tried in this order; tflite-runtime (2.5-2.14) is what Python 3.8 and Coral-era boards have
RUNTIMES = (
    Runtime("ai_edge_litert", "litert", "ai-edge-litert", (1, 0), False),
    Runtime("tflite_runtime", "tflite-runtime", "tflite-runtime", (2, 5), True),
)


def import_runtime(backend: str, extra: str | None):
    """Return ``(interpreter module, "runtime version")``, or raise BackendUnavailable.

    Every difference between the LiteRT packages and their versions that this
    backend cares about is decided here, by what the installed package has.
    """
    errors = []
    for runtime in RUNTIMES:
        if not _present(runtime.package):
            errors.append(f"{runtime.package}: not installed")
            continue
        _check_numpy(backend, runtime)
        try:
            module = importlib.import_module(f"{runtime.package}.interpreter")
        except ImportError as exc:
            errors.append(f"{runtime.package}: {' '.join(str(exc).split())}")
            continue
        version = str(getattr(importlib.import_module(runtime.package), "__version__", "unknown"))
        _check_floor(backend, runtime, version)
        return module, f"{runtime.label} {version}"
    hint = f"pip install -e '.[{extra}]'" if extra else "pip install ai-edge-litert"
    raise BackendUnavailable(
        f"backend '{backend}' needs the Python module 'ai_edge_litert' (or the older "
        f"'tflite_runtime'), and neither is installed ({'; '.join(errors)}); {hint}"
        + (" (on Python 3.8 that is tflite-runtime: ai-edge-litert has no Python 3.8 wheel)"
           if sys.version_info < (3, 9) else ""))


def _present(package: str) -> bool:
    """Whether ``package`` can be imported, without importing it."""
    if package in sys.modules:
        return sys.modules[package] is not None
    return importlib.util.find_spec(package) is not None


def _check_numpy(backend: str, runtime: Runtime) -> None:
    """tflite-runtime under NumPy 2 imports, then its first Interpreter prints NumPy's ABI banner and
    raises SystemError (seen with 2.14.0 and NumPy 2.2): say it in one line instead."""
    if runtime.numpy1_only and int(np.__version__.split(".")[0]) >= 2:
        raise BackendUnavailable(
            f"backend '{backend}': {runtime.pip_name} {_installed_version(runtime)} is built for NumPy 1.x "
            f"and cannot run with NumPy {np.__version__}; pip install 'numpy<2' "
            f"(or ai-edge-litert instead, which supports NumPy 2, on Python 3.9+)")


def _check_floor(backend: str, runtime: Runtime, version: str) -> None:
    parts = re.match(r"(\d+)\.(\d+)", version)
    if parts and (int(parts.group(1)), int(parts.group(2))) < runtime.floor:
        floor = ".".join(map(str, runtime.floor))
        raise BackendUnavailable(
            f"backend '{backend}' needs {runtime.pip_name} {floor} or newer, and {version} is installed; "
            f"pip install -U '{runtime.pip_name}>={floor}'")


def _installed_version(runtime: Runtime) -> str:
    try:
        return metadata.version(runtime.pip_name)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


class _Runner:
    """One interpreter at one batch size, with its tensor indices and bound
    methods looked up once (they are called per sample on the hot path).

    ``set_tensor`` is the cheapest way in (writing through an
    ``interpreter.tensor(i)()`` view costs more per call); ``predict`` copies
    the output out with ``get_tensor``, :meth:`each` writes it from the output
    view straight into one preallocated array (no per-sample array, no final
    concatenation). Such a view must be dropped before the next ``invoke``,
    which refuses to run while one is held.
    """

    __slots__ = ("interpreter", "input_index", "output_index", "output_shape", "output_dtype",
                 "one_row_output", "set_tensor", "invoke", "get_tensor", "output_view")

    def __init__(self, interpreter):
        self.interpreter = interpreter
        self.input_index = interpreter.get_input_details()[0]["index"]
        output = interpreter.get_output_details()[0]
        self.output_index = output["index"]
        self.output_shape, self.output_dtype = tuple(output["shape"][1:]), output["dtype"]
        self.one_row_output = len(output["shape"]) > 0 and output["shape"][0] == 1
        self.set_tensor, self.invoke, self.get_tensor = (
            interpreter.set_tensor, interpreter.invoke, interpreter.get_tensor)
        self.output_view = interpreter.tensor(self.output_index)  # a function, holds no view

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.set_tensor(self.input_index, batch)
        self.invoke()
        return self.get_tensor(self.output_index)  # a copy, not the interpreter's buffer

    def each(self, samples) -> np.ndarray:
        """Run single-sample batches back to back; their outputs stacked."""
        set_tensor, invoke, output_view = self.set_tensor, self.invoke, self.output_view
        input_index = self.input_index
        outputs = np.empty((len(samples), *self.output_shape), self.output_dtype)
        for k, sample in enumerate(samples):
            set_tensor(input_index, sample)
            invoke()
            outputs[k] = output_view()[0]  # the view is gone before the next invoke
        return outputs


class LiteRTBackend(Backend):
    name = "litert"
    extra_name = "litert"
    precisions = ()  # runs every model in its own precision

    def __init__(self, options=None):
        super().__init__(options)
        self._runtime, self._version = import_runtime(self.name, self.extra_name)
        self._runners: list[dict[int, _Runner]] = []  # per instance: batch size -> runner

    # --- hooks for subclasses ----------------------------------------------
    def _check_options(self) -> None:
        """Refuse options this backend cannot honour."""
        if self.options.device not in (None, "cpu", "CPU"):
            raise ConfigError(f"backend '{self.name}' runs on the CPU; device "
                              f"'{self.options.device}' is not accepted (leave it unset or 'cpu')")
        if self.options.precision is not None:
            raise ConfigError(f"backend '{self.name}' runs the model in its own precision; "
                              f"precision '{self.options.precision}' is not accepted (leave it unset)")

    def _check_model(self, path: str, custom_ops: set[str]) -> None:
        """Refuse models this backend cannot run, with a message saying what can."""
        if tflite_model.EDGETPU_CUSTOM_OP in custom_ops:
            raise ModelError(
                f"{path} is compiled for the Edge TPU (it contains the "
                f"'{tflite_model.EDGETPU_CUSTOM_OP}'); run it with --backend edgetpu, or give "
                f"the model before Edge TPU compilation to --backend {self.name}"
            )

    def _delegates(self, instance: int) -> list:
        """Delegates for instance ``instance``'s interpreters (none on the CPU)."""
        return []

    def _make_interpreter(self, path: str, num_threads: int, instance: int = 0):
        """A new interpreter for ``path`` (tensors not yet allocated)."""
        kwargs = {"model_path": path}
        if num_threads > 0:
            kwargs["num_threads"] = num_threads
        delegates = self._delegates(instance)
        if delegates:
            kwargs["experimental_delegates"] = delegates
        try:
            return self._runtime.Interpreter(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.name} cannot load {path}: {exc}") from exc

    # --- Backend ------------------------------------------------------------
    def load_impl(self, model_path):
        self._check_options()
        check_model_file(model_path, (".tflite",), self.name)
        self._check_model(model_path, tflite_model.custom_ops(model_path))
        instances = max(1, self.options.instances or 1)
        wanted_batch = max(1, self.options.max_batch_size)
        self.close_impl()
        batch_sizes = (1,)
        for instance in range(instances):
            runners = {1: self._runner(model_path, instance, 1)}
            if wanted_batch > 1 and (instance == 0 or wanted_batch in batch_sizes):
                batched = self._batched_runner(model_path, instance, wanted_batch)
                if batched:
                    runners[wanted_batch] = batched
                    batch_sizes = (1, wanted_batch)
            self._runners.append(runners)
        return self._model_info(self._runners[0][1].interpreter, batch_sizes, instances)

    def predict_impl(self, batch, instance):
        try:
            runner = self._runners[instance][len(batch)]
        except (KeyError, IndexError):
            sizes = sorted(self._runners[0]) if self._runners else []
            raise BackendFailure(
                f"{self.name}: no interpreter for batch size {len(batch)} on instance {instance}; "
                f"loaded: {len(self._runners)} instance(s) taking batch sizes {sizes}"
            ) from None
        return runner(batch)

    def predict_each(self, samples, instance=0):
        """The interpreter's calls per sample in a tight loop (no per-sample dispatch).

        A subclass that changes ``predict_impl`` (a plugin wrapping the answers)
        gets the base class's loop over its own ``predict_impl`` instead.
        """
        if type(self).predict_impl is not LiteRTBackend.predict_impl:
            return super().predict_each(samples, instance)
        try:
            runner = self._runners[instance][1]
        except IndexError:
            raise BackendFailure(f"{self.name}: no instance {instance}; loaded: "
                                 f"{len(self._runners)} instance(s)") from None
        if not runner.one_row_output or any(len(sample) != 1 for sample in samples):
            return super().predict_each(samples, instance)  # the base class says what is wrong
        return runner.each(samples)

    def close_impl(self):
        self._runners = []

    def version(self):
        return self._version

    def describe(self):
        return {**super().describe(), "threads": self.options.threads,
                "instances": len(self._runners) or max(1, self.options.instances or 1)}

    # --- helpers ------------------------------------------------------------
    def _runner(self, path: str, instance: int, batch_size: int) -> _Runner:
        interpreter = self._make_interpreter(path, self.options.threads, instance)
        if batch_size != 1:
            details = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(details["index"], [batch_size, *details["shape"][1:]])
        try:
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            if batch_size != 1:
                raise
            raise ModelError(f"{self.name} cannot load {path}: {exc}") from exc
        if len(interpreter.get_input_details()) != 1:
            raise ModelError(f"{path} has {len(interpreter.get_input_details())} inputs; "
                             f"backend '{self.name}' feeds models with exactly one input")
        return _Runner(interpreter)

    def _batched_runner(self, path: str, instance: int, batch_size: int) -> _Runner | None:
        """A runner resized to ``batch_size``, or None (logged) when the model will not resize."""
        try:
            return self._runner(path, instance, batch_size)
        except (ValueError, RuntimeError) as exc:
            log.warning("%s: %s does not run at batch size %d (%s); using batch size 1",
                        self.name, path, batch_size, str(exc).strip().replace("\n", " "))
            return None

    def _model_info(self, interpreter, batch_sizes: tuple[int, ...], instances: int) -> ModelInfo:
        return ModelInfo(
            inputs=tuple(_spec(d, image=True) for d in interpreter.get_input_details()),
            outputs=tuple(_spec(d, image=False) for d in interpreter.get_output_details()),
            max_batch_size=max(batch_sizes),
            batch_sizes=batch_sizes,
            instances=instances,
        )


def _spec(details: dict, image: bool) -> TensorSpec:
    """TensorSpec from an interpreter's tensor details (batch dimension dropped)."""
    shape = tuple(int(d) for d in details["shape"][1:])
    scale, zero_point = details["quantization"]
    quantized = scale != 0
    return TensorSpec(
        name=details["name"],
        shape=shape,
        dtype=details["dtype"],
        layout="NHWC" if image and len(shape) == 3 and shape[-1] == 3 else None,
        scale=float(scale) if quantized else None,
        zero_point=int(zero_point) if quantized else None,
    )
