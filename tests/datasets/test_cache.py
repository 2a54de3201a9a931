"""datasets.cache with the real ImageNet preprocessor: hits, misses, failures, parallelism."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from backends.base import TensorSpec
from datasets import cache, image_preprocessing
from datasets.imagenet import ImageNet
from sut.errors import DatasetError
from tests.conftest import need_module, shared_path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SPEC = TensorSpec("input", (128, 128, 3), np.uint8, "NHWC", 0.0078125, 128)


def sources(n):
    ds = ImageNet(str(shared_path("data", "imagenet-mini")), count=n)
    ds.scan()
    return ds.sources


def prepare(srcs, cache_root, spec=SPEC, preprocessing="mobilenet", workers=1, preprocess=None):
    ds = ImageNet(None, options={"preprocessing": preprocessing})
    return cache.prepare(srcs, preprocess or ds.preprocessor(spec), spec, ds.cache_key(spec),
                         cache_root=cache_root, workers=workers, progress=False)


class Counting:
    """Wraps a preprocessor and counts calls (serial runs only)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, src):
        self.calls += 1
        return self.fn(src)


def test_miss_then_hit(cache_dir):
    srcs = sources(4)
    counting = Counting(ImageNet(None).preprocessor(SPEC))
    first = prepare(srcs, cache_dir, preprocess=counting)
    assert counting.calls == 4 and first.path.name == "data.npy" and first.path.exists()
    second = prepare(srcs, cache_dir, preprocess=counting)
    assert counting.calls == 4, "second run should reuse the cache"
    assert second.path == first.path
    np.testing.assert_array_equal(np.asarray(second.data), np.asarray(first.data))
    assert second.rows([3, 0]).shape == (2, 128, 128, 3)


def test_cached_rows_equal_direct_preprocessing(cache_dir):
    srcs = sources(3)
    store = prepare(srcs, cache_dir)
    fn = ImageNet(None).preprocessor(SPEC)
    for i, src in enumerate(srcs):
        np.testing.assert_array_equal(store.rows([i])[0], fn(src))


@pytest.mark.parametrize("preprocessing, spec", [
    ("resnet50", SPEC),
    ("mobilenet", TensorSpec("input", (128, 128, 3), np.int8, "NHWC", 0.0078125, 0)),
    ("mobilenet", TensorSpec("input", (128, 128, 3), np.uint8, "NHWC", 0.0078125, 127)),
    ("mobilenet", TensorSpec("input", (3, 128, 128), np.uint8, "NCHW", 0.0078125, 128)),
    ("mobilenet", TensorSpec("input", (96, 96, 3), np.uint8, "NHWC", 0.0078125, 128)),
    ("mobilenet", TensorSpec("input", (128, 128, 3), np.float16, "NHWC")),
])
def test_key_changes_with_parameters(cache_dir, preprocessing, spec):
    srcs = sources(2)
    base = prepare(srcs, cache_dir)
    other = prepare(srcs, cache_dir, spec=spec, preprocessing=preprocessing)
    assert other.path.parent != base.path.parent
    assert other.data.shape == (2, *spec.shape) and other.data.dtype == spec.dtype


