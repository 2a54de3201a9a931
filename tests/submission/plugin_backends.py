"""Backends that cheat or drift on purpose, run as plugins (``--backend module:Class``).

Both wrap the real LiteRT backend so the KWS model answers for real.
"""

import threading
import time

import numpy as np

from backends.litert import LiteRTBackend


class DriftingBackend(LiteRTBackend):
    """Answers a sample differently once it has seen it before (the scores
    shift by one class), so TEST01's logged responses, made after the
    accuracy run, disagree with the accuracy run's."""

    def __init__(self, options=None):
        super().__init__(options)
        self.seen = set()
        self.lock = threading.Lock()

    def predict_impl(self, batch, instance):
        out = super().predict_impl(batch, instance)
        rows = []
        for k in range(len(batch)):
            key = batch[k].tobytes()
            with self.lock:
                again = key in self.seen
                self.seen.add(key)
            rows.append(np.roll(out[k], 1, axis=-1) if again else out[k])
        return np.stack(rows)


class CachingBackend(LiteRTBackend):
    """Returns the previous answer at once when the same input comes again and
    otherwise takes 2 ms more: the same-sample caching TEST04 exists to catch."""

    def __init__(self, options=None):
        super().__init__(options)
        self.last = None

    def predict_impl(self, batch, instance):
        key = batch.tobytes()
        if self.last is not None and self.last[0] == key:
            return self.last[1]
        time.sleep(0.002)
        out = np.array(super().predict_impl(batch, instance), copy=True)
        self.last = (key, out)
        return out
