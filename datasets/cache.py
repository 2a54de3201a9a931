"""Preprocess a dataset once, in parallel, and keep the result on disk.

The cache for one (dataset, model input) pair is a single ``.npy`` file of
shape ``(N, *input_shape)`` under a directory named by a hash of everything
that changes its contents: the source files (names, sizes, mtimes), the
preprocessing parameters and :data:`CACHE_VERSION`. It is written as
``data.npy.partial`` and renamed only when complete, so an interrupted run
never leaves a cache that looks finished. :class:`SampleStore` memory-maps it;
the QSL copies only the rows LoadGen asks to load.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from backends.base import TensorSpec

log = logging.getLogger(__name__)

#: bump when preprocessing code changes its output
CACHE_VERSION = 1
DEFAULT_CACHE_DIR = Path(os.environ.get("MLPERF_EDGE_CACHE", Path.home() / ".cache" / "mlperf-edge"))


class SampleStore:
    """Preprocessed samples, row ``i`` = sample index ``i``."""

    def __init__(self, data: np.ndarray, path: Path | None = None):
        self.data = data
        self.path = path

    def __len__(self) -> int:
        return len(self.data)

    def rows(self, indices: Sequence[int]) -> np.ndarray:
        """A contiguous in-memory copy of the given rows."""
        return np.ascontiguousarray(self.data[np.asarray(indices, dtype=np.int64)])


def cache_dir_for(sources: Sequence[str], spec: TensorSpec, key: dict[str, Any], root: Path) -> Path:
    h = hashlib.sha256()
    for src in sources:
        st = os.stat(src)
        h.update(f"{os.path.abspath(src)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    meta = {"version": CACHE_VERSION, "spec": spec.describe(), "key": key}
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return Path(root) / h.hexdigest()[:24]


def prepare(
    sources: Sequence[str],
    preprocess: Callable[[str], np.ndarray],
    spec: TensorSpec,
    key: dict[str, Any],
    cache_root: Path | None = DEFAULT_CACHE_DIR,
    workers: int = 0,
    progress: bool = True,
) -> SampleStore:
    """Preprocess every source (or reuse the cache) and return the store.

    ``cache_root=None`` keeps everything in memory (nothing written).
    ``workers=0`` uses one worker per CPU core; 1 runs in this thread.
    Workers are threads when ``preprocess.releases_gil`` is true, else
    processes. A preprocessor with ``into(source, row)`` writes each sample
    into the row itself, without an intermediate array.
    """
    shape = (len(sources), *spec.shape)
    if cache_root is None:
        out = np.empty(shape, spec.dtype)
        _fill(_MemoryRows(out), sources, preprocess, workers, progress)
        return SampleStore(out)
    directory = cache_dir_for(sources, spec, key, cache_root)
    final = directory / "data.npy"
    if final.exists():
        data = np.load(final, mmap_mode="r")
        if data.shape == shape and data.dtype == spec.dtype:
            log.info("using cached preprocessed samples in %s", directory)
            return SampleStore(data, final)
        log.warning("cache %s has shape %s, expected %s: rebuilding", final, data.shape, shape)
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / f"data.npy.partial.{os.getpid()}"
    try:
        rows = _FileRows.create(partial, spec.dtype, shape)
        _fill(rows, sources, preprocess, workers, progress)
        rows.sync()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    with open(directory / "meta.json", "w") as f:
        json.dump({"version": CACHE_VERSION, "spec": spec.describe(), "key": key,
                   "count": len(sources)}, f, indent=1, default=str)
    os.replace(partial, final)
    return SampleStore(np.load(final, mmap_mode="r"), final)


# --- where the rows go -------------------------------------------------------------

class _MemoryRows:
    """Rows of an array in this process (threads and the serial loop write them in place)."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.row_shape, self.dtype = array.shape[1:], array.dtype

    def writer(self, preprocess, fd=None):
        """``write(i, source)`` (``fd`` is unused: nothing to open)."""
        into = getattr(preprocess, "into", None)
        if into is not None:
            return lambda i, src: into(src, self.array[i])

        def write(i, src):
            self.array[i] = _checked(preprocess, src, self.row_shape, self.dtype)

        return write


