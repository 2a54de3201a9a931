"""int8 by calibration (backends/int8_calibration.py): real ONNX Runtime quantisation,
run by ONNX Runtime and OpenVINO; the KWS float model end to end through run.py."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import subprocess
import sys

import numpy as np
import pytest

from backends import int8_calibration as ic
from backends.base import BackendOptions, TensorSpec
from sut.errors import BackendUnavailable, ConfigError, ModelError
from tests.conftest import ROOT, need_module, shared_path

SPEC = TensorSpec("x", (3, 8, 8), np.float32, "NCHW")


def tiny_cnn(path, batch="N", weight_only_int8=False):
    """Conv(3->4, 3x3) + Relu + GlobalAveragePool + Flatten + Gemm(4->5), float32, seeded weights.

    ``weight_only_int8``: the conv weights stored as int8 behind a DequantizeLinear
    (what tf2onnx makes of a dynamic-range .tflite): still a float model.
    """
    onnx = need_module("onnx", "builds the test graphs")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b"),
             numpy_helper.from_array(rng.normal(0, 0.5, (4, 5)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(rng.normal(0, 0.1, 5).astype(np.float32), "fc_b")]
    nodes = []
    if weight_only_int8:
        inits += [numpy_helper.from_array(np.round(w / 0.01).clip(-127, 127).astype(np.int8), "w_q"),
                  numpy_helper.from_array(np.array(0.01, np.float32), "w_scale")]
        nodes.append(helper.make_node("DequantizeLinear", ["w_q", "w_scale"], ["w"]))
    else:
        inits.append(numpy_helper.from_array(w, "w"))
    nodes += [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
              helper.make_node("Relu", ["c"], ["r"]),
              helper.make_node("GlobalAveragePool", ["r"], ["p"]),
              helper.make_node("Flatten", ["p"], ["f"]),
              helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"])]
    graph = helper.make_graph(nodes, "tiny_cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def batches(n=4, size=2, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (size, 3, 8, 8)).astype(np.float32) for _ in range(n)]


def op_types(path):
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.fixture(autouse=True)
def _runtime():
    need_module("onnxruntime")
    need_module("onnx", "reads and writes the models")


def test_qdq_copy_is_quantised_cached_and_keyed(tmp_path, caplog, monkeypatch):
    model = tiny_cnn(tmp_path / "cnn.onnx")
    assert not ic.is_quantized(model) and ic.model_precision(model) == "fp32"
    with caplog.at_level(logging.INFO, logger="backends.int8_calibration"):
        qdq = ic.qdq_model(model, SPEC, batches(), tmp_path / "cache")
    assert qdq.parent == tmp_path / "cache" / "qdq" and qdq.suffixes[-2:] == [".qdq", ".onnx"]
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types(qdq)
    assert ic.is_quantized(qdq) and ic.model_precision(qdq) == "int8"
    assert "calibrating" in caplog.text and "8 samples" in caplog.text and "wrote" in caplog.text
    meta = json.loads(qdq.with_suffix(".json").read_text())
    assert meta["calibration"]["count"] == 8 and meta["settings"]["per_channel"] is False
    assert sorted(p.name for p in qdq.parent.iterdir()) == sorted([qdq.name, qdq.with_suffix(".json").name])

    # the same model, data and settings: reused without calibrating
    from onnxruntime import quantization

    monkeypatch.setattr(quantization, "quantize_static", lambda *a, **k: pytest.fail("calibrated again"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="backends.int8_calibration"):
        assert ic.qdq_model(model, SPEC, batches(), tmp_path / "cache") == qdq
    assert "using cached" in caplog.text
    monkeypatch.undo()
    # other data, other settings: another copy
    other_data = ic.qdq_model(model, SPEC, batches(seed=1), tmp_path / "cache")
    other_settings = ic.qdq_model(model, SPEC, batches(), tmp_path / "cache", {"per_channel": True})
    assert len({qdq, other_data, other_settings}) == 3


def test_qdq_copy_runs_close_to_float_on_onnxruntime_and_openvino(tmp_path):
    import onnxruntime as ort

    model = tiny_cnn(tmp_path / "cnn.onnx")
    qdq = ic.qdq_model(model, SPEC, batches(n=16), tmp_path)
    x = batches(n=1, size=8, seed=5)[0]
    want = ort.InferenceSession(model).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(qdq)).run(None, {"x": x})[0]
    assert not np.array_equal(got, want)  # really quantised
    np.testing.assert_allclose(got, want, atol=0.05 * np.abs(want).max())
    if importlib.util.find_spec("openvino"):
        import openvino as ov

        compiled = ov.Core().compile_model(str(qdq), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        np.testing.assert_allclose(compiled(x)[0], got, atol=0.05 * np.abs(want).max())


def test_already_quantised_model_is_used_as_it_is(tmp_path):
    mobilenet = shared_path("models", "mobilenet", "mobilenet_v1_1.0_224_quant_qdq_nchw.onnx")
    assert ic.is_quantized(mobilenet) and ic.model_precision(mobilenet) == "int8"
    spec = TensorSpec("input", (3, 224, 224), np.float32, "NCHW")
    assert ic.qdq_model(mobilenet, spec, [], tmp_path) == mobilenet
    assert not (tmp_path / "qdq").exists()


def test_weight_only_int8_model_counts_as_float(tmp_path):
    model = tiny_cnn(tmp_path / "weights_int8.onnx", weight_only_int8=True)
    assert "DequantizeLinear" in op_types(model)
    assert not ic.is_quantized(model) and ic.model_precision(model) == "fp32"
    assert "QuantizeLinear" in op_types(ic.qdq_model(model, SPEC, batches(), tmp_path))


def test_weight_only_int8_model_is_calibrated_by_every_onnx_backend(tmp_path):
    """int8 of a weight-only model goes to calibration (Backend.load's Q/DQ copy), and the copy
    keeps the model's answers: ONNX Runtime here; TensorRT in test_tensorrt.py."""
    import onnxruntime as ort

    from backends.onnxrt import OnnxRuntimeBackend

    model = tiny_cnn(tmp_path / "weights_int8.onnx", weight_only_int8=True)
    options = BackendOptions(precision="int8", cache_dir=str(tmp_path), calibration=lambda spec: batches(n=16))
    x = batches(n=1, size=8, seed=5)[0]
    want = ort.InferenceSession(model).run(None, {"x": x})[0]
    with OnnxRuntimeBackend(options) as backend:
        backend.load(model)
        assert backend.qdq_path and "QuantizeLinear" in op_types(backend.qdq_path)
        np.testing.assert_allclose(backend.predict(x), want, atol=0.05 * np.abs(want).max())


def test_fixed_batch_model_gets_batches_of_its_size(tmp_path):
    model = tiny_cnn(tmp_path / "fixed.onnx", batch=1)
    from onnxruntime import quantization

    real, seen = quantization.quantize_static, []

    def spy(model_input, model_output, reader, **kwargs):
        class Recorder(quantization.CalibrationDataReader):
            def get_next(self):
                item = reader.get_next()
                if item is not None:
                    seen.append(item["x"].shape)
                return item

        return real(model_input, model_output, Recorder(), **kwargs)

    quantization.quantize_static = spy
    try:
        ic.qdq_model(model, SPEC, batches(n=3, size=2), tmp_path)
    finally:
        quantization.quantize_static = real
    assert seen == [(1, 3, 8, 8)] * 6


def test_bad_inputs_are_clear_errors(tmp_path):
    model = tiny_cnn(tmp_path / "cnn.onnx")
    with pytest.raises(ModelError, match="not an ONNX model"):
        ic.qdq_model(shared_path("models", "kws", "kws_ref_model_float32.tflite"), SPEC, batches(), tmp_path)
    (tmp_path / "junk.onnx").write_bytes(b"\x00\xffnot a model")
    with pytest.raises(ModelError, match="junk.onnx is not a readable ONNX model"):
        ic.qdq_model(tmp_path / "junk.onnx", SPEC, batches(), tmp_path)
    with pytest.raises(ModelError, match="not found"):
        ic.qdq_model(tmp_path / "absent.onnx", SPEC, batches(), tmp_path)
    with pytest.raises(ConfigError, match=r"calibration batch is float64\[2, 3, 8, 8\].*float32\[n, 3, 8, 8\]"):
        ic.qdq_model(model, SPEC, [b.astype(np.float64) for b in batches()], tmp_path)
    with pytest.raises(ConfigError, match="no calibration samples"):
        ic.qdq_model(model, SPEC, [], tmp_path)
    with pytest.raises(ConfigError, match="calibrate_method='best'"):
        ic.qdq_model(model, SPEC, batches(), tmp_path, {"calibrate_method": "best"})
    with pytest.raises(ConfigError, match="unknown int8 calibration setting bits"):
        ic.qdq_model(model, SPEC, batches(), tmp_path, {"bits": 4})


def test_failed_quantisation_leaves_no_file(tmp_path, monkeypatch):
    from onnxruntime import quantization

    def broken(model_input, model_output, *args, **kwargs):
        open(model_output, "wb").write(b"half")
        raise RuntimeError("shape inference failed\nmore")

    monkeypatch.setattr(quantization, "quantize_static", broken)
    with pytest.raises(ModelError, match=r"could not quantise .*cnn.onnx: RuntimeError: shape inference failed$"):
        ic.qdq_model(tiny_cnn(tmp_path / "cnn.onnx"), SPEC, batches(), tmp_path / "cache")
    assert list((tmp_path / "cache" / "qdq").iterdir()) == []


def test_missing_onnxruntime_names_the_extra(tmp_path, monkeypatch):
    model = tiny_cnn(tmp_path / "cnn.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    with pytest.raises(BackendUnavailable, match=r"onnxruntime.*pip install -e '\.\[onnxruntime\]'"):
        ic.qdq_model(model, SPEC, batches(), tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(BackendUnavailable, match=r"'onnx'.*pip install -e '\.\[onnxruntime\]'"):
        ic.input_spec(model)


def test_input_spec(tmp_path):
    assert ic.input_spec(tiny_cnn(tmp_path / "cnn.onnx")) == SPEC


# --- through the backends ------------------------------------------------------------------

def test_onnxruntime_int8_loads_the_calibrated_copy(tmp_path):
    from backends.onnxrt import OnnxRuntimeBackend

    model = tiny_cnn(tmp_path / "cnn.onnx")
    asked = []

    def calibration(spec):
        asked.append(spec)
        return batches(n=8)

    options = BackendOptions(precision="int8", max_batch_size=4, cache_dir=str(tmp_path / "cache"),
                             calibration=calibration)
    with OnnxRuntimeBackend(options) as backend:
        info = backend.load(model)
        assert asked == [SPEC] and info.input == SPEC and info.max_batch_size == 4
        assert backend.qdq_path.startswith(str(tmp_path / "cache" / "qdq"))
        assert backend.describe()["precision"] == f"int8 (Q/DQ model {backend.qdq_path})"
        assert backend.predict(batches(n=1)[0], 0).shape == (2, 5)
    with OnnxRuntimeBackend(BackendOptions(precision="fp32")) as backend:
        backend.load(model)
        assert backend.qdq_path is None and backend.describe()["precision"] == "fp32"


def test_onnxruntime_precisions_follow_the_model(tmp_path):
    from backends.onnxrt import OnnxRuntimeBackend

    model = tiny_cnn(tmp_path / "cnn.onnx")
    mobilenet = str(shared_path("models", "mobilenet", "mobilenet_v1_1.0_224_quant_qdq_nchw.onnx"))
    backend = OnnxRuntimeBackend()
    assert backend.supported_precisions(model) == ("fp32", "int8")
    assert backend.supported_precisions(mobilenet) == ("int8",)
    with pytest.raises(ConfigError, match=r"cannot apply precision fp16 to .*cnn.onnx: it can apply fp32, int8"):
        backend.check_precision("fp16", model)
    with pytest.raises(ConfigError, match="cannot apply precision fp32 .*it can apply int8"):
        OnnxRuntimeBackend(BackendOptions(precision="fp32")).load(mobilenet)
    with OnnxRuntimeBackend(BackendOptions(precision="int8")) as quantised:  # the model's own: no calibration
        quantised.load(mobilenet)
        assert quantised.qdq_path is None
        assert quantised.describe()["precision"] == "int8 (the model's own Q/DQ nodes)"


def test_int8_without_calibration_data_is_a_config_error(tmp_path):
    from backends.onnxrt import OnnxRuntimeBackend

    with pytest.raises(ConfigError, match="needs calibration samples"):
        OnnxRuntimeBackend(BackendOptions(precision="int8")).load(tiny_cnn(tmp_path / "cnn.onnx"))


def test_without_a_cache_dir_the_copy_lives_until_close(tmp_path):
    from backends.onnxrt import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(BackendOptions(precision="int8", calibration=lambda spec: batches()))
    backend.load(tiny_cnn(tmp_path / "cnn.onnx"))
    copy = backend.qdq_path
    assert copy and not copy.startswith(str(tmp_path)) and __import__("os").path.exists(copy)
    backend.close()
    assert not __import__("os").path.exists(copy)


def test_openvino_int8_runs_the_same_copy_in_int8(tmp_path):
    need_module("openvino")
    from backends.openvino import OpenVINOBackend

    model = tiny_cnn(tmp_path / "cnn.onnx")
    options = BackendOptions(precision="int8", cache_dir=str(tmp_path), calibration=lambda spec: batches())
    with OpenVINOBackend(options) as backend:
        backend.load(model)
        assert backend.qdq_path == str(ic.qdq_model(model, SPEC, batches(), tmp_path))  # same cached copy
        applied = backend.describe()["precision"]
    assert applied.startswith(f"int8 (Q/DQ model {backend.qdq_path}); f32 (INFERENCE_PRECISION_HINT)")
    assert re.search(r"conv/matmul layers: .*\d+ in [iu]8", applied), applied
    tflite = str(shared_path("models", "kws", "kws_ref_model_float32.tflite"))
    with pytest.raises(ConfigError, match="int8 needs an ONNX model"):
        OpenVINOBackend(BackendOptions(precision="int8")).check_precision("int8", tflite)


def _openvino_2021_4_python():
    """The python of the cached OpenVINO 2021.4.2 venv that .ci/compat/openvino-2021.4.sh builds, if any."""
    import glob
    import os

    cache = os.environ.get("MLPERF_EDGE_CI_CACHE") or os.path.expanduser("~/.cache/mlperf-edge-ci")
    found = sorted(glob.glob(os.path.join(cache, "venv-openvino-2021.4-*", "bin", "python")))
    return found[-1] if found else None


def test_openvino_2021_4_rejects_the_qdq_copy(tmp_path):
    """Why the OpenVINO backend refuses int8 of a float ONNX model on 2021.4 (backends/openvino_legacy.py):
    its ONNX importer rejects the copy, for real (in the CI job's cached 2021.4.2 venv, Python 3.9)."""
    python = _openvino_2021_4_python()
    if python is None:
        pytest.skip("no cached OpenVINO 2021.4 venv (bash .ci/compat/openvino-2021.4.sh builds one; "
                    "MLPERF_EDGE_CI_CACHE says where)")
    qdq = ic.qdq_model(tiny_cnn(tmp_path / "cnn.onnx", batch=1), SPEC, [b[:1] for b in batches()], tmp_path)
    script = ("import sys\nfrom openvino.inference_engine import IECore, get_version\nprint(get_version())\n"
              "try:\n    IECore().read_network(model=sys.argv[1])\nexcept Exception as exc:\n"
              "    print(str(exc).strip().splitlines()[-1])\nelse:\n    print('read')\n")
    proc = subprocess.run([python, "-c", script, str(qdq)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    version, outcome = proc.stdout.strip().splitlines()[-2:]
    assert version.startswith("2021.4.2-")
    assert "DequantizeLinear Parameter axis 1 out of the tensor rank range [-1, 0]" in outcome, outcome


# --- keyword spotting, end to end ------------------------------------------------------------

#: int8 accuracy of the KWS Q/DQ copy on the first 200 clips, calibrated on the last 100, by onnxruntime version
KWS_INT8 = {"1.32.0": (183, 200), "1.19.2": (184, 200)}


@pytest.fixture(scope="module")
def kws_onnx(kws_converted):
    """The float ONNX model of the KWS SavedModel (benchmarks.kws_onnx.convert, in a subprocess, once a
    session: tests/backends/conftest.py)."""
    for module in ("tensorflow", "tf2onnx"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"converting the KWS model to ONNX needs {module} (pip install tf2onnx)")
    shared_path("models", "kws", "kws_ref_model")
    return kws_converted["onnx"]


def test_kws_float_onnx_scores_fp32_and_int8(kws_onnx, tmp_path):
    """The float ONNX scores TensorFlow's figure for the SavedModel exactly; int8,
    calibrated on the 100 clips outside the first 200, is printed next to fp32."""
    import onnxruntime

    from benchmarks import kws_onnx as script

    shared_path("data", "speech-commands-mini")
    got = script.figures(kws_onnx, 200, tmp_path)
    print(f"\nKWS on speech-commands-mini, onnxruntime {onnxruntime.__version__}: fp32 {got['fp32_all']} (all), "
          f"{got['fp32']} (first 200); int8 {got['int8']} (first 200, calibrated on the last 100)")
    assert got["fp32_all"] == script.FP32_REFERENCE
    assert got["fp32"] == (183, 200)
    want = KWS_INT8.get(onnxruntime.__version__)
    if want is not None:
        assert got["int8"] == want
    else:  # another onnxruntime computes its own figure: near fp32, not broken
        assert got["int8"][0] >= got["fp32"][0] - 6
    # int8 ran the calibrated copy: its config.json says so
    runs = sorted((tmp_path / "results").iterdir())
    record = json.loads((runs[-1] / "config.json").read_text())
    assert record["backend"]["precision"].startswith("int8 (Q/DQ model ")
    assert record["config"]["count"] == 200
