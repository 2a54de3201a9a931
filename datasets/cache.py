"""Preprocess a dataset once, in parallel, and keep the result on disk.

The cache for one (dataset, model input) pair is a single ``.npy`` file of
shape ``(N, *input_shape)`` under a directory named by a hash of everything
that changes its contents: the source files (names, sizes, mtimes), the
preprocessing parameters and :data:`CACHE_VERSION`. It is written as
``data.npy.partial.<host>.<pid>`` and renamed only when complete, so an
interrupted run never leaves a cache that looks finished; the next run
removes the partial files of processes that are gone. :class:`SampleStore`
memory-maps it; the QSL copies only the rows LoadGen asks to load.

Failures are one line: a cache directory that is a file, read-only or full
is a DatasetError (exit 4) naming the directory and ``--cache-dir``; a
damaged cache file is rebuilt with a warning; Ctrl-C/SIGTERM between chunks
(:func:`sut.signals.requested`) raises :class:`sut.errors.Interrupted`;
worker processes die with the harness (:func:`_worker_init`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from backends.base import TensorSpec
from sut import signals
from sut.errors import DatasetError, Interrupted

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
    cached = _load(final, shape, spec.dtype)
    if cached is not None:
        log.info("using cached preprocessed samples in %s", directory)
        return SampleStore(cached, final)
    remove_stale_partials(Path(cache_root))
    partial = directory / f"data.npy.partial.{_HOST}.{os.getpid()}"
    try:
        with _writing(directory, shape, spec.dtype):
            directory.mkdir(parents=True, exist_ok=True)
            rows = _FileRows.create(partial, spec.dtype, shape)
            _fill(rows, sources, preprocess, workers, progress)
            rows.sync()
            with open(directory / "meta.json", "w") as f:
                json.dump({"version": CACHE_VERSION, "spec": spec.describe(), "key": key,
                           "count": len(sources)}, f, indent=1, default=str)
            os.replace(partial, final)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    return SampleStore(np.load(final, mmap_mode="r"), final)


def _load(final: Path, shape, dtype) -> np.ndarray | None:
    """The complete cache file memory-mapped, or None when there is none, or
    when it is damaged or of another shape (then it is rebuilt, with a warning)."""
    if not final.exists():
        return None
    try:
        data = np.load(final, mmap_mode="r")
    except (OSError, ValueError, EOFError) as exc:  # truncated, bad header, unreadable
        log.warning("cache file %s is damaged (%s): rebuilding it", final, " ".join(str(exc).split()))
        return None
    if data.shape == shape and data.dtype == dtype:
        return data
    log.warning("cache %s has shape %s, expected %s: rebuilding", final, data.shape, shape)
    return None


#: errors that say the cache directory cannot take the file, not that a source is bad
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                errno.EEXIST, errno.EISDIR, errno.EFBIG}


@contextlib.contextmanager
def _writing(directory: Path, shape, dtype):
    """Turn a failure to write the cache into one DatasetError naming the directory and ``--cache-dir``."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, DatasetError) or exc.errno not in _DISK_ERRORS:
            raise
        size = int(np.prod(shape)) * np.dtype(dtype).itemsize
        raise DatasetError(
            f"cannot write the preprocessing cache in {directory}: {exc.strerror or exc}; it needs "
            f"{size / 1e6:,.0f} MB: pass --cache-dir DIR on a writable disk with room "
            f"(or --cache-dir none to keep the samples in memory)") from None


_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname() or "host")
#: ``data.npy.partial.<host>.<pid>`` (and ``data.npy.partial.<pid>`` of older versions)
_PARTIAL = re.compile(r"data\.npy\.partial\.(?:(?P<host>[A-Za-z0-9_-]+)\.)?(?P<pid>\d+)\Z")


def remove_stale_partials(root: Path) -> list[Path]:
    """Remove the partial cache files, under ``root``, of processes of this host
    that no longer run (killed runs); returns what was removed."""
    removed = []
    with contextlib.suppress(OSError):
        for path in root.glob("*/data.npy.partial.*"):
            match = _PARTIAL.match(path.name)
            if not match or (match["host"] or _HOST) != _HOST or pid_alive(int(match["pid"])):
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
                log.warning("removed %s, left by process %s that no longer runs", path, match["pid"])
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one of another user's counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # e.g. Windows: cannot tell, so keep the file
        return True
    try:  # a killed process not yet reaped by its parent is a zombie: gone too
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


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
    try:  # the progress line ends before any error is printed
        if workers == 1 or n < 8:
            _run_serial(rows, sources, preprocess, bar)
        elif getattr(preprocess, "releases_gil", False):
            _run_threads(rows, sources, preprocess, workers, bar)
        else:
            _run_processes(rows, sources, preprocess, workers, bar)
    finally:
        bar.close()


def _check_stop() -> None:
    """Interrupted when Ctrl-C or SIGTERM was received (:mod:`sut.signals`)."""
    signum = signals.requested()
    if signum is not None:
        raise Interrupted(signum)


def _completed(futures):
    """``concurrent.futures.as_completed``, checking for a stop request while it waits."""
    pending = set(futures)
    while pending:
        done, pending = concurrent.futures.wait(pending, timeout=0.2,
                                                return_when=concurrent.futures.FIRST_COMPLETED)
        _check_stop()
        yield from done


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
            _check_stop()
            write(i, src)
            bar.update(1)


def _run_threads(rows, sources, preprocess, workers, bar) -> None:
    with _opened(rows) as fd:
        pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="preprocess")
        futures = []
        try:
            futures = [pool.submit(_write_chunk, rows, sources[start:stop], start, preprocess, fd)
                       for start, stop in _chunks(len(sources), workers, 16)]
            for fut in _completed(futures):
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
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=_process_context(),
                                                initializer=_worker_init, initargs=(os.getpid(),)) as pool:
        futures = {}
        try:
            for start, stop in _chunks(len(sources), workers, 64):
                chunk = sources[start:stop]
                if to_file:
                    futures[pool.submit(_write_chunk, rows, chunk, start, preprocess)] = (start, stop)
                else:
                    futures[pool.submit(_preprocess_chunk, preprocess, chunk, rows.row_shape, rows.dtype)] = (start, stop)
            for fut in _completed(futures):
                (start, stop), arrays = futures[fut], fut.result()
                if not to_file:
                    rows.array[start:stop] = arrays
                bar.update(stop - start)
        except BaseException:
            # drop the chunks not started; leaving the block waits for the
            # running ones (at most 64 samples each) before the file goes
            for f in futures:
                f.cancel()
            _check_stop()  # a worker killed by the same signal: say interrupted, not broken
            raise


def _worker_init(parent: int) -> None:
    """In each worker process: die with the harness, leave Ctrl-C to it.

    On Linux the kernel kills the worker when its parent (the fork server,
    which exits with the harness) dies (``PR_SET_PDEATHSIG``); everywhere a
    thread also ends it once the harness process ``parent`` is gone, even
    after a SIGKILL. SIGINT is ignored: the harness ends the pool itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_parent_death_signal()
    watcher = threading.Thread(target=_watch_parent, args=(parent,), name="watch-parent", daemon=True)
    watcher.start()


def _set_parent_death_signal() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        return libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, interval: float = 1.0) -> None:
    while pid_alive(parent) and os.getppid() != 1:
        time.sleep(interval)
    os._exit(1)


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
