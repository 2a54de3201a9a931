"""datasets.cache with the real ImageNet preprocessor: hits, misses, failures, parallelism."""

from __future__ import annotations

import os
import shutil
import threading

import numpy as np
import pytest

from backends.base import TensorSpec
from datasets import cache, image_preprocessing
from datasets.imagenet import ImageNet
from sut.errors import DatasetError
from tests.conftest import need_module, shared_path

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
