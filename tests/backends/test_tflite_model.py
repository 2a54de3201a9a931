"""The .tflite reader, checked against LiteRT's own view of the shared models."""

from __future__ import annotations

import numpy as np
import pytest

from backends import tflite_model
from sut.errors import ModelError
from tests.conftest import shared_path

TFLITE_FILES = [
    ("mobilenet", "mobilenet_v1_1.0_224_quant.tflite"),
    ("mobilenet", "mobilenet_v1_1.0_224_quant_edgetpu.tflite"),
    ("mobilenet", "mobilenet_v1_0.25_128_quant.tflite"),
    ("mobilenet", "mobilenet_v1_0.25_128_quant_edgetpu.tflite"),
    ("kws", "kws_ref_model.tflite"),
    ("kws", "kws_ref_model_float32.tflite"),
]
IDS = [f for _, f in TFLITE_FILES]


@pytest.mark.parametrize("parts", TFLITE_FILES, ids=IDS)
def test_custom_ops(parts):
    path = str(shared_path("models", *parts))
    edgetpu = "_edgetpu" in parts[1]
    assert tflite_model.custom_ops(path) == ({"edgetpu-custom-op"} if edgetpu else set())
    assert tflite_model.is_edgetpu_model(path) is edgetpu


@pytest.mark.parametrize("parts", TFLITE_FILES, ids=IDS)
def test_custom_ops_agree_with_generated_schema(parts):
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated",
                                 reason="ai_edge_litert ships the generated schema")
    path = shared_path("models", *parts)
    root = schema.Model.GetRootAs(path.read_bytes(), 0)
    codes = (root.OperatorCodes(i).CustomCode() for i in range(root.OperatorCodesLength()))
    assert tflite_model.custom_ops(str(path)) == {c.decode() for c in codes if c}


@pytest.mark.parametrize("parts", [p for p in TFLITE_FILES if "_edgetpu" not in p[1]],
                         ids=[i for i in IDS if "_edgetpu" not in i])
def test_io_tensors_agree_with_interpreter(parts, runtime):
    interpreter_module = runtime  # ai_edge_litert's, or tflite_runtime's where only that is installed
    path = str(shared_path("models", *parts))
    interpreter = interpreter_module.Interpreter(model_path=path)
    inputs, outputs = tflite_model.io_tensors(path)
    for ours, theirs in zip(inputs + outputs,
                            interpreter.get_input_details() + interpreter.get_output_details()):
        assert ours.name == theirs["name"]
        assert ours.shape == tuple(theirs["shape"])
        assert ours.dtype == np.dtype(theirs["dtype"])
        scale, zero_point = theirs["quantization"]
        assert (ours.scale, ours.zero_point) == ((scale, zero_point) if scale else (None, None))
        if ours.shape_signature is not None:
            assert ours.shape_signature == tuple(theirs["shape_signature"])


def test_edgetpu_model_io_matches_readme():
    path = str(shared_path("models", "mobilenet", "mobilenet_v1_1.0_224_quant_edgetpu.tflite"))
    (inp,), (out,) = tflite_model.io_tensors(path)
    assert (inp.shape, inp.dtype, inp.scale, inp.zero_point) == ((1, 224, 224, 3), np.uint8, 0.0078125, 128)
    assert (out.shape, out.dtype, out.scale) == ((1, 1001), np.uint8, 1 / 256)


def test_kws_batch_is_resizable():
    (inp,), _ = tflite_model.io_tensors(str(shared_path("models", "kws", "kws_ref_model.tflite")))
    assert inp.shape_signature == (-1, 49, 10, 1)


@pytest.mark.parametrize("content", [b"", b"hello", b"\x00" * 64], ids=["empty", "text", "zeros"])
def test_not_tflite(tmp_path, content):
    path = tmp_path / "bad.tflite"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="bad.tflite is not a TFLite model"):
        tflite_model.custom_ops(str(path))


def test_corrupt_tflite(tmp_path):
    path = tmp_path / "corrupt.tflite"
    path.write_bytes(b"\xff\xff\xff\x7fTFL3" + b"\x00" * 16)
    with pytest.raises(ModelError, match="corrupt.tflite is a truncated or corrupt TFLite file"):
        tflite_model.io_tensors(str(path))


def test_unreadable(tmp_path):
    with pytest.raises(ModelError, match="cannot read model"):
        tflite_model.custom_ops(str(tmp_path / "absent.tflite"))
