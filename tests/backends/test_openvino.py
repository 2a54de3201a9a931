"""OpenVINO backend on the real runtime (CPU) and the shared models."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from backends import tflite_model
from backends.base import BackendOptions
from backends.openvino import OpenVINOBackend, native_throughput
from sut.errors import BackendUnavailable, ConfigError, ModelError
from tests.backends.concurrency import predict_per_instance
from tests.conftest import need_module, shared_path

ov = need_module("openvino")

MOBILENET = ("models", "mobilenet", "mobilenet_v1_0.25_128_quant.tflite")
MOBILENET_IR = ("models", "mobilenet", "openvino_ir", "mobilenet_v1_0.25_128_quant.xml")
MOBILENET_ONNX = ("models", "mobilenet", "mobilenet_v1_1.0_224_quant_qdq_nchw.onnx")
KWS = ("models", "kws", "kws_ref_model.tflite")


def load(parts, **options):
    backend = OpenVINOBackend(BackendOptions(**options))
    return backend, backend.load(str(shared_path(*parts)))


def random_batch(info, n, seed=0):
    rng = np.random.default_rng(seed)
    spec = info.input
    if spec.dtype.kind in "iu":
        limits = np.iinfo(spec.dtype)
        return rng.integers(limits.min, limits.max, (n, *spec.shape), endpoint=True).astype(spec.dtype)
    return rng.standard_normal((n, *spec.shape)).astype(spec.dtype)


@pytest.mark.parametrize("parts", [MOBILENET, MOBILENET_IR])
def test_quantised_mobilenet_keeps_uint8_input_with_the_tflite_parameters(parts):
    _, info = load(parts, instances=1)
    (file_input,), (file_output,) = tflite_model.io_tensors(str(shared_path(*MOBILENET)))
    assert info.input.shape == (128, 128, 3) and info.input.layout == "NHWC"
    assert info.input.dtype == np.uint8
    assert (info.input.scale, info.input.zero_point) == (file_input.scale, file_input.zero_point) == (0.0078125, 128)
    assert info.output.shape == (1001,) and info.output.dtype == np.uint8
    assert (info.output.scale, info.output.zero_point) == (file_output.scale, file_output.zero_point)


def test_int8_kws_parameters_match_the_file():
    _, info = load(KWS, instances=1)
    (file_input,), (file_output,) = tflite_model.io_tensors(str(shared_path(*KWS)))
    assert info.input.dtype == np.int8 and info.input.shape == (49, 10, 1) and info.input.layout is None
    assert np.float32(info.input.scale) == np.float32(file_input.scale)
    assert info.input.zero_point == file_input.zero_point == 83
    assert (info.output.scale, info.output.zero_point) == (file_output.scale, file_output.zero_point)


def test_ir_and_tflite_give_the_same_scores():
    tflite, info = load(MOBILENET, instances=1)
    ir, _ = load(MOBILENET_IR, instances=1)
    batch = random_batch(info, 1)
    np.testing.assert_array_equal(tflite.predict(batch), ir.predict(batch))


def test_inputs_it_cannot_share_give_the_same_scores():
    """A C-contiguous, writeable batch of the input's dtype is shared with OpenVINO;
    a read-only, strided or differently typed one goes through its converting dispatcher."""
    backend, info = load(MOBILENET, instances=1)
    batch = random_batch(info, 1)
    kept = batch.copy()
    expected = backend.predict(batch)
    np.testing.assert_array_equal(batch, kept)  # shared, not written to
    read_only = batch.copy()
    read_only.flags.writeable = False
    strided = np.repeat(batch, 2, axis=2)[:, :, ::2]
    assert not strided.flags.c_contiguous
    for other in (read_only, strided, batch.astype(np.int32)):
        np.testing.assert_array_equal(backend.predict(other), expected)


def test_only_plain_numpy_types_are_shared():
    from backends.openvino import _shareable_dtype

    assert _shareable_dtype(ov, ov.Type.u8) == np.uint8
    assert _shareable_dtype(ov, ov.Type.f32) == np.float32
    assert _shareable_dtype(ov, ov.Type.bf16) is None  # NumPy has no bf16: the dispatcher converts


def test_output_is_not_the_requests_buffer():
    backend, info = load(MOBILENET, instances=1)
    first = backend.predict(random_batch(info, 1, seed=1))
    kept = first.copy()
    second = backend.predict(random_batch(info, 1, seed=2))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, kept)


def test_predict_each_matches_predict_per_sample():
    backend, info = load(MOBILENET, instances=2)
    batch = random_batch(info, 4)
    samples = [batch[i:i + 1] for i in range(4)]
    expected = np.concatenate([backend.predict(s, 0) for s in samples])
    for instance in (0, 1):
        np.testing.assert_array_equal(backend.predict_each(samples, instance), expected)


def test_float_nchw_onnx():
    backend, info = load(MOBILENET_ONNX, instances=1)
    assert info.input.layout == "NCHW" and info.input.shape == (3, 224, 224)
    assert info.input.dtype == np.float32 and not info.input.quantized
    assert backend.predict(random_batch(info, 1)).shape == (1, 1001)


def test_batching_when_the_model_allows_it():
    backend, info = load(KWS, instances=1, max_batch_size=8)
    assert info.max_batch_size == 8 and info.accepts_batch(3) and info.accepts_batch(1)
    batch = random_batch(info, 3)
    together = backend.predict(batch)
    one_by_one = np.concatenate([backend.predict(batch[i:i + 1]) for i in range(3)])
    np.testing.assert_array_equal(together, one_by_one)


def test_a_model_with_fixed_output_batch_falls_back_to_one(caplog):
    with caplog.at_level(logging.WARNING, logger="backends.openvino"):
        _, info = load(MOBILENET, instances=1, max_batch_size=4)
    assert info.max_batch_size == 1
    assert "cannot run batches" in caplog.text


def test_latency_mode_for_one_instance():
    backend, info = load(MOBILENET, instances=1, threads=1)
    assert info.instances == 1
    compiled = backend.describe()["compiled"]
    assert compiled["PERFORMANCE_HINT"] == "LATENCY"
    assert compiled["INFERENCE_PRECISION_HINT"] == "f32"
    assert compiled["INFERENCE_NUM_THREADS"] == "1"


def test_throughput_mode_uses_the_optimal_request_count_and_runs_concurrently():
    backend, info = load(MOBILENET)  # instances=0: the backend's choice
    described = backend.describe()
    assert described["performance_hint"] == "THROUGHPUT"
    assert info.instances == int(described["compiled"]["OPTIMAL_NUMBER_OF_INFER_REQUESTS"]) >= 1
    batches = [random_batch(info, 1, seed) for seed in range(8)]
    expected = [backend.predict(b, 0) for b in batches]
    got = predict_per_instance(backend, batches, info.instances)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


def test_explicit_instances_and_hint_override():
    backend, info = load(MOBILENET, instances=3)
    assert info.instances == 3 and backend.describe()["performance_hint"] == "THROUGHPUT"
    backend, info = load(MOBILENET, instances=2, extra={"performance_hint": "latency"})
    assert info.instances == 2 and backend.describe()["compiled"]["PERFORMANCE_HINT"] == "LATENCY"


def test_auto_device_runs():
    backend, info = load(MOBILENET, device="AUTO", instances=1)
    assert backend.predict(random_batch(info, 1)).shape == (1, 1001)


@pytest.mark.parametrize("device", ["GPU.7", "MULTI:CPU,NOPE"])
def test_unknown_device_lists_what_exists(device):
    with pytest.raises(BackendUnavailable, match=r"not available.*this machine has: .*CPU"):
        load(MOBILENET, device=device)


def test_myriad_needs_openvino_2021():
    with pytest.raises(BackendUnavailable, match=r"MYRIAD.*openvino 2021\.4.*2023\.0 removed"):
        load(MOBILENET, device="MYRIAD")


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        load(MOBILENET, precision="fp8")
    with pytest.raises(ConfigError, match="accepted backend_options"):
        load(MOBILENET, extra={"streams": 2})
    with pytest.raises(ConfigError, match="performance_hint 'FAST'"):
        load(MOBILENET, extra={"performance_hint": "FAST"})


def test_model_errors(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        OpenVINOBackend().load(str(tmp_path / "missing.xml"))
    other = tmp_path / "model.pb"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"\.xml, \.onnx, \.tflite"):
        OpenVINOBackend().load(str(other))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="cannot read"):
        OpenVINOBackend().load(str(broken))


def _integer_input_model(tmp_path):
    """An IR whose uint8 input is converted to float with no FakeQuantize after it."""
    import openvino.opset13 as ops

    param = ops.parameter([1, 4, 4, 3], ov.Type.u8, name="pixels")
    relu = ops.relu(ops.convert(param, ov.Type.f32))
    path = tmp_path / "plain_u8.xml"
    ov.save_model(ov.Model([relu], [param], "plain_u8"), str(path))
    return str(path)


def test_integer_input_without_quantisation_needs_options(tmp_path):
    path = _integer_input_model(tmp_path)
    with pytest.raises(ModelError, match="input_scale and input_zero_point"):
        OpenVINOBackend(BackendOptions(instances=1)).load(path)
    info = OpenVINOBackend(BackendOptions(instances=1, extra={"input_scale": 0.5, "input_zero_point": 3})).load(path)
    assert (info.input.scale, info.input.zero_point) == (0.5, 3)


def test_options_override_the_model_quantisation():
    _, info = load(MOBILENET_IR, instances=1, extra={"input_scale": 0.25, "input_zero_point": 1})
    assert (info.input.scale, info.input.zero_point) == (0.25, 1)


def test_native_throughput_is_positive():
    assert native_throughput(str(shared_path(*MOBILENET)), seconds=0.5) > 0


# --- reference accuracy (OpenVINO CPU figures in ../shared/README.md), no LoadGen ----------
MOBILENET_224 = ("models", "mobilenet", "mobilenet_v1_1.0_224_quant.tflite")


@pytest.mark.parametrize("parts, data, expected", [
    (MOBILENET, "imagenet-mini", "accuracy=57.308%, good=149, total=260"),
    (MOBILENET_IR, "imagenet-mini", "accuracy=57.308%, good=149, total=260"),
    (MOBILENET_224, "imagenet-mini", "accuracy=78.077%, good=203, total=260"),
    (MOBILENET_224, "imagenet-fullres-mini", "accuracy=73.333%, good=22, total=30"),
])
def test_reference_accuracy(parts, data, expected):
    imagenet = pytest.importorskip("datasets.imagenet", reason="the ImageNet dataset (datasets/imagenet.py) is not written yet")
    backend, info = load(parts, instances=1)
    dataset = imagenet.ImageNet(str(shared_path("data", data)), None, {"preprocessing": "mobilenet"})
    dataset.scan()
    dataset.check_model(info)
    preprocess = dataset.preprocessor(info.input)
    predictions = {}
    for index, source in enumerate(dataset.sources):
        outputs = backend.predict(preprocess(source)[None], 0)
        predictions[index] = dataset.postprocess(outputs, info)[0]
    assert dataset.score(predictions).line() == expected
