"""Backends that fail on purpose, loaded as plugins (``--backend module:Class``).

``FAULT_AFTER`` (environment) is the number of ``predict`` calls that succeed
before the fault; warm-up calls count too.
"""

import os
import threading
import time

from backends.base import Backend
from backends.null import NullBackend


class _Counting(NullBackend):
    # every sample goes through the counted predict_impl (the null backend's
    # own predict_each answers without calling it)
    predict_each = Backend.predict_each

    def __init__(self, options=None):
        super().__init__(options)
        self.calls = 0
        self.after = int(os.environ.get("FAULT_AFTER", "50"))
        self.lock = threading.Lock()

    def _tick(self) -> bool:
        with self.lock:
            self.calls += 1
            return self.calls > self.after


class RaisingBackend(_Counting):
    def predict_impl(self, batch, instance):
        if self._tick():
            raise RuntimeError(f"injected failure on call {self.calls}")
        return super().predict_impl(batch, instance)


class HangingBackend(_Counting):
    def predict_impl(self, batch, instance):
        if self._tick():
            time.sleep(3600)
        return super().predict_impl(batch, instance)


class WrongCountBackend(_Counting):
    """Answers one result too few once past the fault point."""

    def predict_impl(self, batch, instance):
        out = super().predict_impl(batch, instance)
        return out[:-1] if self._tick() else out
