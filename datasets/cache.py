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
import hashlib
import json
import logging
import os
import sys
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
    ``workers=0`` uses one process per CPU core; 1 runs in this process.
    """
    shape = (len(sources), *spec.shape)
    if cache_root is not None:
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
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=spec.dtype, shape=shape)
    else:
        out = np.empty(shape, spec.dtype)
    try:
        _fill(out, sources, preprocess, workers, progress)
    except BaseException:
        if cache_root is not None:
            del out
            partial.unlink(missing_ok=True)
        raise
    if cache_root is None:
        return SampleStore(out)
    out.flush()
    del out
    with open(directory / "meta.json", "w") as f:
        json.dump({"version": CACHE_VERSION, "spec": spec.describe(), "key": key,
                   "count": len(sources)}, f, indent=1, default=str)
    os.replace(partial, final)
    return SampleStore(np.load(final, mmap_mode="r"), final)


def _fill(out, sources, preprocess, workers, progress) -> None:
    n = len(sources)
    workers = workers or os.cpu_count() or 1
    bar = Progress(n, "preprocessing", enabled=progress)
    if workers == 1 or n < 8:
        for i, src in enumerate(sources):
            out[i] = _checked(preprocess, src, out.shape[1:], out.dtype)
            bar.update(1)
        bar.close()
        return
    # workers write straight into the cache file when there is one, so no
    # array is pickled back to this process
    filename = getattr(out, "filename", None)
    chunk = max(1, min(64, n // (workers * 4)))
    with concurrent.futures.ProcessPoolExecutor(workers) as pool:
        futures = {pool.submit(_run_chunk, preprocess, sources[s:s + chunk], filename, s): s
                   for s in range(0, n, chunk)}
        try:
            for fut in concurrent.futures.as_completed(futures):
                start, arrays = futures[fut], fut.result()
                if filename is None:
                    out[start:start + len(arrays)] = arrays
                bar.update(min(chunk, n - start))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    bar.close()


def _run_chunk(preprocess, sources, filename, start):
    """Preprocess ``sources``; write them at row ``start`` of the ``.npy`` file
    ``filename``, or return them when there is no file."""
    if filename is None:
        return [preprocess(s) for s in sources]
    out = np.load(filename, mmap_mode="r+")
    for j, src in enumerate(sources):
        out[start + j] = _checked(preprocess, src, out.shape[1:], out.dtype)
    out.flush()
    return []


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
