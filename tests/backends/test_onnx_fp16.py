"""backends/onnx_fp16.py: the fp16 ONNX copy TensorRT 11 builds ``fp16`` from, run for real with ONNX Runtime."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from sut.errors import BackendUnavailable
from tests.conftest import need_module

onnx = need_module("onnx")
ort = need_module("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def conv_model(path):
    """x (N,3,8,8) -> Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> Softmax (N,5)."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3, "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32) * 0.1, "b"),
             numpy_helper.from_array(rng.standard_normal((4, 5)).astype(np.float32), "fc"),
             numpy_helper.from_array(np.zeros(5, np.float32), "fcb")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["l"]),
             helper.make_node("Softmax", ["l"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_fp16_copy_runs_close_to_fp32_and_is_cached(tmp_path):
    need_module("onnxconverter_common", "the fp16 conversion")
    from backends import onnx_fp16
    from backends.base import file_sha256

    source = conv_model(tmp_path / "conv.onnx")
    sha = file_sha256(source)
    out = onnx_fp16.fp16_model(source, sha, tmp_path / "cache")
    assert out.parent == tmp_path / "cache" and sha[:24] in out.name
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # io kept float32
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert {i.data_type for i in model.graph.initializer} == {TensorProto.FLOAT16}
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-3)
    mtime = out.stat().st_mtime_ns
    assert onnx_fp16.fp16_model(source, sha, tmp_path / "cache") == out and out.stat().st_mtime_ns == mtime
    assert not list((tmp_path / "cache").glob("*.tmp.*"))


def test_missing_converter_is_one_line(tmp_path, monkeypatch):
    from backends import onnx_fp16

    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)
    with pytest.raises(BackendUnavailable, match="needs the 'onnxconverter-common' package.*pip install") as exc:
        onnx_fp16.fp16_model(conv_model(tmp_path / "conv.onnx"), "0" * 64, tmp_path)
    assert "\n" not in str(exc.value)