def test_changed_source_file_is_a_miss(tmp_path, cache_dir):
    srcs = []
    for src in sources(2):
        srcs.append(str(shutil.copy(src, tmp_path)))
    base = prepare(srcs, cache_dir)
    st = os.stat(srcs[0])
    os.utime(srcs[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert prepare(srcs, cache_dir).path.parent != base.path.parent


class PlainFunction:
    """The ImageNet preprocessor without ``into`` or ``releases_gil``: the
    cache checks and copies what it returns, in worker processes (picklable)."""

    def __init__(self, spec=SPEC, preprocessing="mobilenet"):
        self.fn = ImageNet(None, options={"preprocessing": preprocessing}).preprocessor(spec)

    def __call__(self, src):
        return self.fn(src)


class ThreadedFunction(PlainFunction):
    """As PlainFunction, but run on threads (still without ``into``)."""

    releases_gil = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.threads = set()

    def __call__(self, src):
        self.threads.add(threading.current_thread().name)
        return super().__call__(src)


class IntoFunction(PlainFunction):
    """With ``into`` but not ``releases_gil``: worker processes write the rows (as without OpenCV)."""

    def into(self, src, row):
        self.fn.into(src, row)


PREPROCESSORS = {
    "into, threads": lambda spec, preprocessing: None,  # the dataset's own
    "into, processes": IntoFunction,
    "plain, processes": PlainFunction,
    "plain, threads": ThreadedFunction,
}


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("kind", PREPROCESSORS)
def test_corrupt_image_leaves_no_complete_looking_cache(tmp_path, cache_dir, workers, kind):
    srcs = [str(shutil.copy(src, tmp_path)) for src in sources(10)]
    data = open(srcs[6], "rb").read()
    with open(srcs[6], "wb") as f:
        f.write(data[: len(data) // 3])
    with pytest.raises(DatasetError, match=os.path.basename(srcs[6])):
        prepare(srcs, cache_dir, workers=workers, preprocess=PREPROCESSORS[kind](SPEC, "mobilenet"))
    left = [p.name for p in cache_dir.rglob("*") if p.is_file()]
    assert "data.npy" not in left and not [n for n in left if "partial" in n], left


@pytest.mark.parametrize("kind", PREPROCESSORS)
@pytest.mark.parametrize("preprocessing, spec", [
    ("mobilenet", SPEC),
    ("resnet50", TensorSpec("input", (3, 96, 96), np.float16, "NCHW")),
])
@pytest.mark.parametrize("on_disk", [False, True], ids=["in-memory", "cache-file"])
def test_parallel_equals_serial(cache_dir, kind, preprocessing, spec, on_disk):
    srcs = sources(40)
    root = cache_dir if on_disk else None
    serial = prepare(srcs, None, spec=spec, preprocessing=preprocessing, workers=1)
    preprocess = PREPROCESSORS[kind](spec, preprocessing)
    parallel = prepare(srcs, root, spec=spec, preprocessing=preprocessing, workers=2, preprocess=preprocess)
    assert parallel.data.shape == (40, *spec.shape) and parallel.data.dtype == spec.dtype
    assert np.asarray(parallel.data).tobytes() == np.asarray(serial.data).tobytes()
    assert (parallel.path is not None) == on_disk
    if isinstance(preprocess, ThreadedFunction):
        assert preprocess.threads and all(name.startswith("preprocess") for name in preprocess.threads)


def test_gil_releasing_preprocessor_runs_on_threads(monkeypatch):
    """The ImageNet preprocessor (with OpenCV) needs no worker processes."""
    need_module("cv2", "the threaded path runs on OpenCV")
    monkeypatch.delenv("MLPERF_EDGE_NO_OPENCV", raising=False)
    image_preprocessing.opencv.cache_clear()
    try:
        preprocess = ImageNet(None).preprocessor(SPEC)
        assert preprocess.releases_gil
        monkeypatch.setattr(cache.concurrent.futures, "ProcessPoolExecutor", None)  # would fail if used
        store = prepare(sources(12), None, workers=2, preprocess=preprocess)
        assert store.data.shape == (12, 128, 128, 3)
    finally:
        image_preprocessing.opencv.cache_clear()


@pytest.mark.parametrize("workers", [1, 2])
def test_wrong_shape_from_preprocess_is_reported(tmp_path, cache_dir, workers):
    def wrong(src):
        return np.zeros((3, 3), np.uint8)

    wrong.releases_gil = True  # threads: a local function cannot go to a process
    with pytest.raises(AssertionError, match="expected uint8"):
        prepare(sources(10), cache_dir, workers=workers, preprocess=wrong)
    assert not [p for p in cache_dir.rglob("*") if p.is_file() and "data.npy" in p.name]


def test_cache_file_is_a_plain_npy(cache_dir):
    store = prepare(sources(9), cache_dir, workers=2)
    loaded = np.load(store.path)
    assert loaded.shape == (9, 128, 128, 3) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, prepare(sources(9), None, workers=1).data)


# --- failures: damaged file, unwritable directory, leftovers, interruption, orphans ------------

class Slow:
    """A tiny float preprocessor that records its worker's pid and sleeps (picklable)."""

    def __init__(self, pid_dir, delay):
        self.pid_dir, self.delay = str(pid_dir), delay

    def __call__(self, src):
        open(os.path.join(self.pid_dir, str(os.getpid())), "w").close()
        time.sleep(self.delay)
        return np.full((4,), float(len(src)), np.float32)


TINY = TensorSpec("x", (4,), np.float32)


def tiny(sources_, cache_root, workers=1, preprocess=None, pid_dir="/tmp"):
    return cache.prepare(sources_, preprocess or Slow(pid_dir, 0), TINY, {"t": 1}, cache_root=cache_root,
                         workers=workers, progress=False)


def test_damaged_cache_file_is_rebuilt_with_a_warning(cache_dir, tmp_path, caplog):
    srcs = [str(tmp_path / f"s{i}") for i in range(3)]
    for s in srcs:
        open(s, "w").close()
    first = tiny(srcs, cache_dir)
    path = first.path
    del first
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 5)  # data cut short
    again = tiny(srcs, cache_dir)
    assert "is damaged" in caplog.text and again.path == path and path.stat().st_size == size
    path.write_bytes(b"not a numpy file at all")
    caplog.clear()
    assert len(tiny(srcs, cache_dir)) == 3 and "is damaged" in caplog.text


def make_sources(tmp_path, n):
    srcs = [str(tmp_path / f"src{i}") for i in range(n)]
    for s in srcs:
        open(s, "w").close()
    return srcs


def test_cache_dir_that_is_a_file_is_one_dataset_error(tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("I am a file")
    with pytest.raises(DatasetError, match=rf"cannot write the preprocessing cache in {blocker}.*--cache-dir"):
        tiny(make_sources(tmp_path, 2), blocker)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_cache_dir_is_one_dataset_error(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o500)
    try:
        with pytest.raises(DatasetError, match=r"cannot write the preprocessing cache in .*ro/.*Permission denied.*--cache-dir"):
            tiny(make_sources(tmp_path, 2), root)
    finally:
        root.chmod(0o700)


def test_full_disk_is_one_dataset_error_and_leaves_no_partial(tmp_path):
    """RLIMIT_FSIZE in a child process stands in for a full disk (EFBIG instead of ENOSPC)."""
    root = tmp_path / "cache"
    code = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path.insert(0, {ROOT!r})
        import numpy as np
        from backends.base import TensorSpec
        from datasets import cache
        from sut.errors import DatasetError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        try:
            cache.prepare({make_sources(tmp_path, 4)!r}, lambda s: np.zeros((100, 100), np.float32),
                          TensorSpec("x", (100, 100), np.float32), {{}}, cache_root=__import__("pathlib").Path({str(root)!r}),
                          workers=1, progress=False)
        except DatasetError as exc:
            print("DatasetError:", exc)
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "DatasetError: cannot write the preprocessing cache in" in proc.stdout, (proc.stdout, proc.stderr)
    assert "--cache-dir" in proc.stdout and "Traceback" not in proc.stderr
    assert not [p for p in root.rglob("*") if "partial" in p.name]


def test_partials_of_dead_processes_are_removed_by_the_next_run(tmp_path, cache_dir):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folder = cache_dir / "0123456789abcdef01234567"
    folder.mkdir(parents=True)
    stale = [folder / f"data.npy.partial.{cache._HOST}.{dead.pid}", folder / f"data.npy.partial.{dead.pid}"]
    alive = [folder / f"data.npy.partial.{cache._HOST}.{os.getpid()}", folder / f"data.npy.partial.otherhost.{dead.pid}"]
    for p in stale + alive:
        p.write_bytes(b"x" * 10)
    tiny(make_sources(tmp_path, 2), cache_dir)
    assert [p.exists() for p in stale] == [False, False]
    assert [p.exists() for p in alive] == [True, True]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_request_ends_preprocessing_with_interrupted(tmp_path, cache_dir, monkeypatch, workers):
    from sut import signals
    from sut.errors import Interrupted

    calls = []

    def requested():
        calls.append(1)
        return signal.SIGTERM if len(calls) > 3 else None

    monkeypatch.setattr(signals, "requested", requested)
    with pytest.raises(Interrupted) as info:
        tiny(make_sources(tmp_path, 40), cache_dir, workers=workers, preprocess=Slow(tmp_path, 0.05))
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert not [p for p in cache_dir.rglob("*") if "partial" in p.name or p.name == "data.npy"]


def test_worker_processes_die_with_a_killed_harness(tmp_path):
    """SIGKILL the process that preprocesses: its worker processes end too (not re-parented and left)."""
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {ROOT!r})
        from pathlib import Path
        from tests.datasets.test_cache import Slow, tiny
        tiny({make_sources(tmp_path, 200)!r}, Path({str(tmp_path / "cache")!r}), workers=2,
             preprocess=Slow({str(pid_dir)!r}, 0.5))
        """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    deadline = time.monotonic() + 120
    while len(os.listdir(pid_dir)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    workers = [int(p) for p in os.listdir(pid_dir)]
    assert len(workers) >= 2, "workers never started"
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 60
    while any(cache.pid_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(cache.pid_alive(p) for p in workers)
