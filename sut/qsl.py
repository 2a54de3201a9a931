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
        self._singles: list[np.ndarray] = []
        #: dataset index -> its one-row view (:meth:`single`)
        self._single_of: dict[int, np.ndarray] = {}

    def load(self, indices: list[int]) -> None:
        wanted = np.unique(np.asarray(indices, dtype=np.int64))
        if self._data is not None:
            wanted = np.union1d(wanted, np.flatnonzero(self._rows >= 0))
        data = self.store.rows(wanted)
        self._rows[:] = -1
        self._rows[wanted] = np.arange(len(wanted))
        self._data = data
        self._singles = [data[i:i + 1] for i in range(len(data))]
        self._single_of = dict(zip(wanted.tolist(), self._singles))
        log.debug("loaded %d samples (%.1f MB)", len(wanted), data.nbytes / 1e6)

    def unload(self, indices: list[int]) -> None:
        self._rows[np.asarray(indices, dtype=np.int64)] = -1
        for index in np.asarray(indices, dtype=np.int64).tolist():
            self._single_of.pop(index, None)
        if not (self._rows >= 0).any():
            self._data, self._singles, self._single_of = None, [], {}

    @property
    def loaded_count(self) -> int:
        return int((self._rows >= 0).sum())

    @property
    def data(self) -> np.ndarray:
        """The loaded samples, one per row (rows as returned by :meth:`rows`)."""
        return self._data

    @property
    def singles(self) -> list[np.ndarray]:
        """One-row views of :attr:`data`, made once at load time for backends
        that take one sample per call."""
        return self._singles

    def single(self, index: int) -> np.ndarray:
        """Dataset ``index``'s sample as a one-row view (the one-sample hot path)."""
        try:
            return self._single_of[index]
        except KeyError:
            raise KeyError(f"sample {index} was not loaded by LoadGen") from None

    def rows(self, indices) -> np.ndarray:
        """Rows of :attr:`data` holding dataset ``indices``; KeyError for a sample not loaded."""
        rows = self._rows[np.asarray(indices, dtype=np.int64)]
        if len(rows) and rows.min() < 0:
            missing = np.asarray(indices)[rows < 0].tolist()
            what = f"sample {missing[0]} was" if len(missing) == 1 else f"samples {missing} were"
            raise KeyError(f"{what} not loaded by LoadGen")
        return rows

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows stacked on the first axis: a view (no copy) when they are
        consecutive, else a gathered copy."""
        first = int(rows[0])
        if len(rows) == 1 or (rows[-1] - first == len(rows) - 1 and (np.diff(rows) == 1).all()):
            return self._data[first:first + len(rows)]
        return self._data[rows]