@dataclasses.dataclass(frozen=True)
class _FileRows:
    """Rows of the ``.npy`` file being written, by ``os.pwrite`` at their offset.

    Writing through the file is ~2-4x cheaper here than storing into a
    writable memory map of it, which takes a page fault on every new page;
    and a worker process needs only the name and offset (picklable).
    """

    path: str
    offset: int  # where the data starts, after the header
    row_shape: tuple[int, ...]
    dtype: np.dtype

    @classmethod
    def create(cls, path: Path, dtype, shape: tuple[int, ...]) -> _FileRows:
        """Write the header of an ``.npy`` of ``shape`` and size the file (its rows read as zeros)."""
        header = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        rows = cls(str(path), header.offset, tuple(shape[1:]), np.dtype(dtype))
        del header
        return rows

    def writer(self, preprocess, fd: int):
        """``write(i, source)`` into the open file ``fd``, through this thread's row buffer."""
        into = getattr(preprocess, "into", None)
        buffer = _row_buffer(self.row_shape, self.dtype)
        row_bytes = buffer.nbytes

        def write(i, src):
            if into is not None:
                into(src, buffer)
                row = buffer
            else:
                row = np.ascontiguousarray(_checked(preprocess, src, self.row_shape, self.dtype))
            _pwrite_all(fd, memoryview(row).cast("B"), self.offset + i * row_bytes)

        return write

    def sync(self) -> None:
        """Wait until the rows are on disk, before the file is renamed into place,
        so that a power cut cannot leave a complete-looking cache of zeros."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            getattr(os, "fdatasync", os.fsync)(fd)  # the size is set already: data is what matters
        finally:
            os.close(fd)


_THREAD = threading.local()


def _row_buffer(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """One reusable row per thread: a fresh one per sample would take page faults."""
    buffer = getattr(_THREAD, "row", None)
    if buffer is None or buffer.shape != shape or buffer.dtype != dtype:
        buffer = _THREAD.row = np.empty(shape, dtype)
    return buffer


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """``os.pwrite`` until all of ``data`` is written (it may write less than asked)."""
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


# --- who computes them -----------------------------------------------------------------

def _fill(rows, sources, preprocess, workers, progress) -> None:
    """Preprocess every source into its row.

    Serially with ``workers=1`` (or a handful of sources); else on threads
    when the preprocessor says its heavy steps release the GIL (no process
    start-up, nothing pickled), else in worker processes.
    """
    n = len(sources)
    workers = workers or _cores()
    bar = Progress(n, "preprocessing", enabled=progress)
    if workers == 1 or n < 8:
        _run_serial(rows, sources, preprocess, bar)
    elif getattr(preprocess, "releases_gil", False):
        _run_threads(rows, sources, preprocess, workers, bar)
    else:
        _run_processes(rows, sources, preprocess, workers, bar)
    bar.close()


def _cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _chunks(n: int, workers: int, most: int) -> list[tuple[int, int]]:
    """(start, stop) work items: at least 4 per worker (so a slow one does not
    hold up the end), at most ``most`` sources each."""
    size = max(1, min(most, n // (workers * 4)))
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _run_serial(rows, sources, preprocess, bar) -> None:
    with _opened(rows) as fd:
        write = rows.writer(preprocess, fd)
        for i, src in enumerate(sources):
            write(i, src)
            bar.update(1)


def _run_threads(rows, sources, preprocess, workers, bar) -> None:
    with _opened(rows) as fd:
        pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="preprocess")
        futures = []
        try:
            futures = [pool.submit(_write_chunk, rows, sources[start:stop], start, preprocess, fd)
                       for start, stop in _chunks(len(sources), workers, 16)]
            for fut in concurrent.futures.as_completed(futures):
                bar.update(fut.result())
        finally:
            # on an error, drop the chunks not started and wait for the
            # running ones: the caller removes the file they write into
            for fut in futures:  # shutdown(cancel_futures=) is Python 3.9+
                fut.cancel()
            pool.shutdown(wait=True)


def _run_processes(rows, sources, preprocess, workers, bar) -> None:
    """Worker processes write straight into the cache file when there is one,
    so no array is pickled back to this process."""
    to_file = isinstance(rows, _FileRows)
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=_process_context()) as pool:
        futures = {}
        for start, stop in _chunks(len(sources), workers, 64):
            chunk = sources[start:stop]
            if to_file:
                futures[pool.submit(_write_chunk, rows, chunk, start, preprocess)] = (start, stop)
            else:
                futures[pool.submit(_preprocess_chunk, preprocess, chunk, rows.row_shape, rows.dtype)] = (start, stop)
        try:
            for fut in concurrent.futures.as_completed(futures):
                (start, stop), arrays = futures[fut], fut.result()
                if not to_file:
                    rows.array[start:stop] = arrays
                bar.update(stop - start)
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _process_context():
    """Worker processes come from a fork server (a clean single-threaded
    process), never forked from this one: a fork of a process that runs
    threads (LoadGen's, a runtime's, a thread pool's) can copy a lock held
    by another thread, and the child then waits for it forever (seen in CI:
    a worker stuck in multiprocessing's after-fork handlers, the run hung)."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def _write_chunk(rows, sources, first_row, preprocess, fd=None) -> int:
    """Write ``sources`` into the rows from ``first_row`` on; opens the file
    itself when ``fd`` is None (in a worker process)."""
    with _opened(rows, fd) as fd:
        write = rows.writer(preprocess, fd)
        for i, src in enumerate(sources, start=first_row):
            write(i, src)
    return len(sources)


def _preprocess_chunk(preprocess, sources, shape, dtype) -> list[np.ndarray]:
    return [_checked(preprocess, src, shape, dtype) for src in sources]


@contextlib.contextmanager
def _opened(rows, fd=None):
    """The file descriptor to write ``rows`` with: ``fd`` when given, else one
    opened for the duration (None for rows in memory)."""
    if fd is not None or not isinstance(rows, _FileRows):
        yield fd
        return
    fd = os.open(rows.path, os.O_WRONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def _checked(preprocess, src, shape, dtype):
    arr = preprocess(src)
    if arr.shape != tuple(shape) or arr.dtype != dtype:
        raise AssertionError(f"preprocessing {src} gave {arr.dtype}{arr.shape}, expected {dtype}{tuple(shape)}")
    return arr


class Progress:
    """A minimal progress line on stderr (no dependency), updated at most 5x/s."""

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total, self.label, self.done = total, label, 0
        self.enabled = enabled and total > 0
        self.start = self._last = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.2 or self.done == self.total):
            self._last = now
            rate = self.done / max(now - self.start, 1e-9)
            sys.stderr.write(f"\r{self.label}: {self.done}/{self.total} ({rate:.0f}/s)")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
