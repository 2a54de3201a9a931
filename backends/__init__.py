"""Backends: one module per runtime, found through one registry.

Built-in backends and third-party plugins (entry point group
``mlperf_edge.backends``, value ``module:Class``) are listed the same way; the
module is imported only when the backend is created.
"""

from __future__ import annotations

import importlib
import importlib.util

from backends.base import Backend, BackendOptions, ModelInfo, TensorSpec
from sut import compat
from sut.errors import ConfigError

ENTRY_POINT_GROUP = "mlperf_edge.backends"

BUILTIN = {
    "null": "backends.null:NullBackend",
    "litert": "backends.litert:LiteRTBackend",
    "onnxruntime": "backends.onnxrt:OnnxRuntimeBackend",
    "openvino": "backends.openvino:OpenVINOBackend",
    "edgetpu": "backends.edgetpu:EdgeTPUBackend",
    "tensorrt": "backends.tensorrt:TensorRTBackend",
    "tensorflow": "backends.tensorflow:TensorFlowBackend",
    "pytorch": "backends.pytorch:PyTorchBackend",
}

__all__ = ["Backend", "BackendOptions", "ModelInfo", "TensorSpec", "available", "create"]


def available() -> dict[str, str]:
    """Backend name -> ``module:Class``, built-ins first, then plugins."""
    found = dict(BUILTIN)
    for ep in compat.entry_points(ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return {name: target for name, target in found.items() if _module_exists(target)}


def _module_exists(target: str) -> bool:
    module = target.split(":")[0]
    return importlib.util.find_spec(module) is not None


def create(name: str, options: BackendOptions | None = None) -> Backend:
    """Instantiate backend ``name``; raises ConfigError for an unknown name."""
    targets = available()
    if ":" in name and name not in targets:  # a plugin given as module:Class
        targets[name] = name
    if name not in targets:
        raise ConfigError(f"unknown backend '{name}'; choose one of: {', '.join(sorted(targets))}")
    module_name, class_name = targets[name].split(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load backend '{name}' from {targets[name]}: {exc}") from exc
    return cls(options)
