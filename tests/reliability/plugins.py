"""Backends that misbehave on purpose, loaded as plugins (``--backend module:Class``).

They answer like the null backend (shaped as the demo model with
``harness.DEMO_SHAPE``). The ``*UnderLoadGen`` ones misbehave only once a
LoadGen test runs (any thread but the warm-up's), so the run gets that far
whatever the warm-up's number of calls. Environment: ``SLOW_S`` seconds per
``SlowBackend`` call.
"""

import os
import threading
import time

from backends.base import Backend
from backends.null import NullBackend


class _EveryCall(NullBackend):
    # every sample goes through predict_impl (the null backend's own predict_each answers without it)
    predict_each = Backend.predict_each

    @staticmethod
    def under_loadgen() -> bool:
        return threading.current_thread().name != "warm-up"


class SlowBackend(_EveryCall):
    """A slow device that keeps answering: ``SLOW_S`` seconds per call."""

    def predict_impl(self, batch, instance):
        time.sleep(float(os.environ.get("SLOW_S", "0.002")))
        return super().predict_impl(batch, instance)


class RaisesUnderLoadGen(_EveryCall):
    def predict_impl(self, batch, instance):
        if self.under_loadgen():
            raise RuntimeError("injected failure under LoadGen")
        return super().predict_impl(batch, instance)


class HangsUnderLoadGen(_EveryCall):
    def predict_impl(self, batch, instance):
        if self.under_loadgen():
            time.sleep(3600)
        return super().predict_impl(batch, instance)


class WrongCountUnderLoadGen(_EveryCall):
    """Answers one result too few under LoadGen."""

    def predict_impl(self, batch, instance):
        out = super().predict_impl(batch, instance)
        return out[:-1] if self.under_loadgen() else out


class LoadRaises(NullBackend):
    """``load`` raises something that is not one of the harness's errors."""

    def load_impl(self, model_path):
        raise RuntimeError("plugin could not open its device")


class CloseRaises(NullBackend):
    """Works, but ``close`` raises."""

    def close_impl(self):
        raise OSError(5, "Input/output error", "/dev/fake-accelerator")


class ConstructorRaises(NullBackend):
    def __init__(self, options=None):
        raise ValueError("plugin constructor failed")


class DescribeBroken(NullBackend):
    """A bug outside load/predict/close: an internal error (exit 1, traceback in error.log)."""

    def describe(self):
        raise TypeError("describe is broken")

