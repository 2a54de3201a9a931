"""The query sample library: holds only the samples LoadGen asks to load."""

from __future__ import annotations

import logging

import numpy as np

from datasets.cache import SampleStore

log = logging.getLogger(__name__)


class QuerySampleLibrary:
    """Preprocessed samples in memory, by dataset index.

    ``load``/``unload`` are LoadGen's callbacks: they copy the requested rows
    out of the (memory-mapped) store into one contiguous array, so peak memory
    follows the performance sample count, not the dataset size.
    """

    def __init__(self, store: SampleStore, performance_count: int):
        self.store = store
        self.total_count = len(store)
        self.performance_count = min(performance_count, self.total_count)
        self._rows = np.full(self.total_count, -1, dtype=np.int64)
        self._data: np.ndarray | None = None

    def load(self, indices: list[int]) -> None:
        wanted = np.unique(np.asarray(indices, dtype=np.int64))
        if self._data is not None:
            wanted = np.union1d(wanted, np.flatnonzero(self._rows >= 0))
        data = self.store.rows(wanted)
        self._rows[:] = -1
        self._rows[wanted] = np.arange(len(wanted))
        self._data = data
        log.debug("loaded %d samples (%.1f MB)", len(wanted), data.nbytes / 1e6)

    def unload(self, indices: list[int]) -> None:
        self._rows[np.asarray(indices, dtype=np.int64)] = -1
        if not (self._rows >= 0).any():
            self._data = None

    @property
    def loaded_count(self) -> int:
        return int((self._rows >= 0).sum())

    def batch(self, indices) -> np.ndarray:
        """Samples ``indices`` stacked on the first axis (a view for one sample)."""
        if len(indices) == 1:
            row = self._rows[indices[0]]
            if row < 0:
                raise KeyError(f"sample {indices[0]} was not loaded by LoadGen")
            return self._data[row:row + 1]
        rows = self._rows[np.asarray(indices, dtype=np.int64)]
        if (rows < 0).any():
            raise KeyError(f"samples {np.asarray(indices)[rows < 0].tolist()} were not loaded by LoadGen")
        return self._data[rows]
