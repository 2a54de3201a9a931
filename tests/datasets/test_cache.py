"""datasets.cache with the real ImageNet preprocessor: hits, misses, failures, parallelism."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from backends.base import TensorSpec
from datasets import cache
from datasets.imagenet import ImageNet
from sut.errors import DatasetError
from tests.conftest import shared_path

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


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_image_leaves_no_complete_looking_cache(tmp_path, cache_dir, workers):
    srcs = [str(shutil.copy(src, tmp_path)) for src in sources(10)]
    data = open(srcs[6], "rb").read()
    with open(srcs[6], "wb") as f:
        f.write(data[: len(data) // 3])
    with pytest.raises(DatasetError, match=os.path.basename(srcs[6])):
        prepare(srcs, cache_dir, workers=workers)
    left = [p.name for p in cache_dir.rglob("*") if p.is_file()]
    assert "data.npy" not in left and not [n for n in left if "partial" in n], left


def test_parallel_equals_serial():
    srcs = sources(12)
    serial = prepare(srcs, None, workers=1)
    parallel = prepare(srcs, None, workers=2)
    assert parallel.data.shape == (12, 128, 128, 3)
    np.testing.assert_array_equal(parallel.data, serial.data)
