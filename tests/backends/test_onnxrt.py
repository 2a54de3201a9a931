"""ONNX Runtime backend on the shared ONNX MobileNet and small graphs built with onnx.helper."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import backends
from backends.base import BackendOptions
from backends.onnxrt import OnnxRuntimeBackend
from sut.errors import BackendUnavailable, ConfigError, ModelError
from tests.backends.concurrency import predict_per_instance
from tests.conftest import need_module, shared_path


def mobilenet():
    return str(shared_path("models", "mobilenet", "mobilenet_v1_1.0_224_quant_qdq_nchw.onnx"))


def load(path, **options):
    need_module("onnxruntime")
    backend = OnnxRuntimeBackend(BackendOptions(**options))
    backend.load(path)
    return backend


def tiny_model(tmp_path, input_shape, name="tiny.onnx"):
    """A graph that doubles its input: float32 in, float32 out, the given (symbolic) shape."""
    onnx = need_module("onnx", "builds the small test graphs")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])], "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, input_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, str(path))
    return str(path)


def nchw_pixels(image_name):
    from PIL import Image

    image = Image.open(shared_path("data", "images-misc", image_name)).convert("RGB")
    pixels = np.asarray(image.resize((224, 224), Image.BILINEAR), dtype=np.float32)
    return ((pixels - 128) / 128).transpose(2, 0, 1)[None]  # the model's (x-128)/128, NCHW


def test_mobilenet_model_info():
    with load(mobilenet(), max_batch_size=8) as backend:
        info = backend.info
        assert (info.input.shape, info.input.dtype, info.input.layout) == ((3, 224, 224), np.float32, "NCHW")
        assert (info.input.scale, info.input.zero_point) == (None, None)
        assert (info.output.shape, info.output.dtype) == ((1001,), np.float32)
        assert (info.batch_sizes, info.max_batch_size, info.instances) == ((1,), 1, 1)


def test_cat_is_egyptian_cat():
    with load(mobilenet()) as backend:
        scores = backend.predict(nchw_pixels("cat.bmp"), 0)
    assert scores.shape == (1, 1001)
    assert int(np.argmax(scores[0])) == 286  # Egyptian cat, 1001-class index


def test_instances_agree_with_single_instance():
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32) for _ in range(2)]
    with load(mobilenet(), threads=1) as single, load(mobilenet(), instances=2, threads=1) as multi:
        assert multi.info.instances == 2
        assert multi.describe()["instances"] == 2 and multi.describe()["threads"] == 1
        expected = [single.predict(b, 0) for b in batches]
        results = predict_per_instance(multi, batches, 2, repeats=3)
        for got, want in zip(results, expected):
            np.testing.assert_array_equal(got, want)


def test_session_options_follow_backend_options():
    with load(mobilenet(), threads=2) as backend:
        opts = backend._sessions[0].get_session_options()
        assert (opts.intra_op_num_threads, opts.inter_op_num_threads) == (2, 1)
        assert backend.describe()["providers"] == ["CPUExecutionProvider"]


def test_symbolic_batch_takes_any_batch(tmp_path):
    path = tiny_model(tmp_path, ["N", 3, 8, 8])
    with load(path, max_batch_size=4) as backend:
        info = backend.info
        assert (info.batch_sizes, info.max_batch_size) == (None, 4)
        assert (info.input.shape, info.input.layout) == ((3, 8, 8), "NCHW")
        assert info.split_batch(7) == [4, 3]
        batch = np.arange(3 * 3 * 8 * 8, dtype=np.float32).reshape(3, 3, 8, 8)
        np.testing.assert_array_equal(backend.predict(batch, 0), batch * 2)


def test_nhwc_layout_and_non_image(tmp_path):
    with load(tiny_model(tmp_path, [None, 8, 8, 3], "nhwc.onnx")) as backend:
        assert (backend.info.input.shape, backend.info.input.layout) == ((8, 8, 3), "NHWC")
    with load(tiny_model(tmp_path, [1, 49, 10, 1], "kws.onnx")) as backend:
        assert (backend.info.input.layout, backend.info.batch_sizes) == (None, (1,))


def test_fixed_batch_other_than_one(tmp_path):
    with pytest.raises(ModelError, match="fixed batch size of 2"):
        load(tiny_model(tmp_path, [2, 3, 8, 8]))


def test_symbolic_image_size(tmp_path):
    with pytest.raises(ModelError, match="only the first"):
        load(tiny_model(tmp_path, ["N", 3, "H", "W"]))


def test_corrupt_and_missing_model(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n")
    with pytest.raises(ModelError, match="notes.onnx"):
        load(str(path))
    with pytest.raises(ModelError, match="not found"):
        load(str(tmp_path / "absent.onnx"))
    with pytest.raises(ModelError, match=r"\.onnx"):
        load(str(shared_path("models", "kws", "kws_ref_model.tflite")))


def test_providers_checked():
    with pytest.raises(ConfigError, match="FooExecutionProvider"):
        load(mobilenet(), extra={"providers": ["FooExecutionProvider"]})
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
        load(mobilenet(), extra={"providers": ["CUDAExecutionProvider"]})


def test_precision_refused():
    with pytest.raises(ConfigError, match="fp16"):
        load(mobilenet(), precision="fp16")


def test_version_and_describe_before_load():
    need_module("onnxruntime")
    backend = OnnxRuntimeBackend(BackendOptions(extra={"providers": ["FooExecutionProvider"]}))
    assert backend.version().startswith("onnxruntime 1.")
    assert backend.describe()["providers"] == ["FooExecutionProvider"]


def test_missing_runtime_is_backend_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackendUnavailable, match=r"onnxruntime.*pip install -e '\.\[onnxruntime\]'"):
        backends.create("onnxruntime")
