"""The backend registry and the null backend (no runtime needed)."""

from __future__ import annotations

import importlib.util
from importlib import metadata

import numpy as np
import pytest

import backends
from backends.base import BackendOptions
from backends.null import NullBackend
from sut.errors import ConfigError


def test_available_lists_builtins_whose_modules_exist():
    found = backends.available()
    for name, target in backends.BUILTIN.items():
        exists = importlib.util.find_spec(target.split(":")[0]) is not None
        assert (name in found) is exists, name
    assert {"null", "litert", "onnxruntime"} <= set(found)
    assert list(found)[0] == "null"  # built-ins first, in their order


def test_available_adds_plugins_after_builtins(monkeypatch):
    plugin = metadata.EntryPoint("mine", "backends.null:NullBackend", backends.ENTRY_POINT_GROUP)
    shadow = metadata.EntryPoint("null", "tests.nowhere:Nothing", backends.ENTRY_POINT_GROUP)

    def entry_points(group):
        return [plugin, shadow] if group == backends.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(backends.compat, "entry_points", entry_points)
    found = backends.available()
    assert list(found)[-1] == "mine"
    assert found["null"] == backends.BUILTIN["null"]  # a plugin cannot replace a built-in
    assert isinstance(backends.create("mine"), NullBackend)


def test_unknown_backend_lists_choices():
    with pytest.raises(ConfigError) as err:
        backends.create("nope")
    message = str(err.value)
    assert "'nope'" in message
    for name in backends.available():
        assert name in message


def test_null_backend_predicts_zeros():
    backend = backends.create("null", BackendOptions(max_batch_size=4, instances=2))
    assert isinstance(backend, NullBackend)
    with backend:
        info = backend.load(None)
        assert (info.input.shape, info.input.dtype, info.input.layout) == ((224, 224, 3), np.uint8, "NHWC")
        assert (info.max_batch_size, info.instances) == (4, 2)
        for n in (1, 3, 4, 6):
            out = backend.predict(np.zeros((n, 224, 224, 3), np.uint8), 1)
            assert out.shape == (n, 1001) and out.dtype == np.float32 and not out.any()


def test_null_backend_takes_its_model_from_options():
    extra = {"input_shape": [49, 10, 1], "input_dtype": "int8", "classes": 12, "layout": None}
    with backends.create("null", BackendOptions(extra=extra)) as backend:
        info = backend.load(None)
        assert (info.input.shape, info.input.dtype, info.input.layout) == ((49, 10, 1), np.int8, None)
        assert backend.predict(np.zeros((1, 49, 10, 1), np.int8)).shape == (1, 12)
