"""ONNX Runtime, on the CPU unless ``extra["providers"]`` names other execution providers.

Each instance is its own ``InferenceSession`` (``run`` releases the GIL), so
distinct instances may predict at once. A model with a symbolic batch
dimension takes any batch up to ``max_batch_size``; a fixed batch of 1 takes 1.

Precision: ONNX Runtime runs a model in the precision it was saved in, so
``--precision`` may name that one (``fp32`` for a float model, ``int8`` for a
quantised one) or ``int8`` for a float model, which then runs as its Q/DQ
copy calibrated on the dataset (:mod:`backends.int8_calibration`, done by
``Backend.load``). Anything else (``fp16`` of a float32 model, ``fp32`` of a
quantised one) is refused.
"""

from __future__ import annotations

import logging

import numpy as np

from backends.base import Backend, ModelInfo, TensorSpec, check_model_file, require_module
from sut.errors import BackendUnavailable, ConfigError, HarnessError, ModelError

log = logging.getLogger(__name__)

DEFAULT_PROVIDERS = ("CPUExecutionProvider",)

# ONNX tensor element type, as InferenceSession reports it -> NumPy dtype
_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(uint16)": np.uint16,
    "tensor(int16)": np.int16, "tensor(uint32)": np.uint32, "tensor(int32)": np.int32,
    "tensor(uint64)": np.uint64, "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    extra_name = "onnxruntime"
    #: the model's own precision (see supported_precisions), plus int8 of a float model
    precisions = ("fp32",)
    qdq_int8 = True

    def __init__(self, options=None):
        super().__init__(options)
        self._ort = require_module("onnxruntime", self.name, self.extra_name)
        self._sessions: list = []
        self._feed_name = ""
        self._output_names: list[str] = []
        self._model_precision: str | None = None

    def supported_precisions(self, model_path=None):
        """The precision the model was saved in, and int8 unless it is already quantised."""
        own = _model_precision(model_path) if model_path else None
        if own is None:
            return super().supported_precisions(model_path)
        return (own,) if own == "int8" else (own, "int8")

    def load_impl(self, model_path):
        check_model_file(model_path, (".onnx",), self.name)
        self._model_precision = _model_precision(model_path)
        providers = self._providers()
        instances = max(1, self.options.instances or 1)
        self._sessions = [self._session(model_path, providers) for _ in range(instances)]
        session = self._sessions[0]
        if len(session.get_inputs()) != 1:
            raise ModelError(f"{model_path} has {len(session.get_inputs())} inputs; "
                             f"backend '{self.name}' feeds models with exactly one input")
        self._feed_name = session.get_inputs()[0].name
        self._output_names = [session.get_outputs()[0].name]
        log.info("%s: providers %s", self.name, session.get_providers())
        return ModelInfo(
            inputs=tuple(_spec(arg, model_path, is_input=True) for arg in session.get_inputs()),
            outputs=tuple(_spec(arg, model_path, is_input=False) for arg in session.get_outputs()),
            instances=instances,
            **self._batch_limits(session.get_inputs()[0], model_path),
        )

    def predict_impl(self, batch, instance):
        return self._sessions[instance].run(self._output_names, {self._feed_name: batch})[0]

    def close_impl(self):
        self._sessions = []

    def version(self):
        return f"onnxruntime {self._ort.__version__}"

    def applied_precision(self):
        if self.qdq_path or self._model_precision is None:
            return super().applied_precision()
        own = self._model_precision
        return f"{own} (the model's own Q/DQ nodes)" if own == "int8" else own

    def describe(self):
        providers = (self._sessions[0].get_providers() if self._sessions
                     else list(self.options.extra.get("providers", DEFAULT_PROVIDERS)))
        return {**super().describe(), "threads": self.options.threads,
                "instances": len(self._sessions) or max(1, self.options.instances or 1),
                "providers": providers}

    # --- helpers ------------------------------------------------------------
    def _providers(self) -> list:
        """Requested execution providers, checked against this onnxruntime build."""
        providers = list(self.options.extra.get("providers", DEFAULT_PROVIDERS))
        known, present = self._ort.get_all_providers(), self._ort.get_available_providers()
        for provider in providers:
            name = provider[0] if isinstance(provider, (tuple, list)) else provider
            if name not in known:
                raise ConfigError(f"unknown onnxruntime execution provider '{name}'; "
                                  f"this build has: {', '.join(present)}")
            if name not in present:
                raise BackendUnavailable(
                    f"onnxruntime execution provider '{name}' is not in this onnxruntime build "
                    f"(it has: {', '.join(present)}); install the onnxruntime package that provides it")
        return [tuple(p) if isinstance(p, list) else p for p in providers]

    def _session(self, path: str, providers: list):
        ort = self._ort
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(0, self.options.threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            return ort.InferenceSession(path, sess_options=opts, providers=providers)
        except _runtime_errors() as exc:
            raise ModelError(f"{self.name} cannot load {path}: {exc}") from exc

    def _batch_limits(self, arg, path: str) -> dict:
        """ModelInfo batch fields from the input's first dimension."""
        batch_dim = arg.shape[0] if arg.shape else None
        if not isinstance(batch_dim, int) or batch_dim < 1:  # symbolic or unknown: any batch
            return {"max_batch_size": max(1, self.options.max_batch_size), "batch_sizes": None}
        if batch_dim != 1:
            raise ModelError(f"{path} has a fixed batch size of {batch_dim}; backend '{self.name}' "
                             f"needs batch 1 or a symbolic batch dimension")
        if self.options.max_batch_size > 1:
            log.info("%s: %s has a fixed batch size of 1; max_batch_size %d is not used",
                     self.name, path, self.options.max_batch_size)
        return {"max_batch_size": 1, "batch_sizes": (1,)}


def _model_precision(model_path: str) -> str | None:
    """``fp32``/``fp16``/``int8`` as saved; None when it cannot be read here (no
    ``onnx`` module, missing or unreadable file: load reports those)."""
    from backends import int8_calibration
    try:
        return int8_calibration.model_precision(model_path)
    except HarnessError:
        return None


def _runtime_errors() -> tuple[type[Exception], ...]:
    """The exception types onnxruntime raises for a bad model (its own, plus OS/value errors)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    own = tuple(v for v in vars(state).values() if isinstance(v, type) and issubclass(v, Exception))
    return own + (OSError, ValueError, RuntimeError)


def _spec(arg, path: str, is_input: bool) -> TensorSpec:
    """TensorSpec from a session's NodeArg (batch dimension dropped)."""
    if arg.type not in _DTYPES:
        raise ModelError(f"{path}: {'input' if is_input else 'output'} '{arg.name}' has type "
                         f"{arg.type}; supported: {', '.join(_DTYPES)}")
    dims = list(arg.shape[1:]) if arg.shape else []
    if is_input and not all(isinstance(d, int) and d > 0 for d in dims):
        raise ModelError(f"{path}: input '{arg.name}' has shape {arg.shape}; only the first "
                         f"(batch) dimension may be symbolic")
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in dims)
    layout = None
    if is_input and len(shape) == 3:
        layout = "NCHW" if shape[0] == 3 else "NHWC" if shape[-1] == 3 else None
    return TensorSpec(arg.name, shape, _DTYPES[arg.type], layout)
