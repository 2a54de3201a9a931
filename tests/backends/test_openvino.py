"""OpenVINO backend (2.0 API: 2022.3 LTS and 2023.1+) on the real runtime (CPU) and the shared models.

Runs on whichever OpenVINO is installed: the main venv's current release and
the 2022.3 compatibility job (.ci/compat/openvino-2022.3.sh). Models that
release cannot read are skipped with the reason (.tflite before 2023.0, an IR
from a newer converter); the generic tests use a small quantised model built
here with the installed release's own opset, and the ONNX MobileNet that every
release reads. MYRIAD is faked at the Core boundary (fake_openvino_myriad.py).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from backends import tflite_model
from backends.base import BackendOptions
from backends.openvino import (OpenVINOBackend, available_frontends, installed_runtime, ir_writer,
                               native_throughput, newer_ir_error, release)
from sut.errors import BackendUnavailable, ConfigError, ModelError
from tests.backends import fake_openvino_myriad
from tests.backends.concurrency import predict_per_instance
from tests.conftest import SHARED, need_module, shared_path

need_module("openvino")
RUNTIME = installed_runtime()
if RUNTIME is None:
    pytest.skip("the installed OpenVINO has only the 2021.4 IECore API (test_openvino_legacy.py tests it)",
                allow_module_level=True)
ov = RUNTIME.ov
RELEASE = release(RUNTIME.version)

MOBILENET = ("models", "mobilenet", "mobilenet_v1_0.25_128_quant.tflite")
MOBILENET_IR = ("models", "mobilenet", "openvino_ir", "mobilenet_v1_0.25_128_quant.xml")
MOBILENET_ONNX = ("models", "mobilenet", "mobilenet_v1_1.0_224_quant_qdq_nchw.onnx")
MOBILENET_224 = ("models", "mobilenet", "mobilenet_v1_1.0_224_quant.tflite")
KWS = ("models", "kws", "kws_ref_model.tflite")

READS_TFLITE = "tflite" in (available_frontends() or [])
SHARED_IR_WRITER = ir_writer(str(SHARED.joinpath(*MOBILENET_IR))) if SHARED.joinpath(*MOBILENET_IR).exists() else None
READS_SHARED_IR = SHARED_IR_WRITER is None or release(SHARED_IR_WRITER) <= RELEASE
needs_tflite = pytest.mark.skipif(not READS_TFLITE, reason=f"OpenVINO {RUNTIME.version} reads no .tflite (2023.0+)")
needs_shared_ir = pytest.mark.skipif(
    not READS_SHARED_IR, reason=f"the shared IR was written by OpenVINO {SHARED_IR_WRITER}, newer than {RUNTIME.version}")


def load(parts, **options):
    backend = OpenVINOBackend(BackendOptions(**options))
    return backend, backend.load(str(shared_path(*parts)))


def load_path(path, **options):
    backend = OpenVINOBackend(BackendOptions(**options))
    return backend, backend.load(str(path))


def random_batch(info, n, seed=0):
    rng = np.random.default_rng(seed)
    spec = info.input
    if spec.dtype.kind in "iu":
        limits = np.iinfo(spec.dtype)
        return rng.integers(limits.min, limits.max, (n, *spec.shape), endpoint=True).astype(spec.dtype)
    return rng.standard_normal((n, *spec.shape)).astype(spec.dtype)


# --- a small quantised model, written by the installed release -----------------------------
def _const(values, dtype=np.float32):
    return RUNTIME.opset().constant(np.array(values, dtype=dtype))


def build_quantised_model(path, side=16, classes=10):
    """uint8 NHWC [1,side,side,3] -> FakeQuantize (scale 1/128, zero point 128) -> conv -> mean -> matmul
    -> FakeQuantize (scale 1/32, zero point 128) -> uint8 [1,classes]; batch follows the input."""
    ops = RUNTIME.opset()
    rng = np.random.default_rng(7)
    param = ops.parameter([1, side, side, 3], ov.Type.u8, name="pixels")
    x = ops.fake_quantize(ops.convert(param, "f32"), _const(0.0), _const(255.0), _const(-1.0),
                          _const(0.9921875), 256)
    x = ops.transpose(x, _const([0, 3, 1, 2], np.int64))
    x = ops.relu(ops.convolution(x, _const(rng.standard_normal((8, 3, 3, 3))), [1, 1], [1, 1], [1, 1], [1, 1]))
    x = ops.reduce_mean(x, _const([2, 3], np.int64), False)
    x = ops.matmul(x, _const(rng.standard_normal((8, classes))), False, False)
    x = ops.fake_quantize(x, _const(-4.0), _const(3.96875), _const(0.0), _const(255.0), 256)
    out = ops.convert(x, "u8")
    RUNTIME.save_model(ov.Model([out], [param], "quantised"), str(path))
    return path


@pytest.fixture(scope="module")
def quantised(tmp_path_factory):
    return build_quantised_model(tmp_path_factory.mktemp("openvino") / "quantised.xml")


# --- model description -----------------------------------------------------------------------
def test_quantised_model_keeps_uint8_input_and_reads_its_fake_quantize(quantised):
    _, info = load_path(quantised, instances=1)
    assert info.input.shape == (16, 16, 3) and info.input.layout == "NHWC" and info.input.dtype == np.uint8
    assert (info.input.scale, info.input.zero_point) == (0.0078125, 128)
    assert info.output.shape == (10,) and info.output.dtype == np.uint8
    assert (info.output.scale, info.output.zero_point) == (0.03125, 128)


@needs_tflite
@pytest.mark.parametrize("parts", [MOBILENET, pytest.param(MOBILENET_IR, marks=needs_shared_ir)])
def test_quantised_mobilenet_keeps_uint8_input_with_the_tflite_parameters(parts):
    _, info = load(parts, instances=1)
    (file_input,), (file_output,) = tflite_model.io_tensors(str(shared_path(*MOBILENET)))
    assert info.input.shape == (128, 128, 3) and info.input.layout == "NHWC"
    assert info.input.dtype == np.uint8
    assert (info.input.scale, info.input.zero_point) == (file_input.scale, file_input.zero_point) == (0.0078125, 128)
    assert info.output.shape == (1001,) and info.output.dtype == np.uint8
    assert (info.output.scale, info.output.zero_point) == (file_output.scale, file_output.zero_point)


@needs_tflite
def test_int8_kws_parameters_match_the_file():
    _, info = load(KWS, instances=1)
    (file_input,), (file_output,) = tflite_model.io_tensors(str(shared_path(*KWS)))
    assert info.input.dtype == np.int8 and info.input.shape == (49, 10, 1) and info.input.layout is None
    assert np.float32(info.input.scale) == np.float32(file_input.scale)
    assert info.input.zero_point == file_input.zero_point == 83
    assert (info.output.scale, info.output.zero_point) == (file_output.scale, file_output.zero_point)


@needs_tflite
@needs_shared_ir
def test_ir_and_tflite_give_the_same_scores():
    tflite, info = load(MOBILENET, instances=1)
    ir, _ = load(MOBILENET_IR, instances=1)
    batch = random_batch(info, 1)
    np.testing.assert_array_equal(tflite.predict(batch), ir.predict(batch))


def test_float_nchw_onnx():
    backend, info = load(MOBILENET_ONNX, instances=1)
    assert info.input.layout == "NCHW" and info.input.shape == (3, 224, 224)
    assert info.input.dtype == np.float32 and not info.input.quantized
    assert backend.predict(random_batch(info, 1)).shape == (1, 1001)


# --- feeding and results ---------------------------------------------------------------------
def test_inputs_it_cannot_share_give_the_same_scores(quantised):
    """A C-contiguous, writeable batch of the input's dtype is shared with OpenVINO;
    a read-only, strided or differently typed one goes through its converting dispatcher."""
    backend, info = load_path(quantised, instances=1)
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


def test_output_is_not_the_requests_buffer(quantised):
    backend, info = load_path(quantised, instances=1)
    first = backend.predict(random_batch(info, 1, seed=1))
    kept = first.copy()
    second = backend.predict(random_batch(info, 1, seed=2))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, kept)


def test_predict_each_matches_predict_per_sample(quantised):
    backend, info = load_path(quantised, instances=2)
    batch = random_batch(info, 4)
    samples = [batch[i:i + 1] for i in range(4)]
    expected = np.concatenate([backend.predict(s, 0) for s in samples])
    for instance in (0, 1):
        np.testing.assert_array_equal(backend.predict_each(samples, instance), expected)


def test_batching_when_the_model_allows_it(quantised):
    backend, info = load_path(quantised, instances=1, max_batch_size=8)
    assert info.max_batch_size == 8 and info.accepts_batch(3) and info.accepts_batch(1)
    batch = random_batch(info, 3)
    together = backend.predict(batch)
    one_by_one = np.concatenate([backend.predict(batch[i:i + 1]) for i in range(3)])
    np.testing.assert_array_equal(together, one_by_one)


def test_a_model_with_fixed_output_batch_falls_back_to_one(caplog):
    with caplog.at_level(logging.WARNING, logger="backends.openvino"):
        _, info = load(MOBILENET_ONNX, instances=1, max_batch_size=4)
    assert info.max_batch_size == 1
    assert "cannot run batches" in caplog.text


# --- compile settings --------------------------------------------------------------------------
def test_latency_mode_for_one_instance(quantised):
    backend, info = load_path(quantised, instances=1, threads=1)
    assert info.instances == 1
    compiled = backend.describe()["compiled"]
    assert compiled["PERFORMANCE_HINT"] == "LATENCY"
    assert compiled["INFERENCE_PRECISION_HINT"] == "f32"
    assert compiled["INFERENCE_NUM_THREADS"] == "1"


def test_throughput_mode_uses_the_optimal_request_count_and_runs_concurrently(quantised):
    backend, info = load_path(quantised)  # instances=0: the backend's choice
    described = backend.describe()
    assert described["performance_hint"] == "THROUGHPUT"
    assert described["compiled"]["PERFORMANCE_HINT"] == "THROUGHPUT"
    assert info.instances == int(described["compiled"]["OPTIMAL_NUMBER_OF_INFER_REQUESTS"]) >= 1
    batches = [random_batch(info, 1, seed) for seed in range(8)]
    expected = [backend.predict(b, 0) for b in batches]
    got = predict_per_instance(backend, batches, info.instances)
    for e, g in zip(expected, got):
        np.testing.assert_array_equal(e, g)


def test_explicit_instances_and_hint_override(quantised):
    backend, info = load_path(quantised, instances=3)
    assert info.instances == 3 and backend.describe()["performance_hint"] == "THROUGHPUT"
    backend, info = load_path(quantised, instances=2, extra={"performance_hint": "latency"})
    assert info.instances == 2 and backend.describe()["compiled"]["PERFORMANCE_HINT"] == "LATENCY"


def test_version_and_describe_name_the_installed_release(quantised):
    backend, _ = load_path(quantised, instances=1)
    assert backend.version() == f"openvino {RUNTIME.version}"
    assert backend.describe()["runtime"] == backend.version()


def test_auto_device_runs(quantised):
    backend, info = load_path(quantised, device="AUTO", instances=1)
    assert backend.predict(random_batch(info, 1)).shape == (1, 10)


# --- devices ---------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["GPU.7", "MULTI:CPU,NOPE"])
def test_unknown_device_lists_what_exists(quantised, device):
    with pytest.raises(BackendUnavailable, match=r"not available.*this machine has: .*CPU"):
        load_path(quantised, device=device)


def test_myriad_without_its_plugin_says_how_to_get_it(quantised):
    """The PyPI wheels (2022.x) have no MYRIAD plugin and 2023.0 removed it: one line naming the
    device, the missing plugin and both ways to get one."""
    with pytest.raises(BackendUnavailable) as caught:
        load_path(quantised, device="MYRIAD")
    message = str(caught.value)
    assert "\n" not in message
    assert f"OpenVINO {RUNTIME.version.split('-')[0]} has no MYRIAD plugin" in message
    assert "device 'MYRIAD' (Intel NCS2)" in message
    assert "2022.3 LTS archive install (source its setupvars.sh" in message
    assert "pip install openvino==2021.4.2 (Python 3.6-3.9)" in message
    assert caught.value.exit_code == 5


def test_myriad_through_run_py_is_one_line_exit_5(tmp_path):
    from tests.helpers import run_cli

    proc = run_cli("--profile", "mobilenet_openvino", "--model", str(shared_path(*MOBILENET_ONNX)),
                   "--dataset-path", str(shared_path("data", "imagenet-mini")), "--count", "8",
                   "--device", "MYRIAD", "--accuracy", tmp_path=tmp_path, timeout=120)
    assert proc.returncode == 5, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: OpenVINO ") and "has no MYRIAD plugin" in lines[0]
    assert "Traceback" not in proc.stderr


def test_myriad_gets_fp16_input_and_its_optimal_request_count(monkeypatch):
    core = fake_openvino_myriad.install(monkeypatch, RUNTIME)
    backend, info = load(MOBILENET_ONNX, device="MYRIAD", precision="fp16", instances=0)
    assert info.input.dtype == np.float16 and info.input.shape == (3, 224, 224) and info.input.layout == "NCHW"
    assert info.output.dtype == np.float32 and info.output.shape == (1001,)
    assert info.instances == 4  # 2 executors x 2 under THROUGHPUT, as 2022.3's MYRIAD plugin
    (compiled,) = core.compiled
    assert compiled.config == {"PERFORMANCE_HINT": "THROUGHPUT"}
    assert core.set_calls == []  # MYRIAD takes neither INFERENCE_PRECISION_HINT nor threads
    described = backend.describe()
    assert described["device"] == "MYRIAD" and described["infer_requests"] == 4
    assert described["compiled"] == {"PERFORMANCE_HINT": "THROUGHPUT", "OPTIMAL_NUMBER_OF_INFER_REQUESTS": "4"}
    batch = random_batch(info, 1)
    assert batch.dtype == np.float16
    scores = backend.predict(batch, 3)
    assert scores.shape == (1, 1001) and np.isfinite(scores).all()
    reference, _ = load(MOBILENET_ONNX, instances=1)
    np.testing.assert_allclose(scores, reference.predict(batch.astype(np.float32)), atol=0.05)


def test_the_ncs2_profile_loads_on_myriad(monkeypatch):
    from profiles import load_profile

    profile = load_profile("mobilenet_ncs2")
    assert (profile["backend"], profile["device"], profile["precision"], profile["instances"]) == (
        "openvino", "MYRIAD", "fp16", 0)
    fake_openvino_myriad.install(monkeypatch, RUNTIME)
    _, info = load(MOBILENET_ONNX, device=profile["device"], precision=profile["precision"],
                   instances=profile["instances"], max_batch_size=profile["max_batch_size"])
    assert info.input.dtype == np.float16 and info.instances == 4 and info.max_batch_size == 1


def test_the_ncs2_profile_runs_through_loadgen_with_myriad_faked(monkeypatch, tmp_path, capsys):
    """run.py's path in-process: fp16 samples in the cache, 4 workers, the MultiStream accuracy test."""
    import json

    from sut import cli

    fake_openvino_myriad.install(monkeypatch, RUNTIME)
    code = cli.main(["--profile", "mobilenet_ncs2", "--model", str(shared_path(*MOBILENET_ONNX)),
                     "--dataset-path", str(shared_path("data", "imagenet-mini")), "--count", "16", "--accuracy",
                     "--no-progress", "--no-report", "--output", str(tmp_path / "results"),
                     "--cache-dir", str(tmp_path / "cache")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "scenario  : MultiStream" in out and "accuracy  : accuracy=" in out
    (config,) = (tmp_path / "results").glob("*/config.json")
    record = json.loads(config.read_text())
    assert record["backend"]["device"] == "MYRIAD" and record["backend"]["infer_requests"] == 4
    assert record["backend"]["runtime"] == f"openvino {RUNTIME.version}"
    assert record["model"]["inputs"][0]["dtype"] == "float16" and record["model"]["instances"] == 4


def test_myriad_requests_follow_explicit_instances(monkeypatch):
    core = fake_openvino_myriad.install(monkeypatch, RUNTIME)
    _, info = load(MOBILENET_ONNX, device="MYRIAD", instances=2)
    assert info.instances == 2
    assert core.compiled[0].config == {"PERFORMANCE_HINT": "THROUGHPUT", "PERFORMANCE_HINT_NUM_REQUESTS": 2}


@pytest.mark.parametrize("state, expected", [
    ("libusb", r"MYRIAD plugin for device 'MYRIAD' does not load: .*libusb.*apt install libusb-1\.0-0"),
    ("no_device", r"no Intel NCS2 found for device 'MYRIAD': plug it in and install the udev rules"),
])
def test_myriad_plugin_without_a_device(monkeypatch, quantised, state, expected):
    fake_openvino_myriad.install(monkeypatch, RUNTIME, state=state)
    with pytest.raises(BackendUnavailable, match=expected):
        load_path(quantised, device="MYRIAD")


# --- options and model errors -------------------------------------------------------------------
def test_bad_options_are_config_errors(quantised):
    with pytest.raises(ConfigError, match="fp8"):
        load_path(quantised, precision="fp8")
    with pytest.raises(ConfigError, match="accepted backend_options"):
        load_path(quantised, extra={"streams": 2})
    with pytest.raises(ConfigError, match="performance_hint 'FAST'"):
        load_path(quantised, extra={"performance_hint": "FAST"})


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


@pytest.mark.skipif(READS_SHARED_IR, reason=f"OpenVINO {RUNTIME.version} reads the shared IR")
def test_an_ir_newer_than_the_runtime_is_one_line():
    with pytest.raises(ModelError) as caught:
        load(MOBILENET_IR, instances=1)
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 3
    assert f"written by OpenVINO {SHARED_IR_WRITER.split('-')[0]}, newer than the installed OpenVINO" in message
    assert "use the ONNX model instead, or re-convert it" in message and "Model Optimizer" in message


@pytest.mark.skipif(READS_SHARED_IR, reason=f"OpenVINO {RUNTIME.version} reads the shared IR")
def test_an_ir_newer_than_the_runtime_through_run_py_is_one_line_exit_3(tmp_path):
    from tests.helpers import run_cli

    proc = run_cli("--profile", "mobilenet_openvino", "--model", str(shared_path(*MOBILENET_IR)),
                   "--dataset-path", str(shared_path("data", "imagenet-mini")), "--count", "8", "--accuracy",
                   tmp_path=tmp_path, timeout=120)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "newer than the installed OpenVINO" in lines[0]


def test_ir_writer_and_newer_ir_error(quantised, tmp_path):
    """The converter's version in the IR's rt_info (Model Optimizer and 2023+ write it) decides."""
    xml = open(str(quantised)).read()
    start, end = xml.index("<rt_info"), xml.rindex("</net>")
    newer = tmp_path / "newer.xml"
    newer.write_text(xml[:start] + '<rt_info><Runtime_version value="2099.1.0-1-abc" /></rt_info>\n' + xml[end:])
    assert ir_writer(str(newer)) == "2099.1.0-1-abc"
    error = newer_ir_error(str(newer), RUNTIME.version, RuntimeError("first line\nsecond"))
    assert isinstance(error, ModelError) and "\n" not in str(error)
    assert f"written by OpenVINO 2099.1.0, newer than the installed OpenVINO {RUNTIME.version.split('-')[0]} " \
           "can read (first line)" in str(error)
    assert newer_ir_error(str(newer), "2099.1.0-1-abc", RuntimeError("x")) is None  # same release: not newer
    older = ir_writer(str(quantised))  # whatever this release's serializer recorded (2022.3: nothing)
    assert older is None or release(older) == RELEASE
    assert newer_ir_error(str(quantised), RUNTIME.version, RuntimeError("x")) is None


@pytest.mark.skipif(READS_TFLITE, reason=f"OpenVINO {RUNTIME.version} reads .tflite")
def test_tflite_without_its_frontend_is_one_line():
    with pytest.raises(ModelError, match=r"cannot read \.tflite models .*needs OpenVINO 2023\.0\+\): use the ONNX"):
        load(MOBILENET, instances=1)


def _integer_input_model(tmp_path):
    """An IR whose uint8 input is converted to float with no FakeQuantize after it."""
    ops = RUNTIME.opset()
    param = ops.parameter([1, 4, 4, 3], ov.Type.u8, name="pixels")
    relu = ops.relu(ops.convert(param, "f32"))
    path = tmp_path / "plain_u8.xml"
    RUNTIME.save_model(ov.Model([relu], [param], "plain_u8"), str(path))
    return str(path)


def test_integer_input_without_quantisation_needs_options(tmp_path):
    path = _integer_input_model(tmp_path)
    with pytest.raises(ModelError, match="input_scale and input_zero_point"):
        OpenVINOBackend(BackendOptions(instances=1)).load(path)
    info = OpenVINOBackend(BackendOptions(instances=1, extra={"input_scale": 0.5, "input_zero_point": 3})).load(path)
    assert (info.input.scale, info.input.zero_point) == (0.5, 3)


def test_options_override_the_model_quantisation(quantised):
    _, info = load_path(quantised, instances=1, extra={"input_scale": 0.25, "input_zero_point": 1})
    assert (info.input.scale, info.input.zero_point) == (0.25, 1)


def test_native_throughput_is_positive(quantised):
    assert native_throughput(str(quantised), seconds=0.5) > 0


# --- reference accuracy, per OpenVINO release (no LoadGen) ------------------------------------
#: (year, release) -> cases measured with that release by benchmarks/openvino_reference_accuracy.py
#: (independent preprocessing and OpenVINO calls); a figure holds only for the release it was measured with
FIGURES = {
    (2026, 4): [
        (MOBILENET, "imagenet-mini", "accuracy=57.308%, good=149, total=260"),
        (MOBILENET_IR, "imagenet-mini", "accuracy=57.308%, good=149, total=260"),
        (MOBILENET_224, "imagenet-mini", "accuracy=78.077%, good=203, total=260"),
        (MOBILENET_224, "imagenet-fullres-mini", "accuracy=73.333%, good=22, total=30"),
        (MOBILENET_ONNX, "imagenet-mini", "accuracy=78.077%, good=203, total=260"),
    ],
    (2022, 3): [
        (MOBILENET_ONNX, "imagenet-mini", "accuracy=77.692%, good=202, total=260"),
    ],
}
CASES = [(version, *case) for version, cases in FIGURES.items() for case in cases]


@pytest.mark.parametrize("version, parts, data, expected", CASES,
                         ids=[f"{v[0]}.{v[1]}-{p[-1]}-{d}" for v, p, d, _ in CASES])
def test_reference_accuracy(version, parts, data, expected):
    if version != RELEASE:
        pytest.skip(f"figure measured with OpenVINO {version[0]}.{version[1]}; installed: {RUNTIME.version}")
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
