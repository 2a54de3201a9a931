"""TensorRT backend against fake ``tensorrt`` / CUDA modules (no GPU here).

The fakes (tests/backends/fake_tensorrt.py) execute the ONNX model with ONNX
Runtime on the bytes at the addresses our code binds, so answers are checked
against ONNX Runtime run directly. A real-GPU test is marked ``hardware``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from backends.base import BackendOptions
from sut.errors import BackendUnavailable, ConfigError, ModelError
from tests.backends import fake_tensorrt
from tests.conftest import need_module, shared_path

onnx = need_module("onnx", "the fake TensorRT parser reads ONNX with it")
ort = need_module("onnxruntime", "the fake TensorRT engine runs models with it")

from onnx import TensorProto, helper  # noqa: E402

WEIGHTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 10


def write_model(path, batch="N", qdq=False):
    """x (batch,4) float32 -> y = x @ W (batch,3); optionally through a Q/DQ pair."""
    nodes, inits = [], [helper.make_tensor("W", TensorProto.FLOAT, (4, 3), WEIGHTS.ravel())]
    src = "x"
    if qdq:
        inits += [helper.make_tensor("s", TensorProto.FLOAT, (), [0.05]),
                  helper.make_tensor("z", TensorProto.INT8, (), [0])]
        nodes += [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
                  helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"])]
        src = "xd"
    nodes.append(helper.make_node("MatMul", [src, "W"], ["y"]))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture
def fakes(monkeypatch):
    return fake_tensorrt.install(monkeypatch)


@pytest.fixture
def model(tmp_path):
    return write_model(tmp_path / "tiny.onnx")


def make(tmp_path, precision=None, max_batch_size=4, instances=0, **extra):
    from backends.tensorrt import TensorRTBackend

    extra.setdefault("engine_cache", str(tmp_path / "engines"))
    return TensorRTBackend(BackendOptions(precision=precision, max_batch_size=max_batch_size,
                                          instances=instances, extra=extra))


def test_import_needs_only_numpy():
    import backends.cuda_memory  # noqa: F401
    import backends.tensorrt  # noqa: F401
    import backends.tensorrt_calibrator  # noqa: F401
    import backends.tensorrt_engine  # noqa: F401


# --- unavailable runtime / device ------------------------------------------------------------

def test_missing_tensorrt_is_one_line(monkeypatch, tmp_path, model):
    fake_tensorrt.install(monkeypatch, with_tensorrt=False)
    with pytest.raises(BackendUnavailable) as exc:
        make(tmp_path).load(model)
    assert "'tensorrt'" in str(exc.value) and "pip install -e '.[tensorrt]'" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_no_gpu_with_fake_runtime(monkeypatch, tmp_path, model):
    fake_tensorrt.install(monkeypatch, cuda_state=fake_tensorrt.FakeCudaState(devices=0))
    with pytest.raises(BackendUnavailable, match="no CUDA GPU found"):
        make(tmp_path).load(model)


def test_no_driver_with_real_cuda_python(monkeypatch, tmp_path, model):
    """The real cuda-python wheel on this GPU-less machine: cudaGetDeviceCount fails."""
    need_module("cuda.bindings.runtime", "cuda-python")
    trt_state = fake_tensorrt.FakeTrtState()
    monkeypatch.setitem(__import__("sys").modules, "tensorrt",
                        fake_tensorrt.make_tensorrt(trt_state, fake_tensorrt.FakeCudaState()))
    with pytest.raises(BackendUnavailable, match="no usable CUDA GPU: cudaGetDeviceCount failed") as exc:
        make(tmp_path).load(model)
    assert "\n" not in str(exc.value)


def test_bad_options(fakes, tmp_path, model):
    with pytest.raises(ConfigError, match="no option wokspace_mb; accepted: workspace_mb"):
        make(tmp_path, wokspace_mb=64).load(model)
    with pytest.raises(ConfigError, match="cannot apply precision bf16 .*it can apply fp32, fp16, int8"):
        make(tmp_path, precision="bf16").load(model)
    with pytest.raises(ConfigError, match="unknown precision 'fp8' for backend 'tensorrt'"):
        make(tmp_path, precision="fp8").load(model)
    from backends.tensorrt import TensorRTBackend
    with pytest.raises(ConfigError, match="'npu:0' is not a GPU index"):
        TensorRTBackend(BackendOptions(device="npu:0")).load(model)


def test_unparsable_model(fakes, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ModelError, match="TensorRT cannot parse .*bad.onnx: In node -1"):
        make(tmp_path).load(str(bad))


# --- build settings --------------------------------------------------------------------------

def test_fp16_dynamic_batch_build_and_predict(fakes, tmp_path, model):
    trt_state, cuda_state = fakes
    backend = make(tmp_path, precision="fp16", max_batch_size=4, workspace_mb=256, opt_batch=2)
    info = backend.load(model)
    build = trt_state.builds[-1]
    assert build["flags"] == {"FP16"}
    assert build["workspace"] == 256 << 20
    assert build["profiles"] == [{"x": ((1, 4), (2, 4), (4, 4))}]
    assert trt_state.network_flags == [0]  # TensorRT 10: no EXPLICIT_BATCH flag
    assert info.input.shape == (4,) and info.input.dtype == np.float32
    assert info.output.shape == (3,) and info.max_batch_size == 4 and info.instances == 1
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    out = backend.predict(x)
    np.testing.assert_allclose(out, x @ WEIGHTS, rtol=1e-6)
    assert trt_state.executions[-1] == {**trt_state.executions[-1], "api": "v3", "batch": 3}
    assert ("htod", 3 * 4 * 4) in cuda_state.copies and ("dtoh", 3 * 3 * 4) in cuda_state.copies
    assert backend.describe()["gpu"] == "Fake GPU A100"
    backend.close()
    assert not cuda_state.device_mem and not cuda_state.host_mem, "buffers leaked"


def test_fixed_batch_pads(fakes, tmp_path):
    trt_state, _ = fakes
    path = write_model(tmp_path / "fixed.onnx", batch=4)
    backend = make(tmp_path, max_batch_size=4)
    info = backend.load(path)
    assert trt_state.builds[-1]["profiles"] == []
    assert info.max_batch_size == 4 and info.accepts_batch(1)
    x = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(backend.predict(x), x @ WEIGHTS, rtol=1e-6)
    assert trt_state.executions[-1]["batch"] == 4


def test_dynamic_batch_off_builds_one_size(fakes, tmp_path, model):
    trt_state, _ = fakes
    backend = make(tmp_path, max_batch_size=8, dynamic_batch=False, instances=2)
    backend.load(model)
    assert trt_state.builds[-1]["profiles"] == [{"x": ((8, 4), (8, 4), (8, 4))}] * 2
    x = np.full((2, 4), 2, np.float32)
    np.testing.assert_allclose(backend.predict(x), x @ WEIGHTS, rtol=1e-6)
    assert trt_state.executions[-1]["batch"] == 8


def test_dla_flags(fakes, tmp_path, model):
    trt_state, _ = fakes
    make(tmp_path, precision="fp16", dla_core=1).load(model)
    build = trt_state.builds[-1]
    assert build["device"] == "DLA" and build["dla_core"] == 1
    assert build["flags"] == {"FP16", "GPU_FALLBACK"}
    assert trt_state.runtime_dla_core == 1
    with pytest.raises(ConfigError, match="dla_core=0 needs precision fp16 or int8"):
        make(tmp_path, dla_core=0).load(model)


def test_instances_get_own_context_stream_and_profile(fakes, tmp_path, model):
    trt_state, cuda_state = fakes
    backend = make(tmp_path, max_batch_size=2, instances=3)
    info = backend.load(model)
    assert info.instances == 3
    assert len(trt_state.builds[-1]["profiles"]) == 3
    assert len(cuda_state.streams) == 3
    xs = [np.full((2, 4), i, np.float32) for i in range(3)]
    for i, x in enumerate(xs):
        np.testing.assert_allclose(backend.predict(x, instance=i), x @ WEIGHTS, rtol=1e-6)
    assert [e["profile"] for e in trt_state.executions] == [0, 1, 2]
    assert len({e["context"] for e in trt_state.executions}) == 3


def test_bindings_api_on_old_tensorrt(monkeypatch, tmp_path, model):
    """TensorRT 8.4 has no named-tensor API (the fake claiming 8.4 has only the bindings API)."""
    trt_state, _ = fake_tensorrt.install(monkeypatch, trt_state=fake_tensorrt.FakeTrtState(version="8.4.3"))
    backend = make(tmp_path, max_batch_size=4, instances=2)
    backend.load(model)
    assert trt_state.network_flags == [1]  # 1 << EXPLICIT_BATCH on TensorRT 8
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    for i in range(2):
        np.testing.assert_allclose(backend.predict(x, instance=i), x @ WEIGHTS, rtol=1e-6)
    assert [(e["api"], e["profile"]) for e in trt_state.executions] == [("v2", 0), ("v2", 1)]


def test_build_failure(monkeypatch, tmp_path, model):
    fake_tensorrt.install(monkeypatch, trt_state=fake_tensorrt.FakeTrtState(fail_build=True))
    from sut.errors import BackendFailure
    with pytest.raises(BackendFailure, match="TensorRT failed to build the engine"):
        make(tmp_path).load(model)


# --- engine cache ------------------------------------------------------------------------------

def test_engine_cache_hit_and_rebuilds(fakes, tmp_path, model):
    trt_state, cuda_state = fakes
    make(tmp_path, precision="fp16").load(model)
    assert len(trt_state.builds) == 1
    engines = sorted((tmp_path / "engines").glob("*.engine"))
    sidecars = sorted((tmp_path / "engines").glob("*.json"))
    assert len(engines) == 1 and len(sidecars) == 1
    assert not list((tmp_path / "engines").glob("*.tmp.*"))
    identity = json.loads(sidecars[0].read_text())["identity"]
    assert identity["tensorrt"] == "10.3.0" and identity["gpu"] == "Fake GPU A100"
    assert identity["compute_capability"] == "8.0" and identity["settings"]["precision"] == "fp16"

    backend = make(tmp_path, precision="fp16")
    backend.load(model)
    assert len(trt_state.builds) == 1 and backend.engine_from_cache  # hit

    make(tmp_path, precision="fp32").load(model)  # other precision: other key
    assert len(trt_state.builds) == 2
    make(tmp_path, precision="fp16", max_batch_size=8).load(model)  # other profile
    assert len(trt_state.builds) == 3

    # a foreign sidecar (e.g. copied from another machine) is never trusted
    sidecar = sidecars[0]
    data = json.loads(sidecar.read_text())
    data["identity"]["gpu"] = "Other GPU"
    sidecar.write_text(json.dumps(data))
    make(tmp_path, precision="fp16").load(model)
    assert len(trt_state.builds) == 4

    # an engine that does not deserialize is rebuilt and overwritten
    engines[0].write_bytes(b"garbage")
    data["identity"]["gpu"] = "Fake GPU A100"
    data["size"] = len(b"garbage")
    sidecar.write_text(json.dumps(data))
    backend = make(tmp_path, precision="fp16")
    backend.load(model)
    assert len(trt_state.builds) == 5 and not backend.engine_from_cache
    assert engines[0].read_bytes().startswith(b"FAKETRT")


def test_cache_key_includes_gpu_and_tensorrt_version(monkeypatch, tmp_path, model):
    trt_a, _ = fake_tensorrt.install(monkeypatch)
    make(tmp_path).load(model)
    trt_b, _ = fake_tensorrt.install(monkeypatch, cuda_state=fake_tensorrt.FakeCudaState(name="Jetson Orin",
                                                                                          capability=(8, 7)))
    make(tmp_path).load(model)
    trt_c, _ = fake_tensorrt.install(monkeypatch, trt_state=fake_tensorrt.FakeTrtState(version="10.4.0"))
    make(tmp_path).load(model)
    assert len(trt_a.builds) == len(trt_b.builds) == len(trt_c.builds) == 1
    assert len(list((tmp_path / "engines").glob("*.engine"))) == 3


def test_rebuild_option(fakes, tmp_path, model):
    trt_state, _ = fakes
    make(tmp_path).load(model)
    make(tmp_path, rebuild=True).load(model)
    assert len(trt_state.builds) == 2


# --- int8 ----------------------------------------------------------------------------------------

def test_int8_entropy_calibration_and_table_reuse(fakes, tmp_path, model):
    """Batches smaller than the profile's opt batch (2 < 4) are regrouped: TensorRT reads opt-sized batches."""
    trt_state, cuda_state = fakes
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(4)]
    batches.append(np.zeros((1, 4), np.float32))  # 9 samples: 2 batches of 4, one left over
    backend = make(tmp_path, precision="int8", calibrator="entropy")
    backend.set_calibration_data(lambda: iter(batches))
    backend.load(model)
    build = trt_state.builds[-1]
    assert build["flags"] == {"INT8", "FP16"} and build["calibrator"]
    assert build["calibration_shape"] == (4, 4) and build["calibration_batches"] == 2
    peak = max(float(np.abs(b).max()) for b in batches)
    tables = list((tmp_path / "engines").glob("*.calib"))
    assert len(tables) == 1 and f"x: {peak:.6f}" in tables[0].read_text()
    np.testing.assert_allclose(backend.predict(batches[0]), batches[0] @ WEIGHTS, rtol=1e-6)
    backend.close()
    assert not cuda_state.device_mem and not cuda_state.streams, "calibration buffer or stream leaked"

    # the table is reused: no batches needed, and the engine comes from the cache
    backend = make(tmp_path, precision="int8", calibrator="entropy")
    backend.load(model)
    assert backend.engine_from_cache and len(trt_state.builds) == 1

    # a forced rebuild reads the table instead of calibrating again
    make(tmp_path, precision="int8", calibrator="entropy", rebuild=True).load(model)
    assert trt_state.builds[-1]["calibration_batches"] == 0 and trt_state.calibration_batches == 2

    # a new table (recalibration) means a new engine
    tables[0].write_text("TRT-10.3.0-EntropyCalibration2\nx: 9.0\n")
    make(tmp_path, precision="int8", calibrator="entropy").load(model)
    assert len(trt_state.builds) == 3 and trt_state.builds[-1]["table"].endswith(b"x: 9.0\n")


def test_int8_entropy_calibration_reads_opt_batches(fakes, tmp_path, model):
    """The calibration buffer holds an opt-sized batch: opt_batch 3 with batches of 1 and 5."""
    trt_state, _ = fakes
    batches = [np.ones((1, 4), np.float32), np.full((5, 4), 2, np.float32)]
    make(tmp_path, precision="int8", calibrator="entropy", max_batch_size=8, opt_batch=3,
         calibration_batches=batches).load(model)
    assert trt_state.builds[-1]["calibration_shape"] == (3, 4)
    assert trt_state.builds[-1]["calibration_batches"] == 2


def test_int8_entropy_too_few_samples(fakes, tmp_path, model):
    with pytest.raises(ConfigError, match="got no batch of 4 samples .*give at least 4 calibration samples"):
        make(tmp_path, precision="int8", calibrator="entropy",
             calibration_batches=[np.ones((3, 4), np.float32)]).load(model)
    assert not list((tmp_path / "engines").glob("*.calib")), "a table from no data was written"


def test_int8_entropy_via_extra_and_explicit_table(fakes, tmp_path, model):
    trt_state, _ = fakes
    table = tmp_path / "my.calib"
    batches = [np.ones((4, 4), np.float32)]
    make(tmp_path, precision="int8", calibrator="entropy", calibration_batches=batches,
         calibration_cache=str(table)).load(model)
    assert table.exists() and trt_state.builds[-1]["calibration_batches"] == 1


def test_int8_without_calibration_is_a_config_error(fakes, tmp_path, model):
    with pytest.raises(ConfigError, match="precision int8 on the float model .*needs calibration samples"):
        make(tmp_path, precision="int8").load(model)
    with pytest.raises(ConfigError, match="int8 for .*needs calibration.*calibration_batches"):
        make(tmp_path, precision="int8", calibrator="entropy").load(model)
    with pytest.raises(ConfigError, match='calibrator must be "qdq" or "entropy"'):
        make(tmp_path, precision="int8", calibrator="minmax").load(model)


def test_int8_calibration_dtype_checked(fakes, tmp_path, model):
    with pytest.raises(ConfigError, match="calibration batch has dtype float64"):
        make(tmp_path, precision="int8", calibrator="entropy", calibration_batches=[np.ones((4, 4))]).load(model)
    assert not list((tmp_path / "engines").glob("*.calib"))


def test_int8_qdq_model_needs_no_calibrator(fakes, tmp_path):
    trt_state, _ = fakes
    path = write_model(tmp_path / "qdq.onnx", qdq=True)
    backend = make(tmp_path, precision="int8")
    backend.load(path)
    build = trt_state.builds[-1]
    assert build["flags"] == {"INT8", "FP16"} and not build["calibrator"]
    x = np.array([[0.1, 0.2, -0.3, 1.0]], np.float32)
    xq = np.clip(np.round(x / 0.05), -128, 127) * 0.05
    np.testing.assert_allclose(backend.predict(x), xq @ WEIGHTS, rtol=1e-5)


def test_qdq_model_takes_int8_only(monkeypatch, tmp_path):
    """Its Q/DQ layers run in INT8 whatever is asked, so fp32/fp16 are refused up front (before
    TensorRT is even imported); unset, it runs as it is and says so."""
    path = write_model(tmp_path / "qdq.onnx", qdq=True)
    fake_tensorrt.install(monkeypatch, with_tensorrt=False)
    for precision in ("fp32", "fp16"):
        with pytest.raises(ConfigError, match=f"cannot apply precision {precision} to .*qdq.onnx: it can apply int8;"):
            make(tmp_path).check_precision(precision, path)
    trt_state, _ = fake_tensorrt.install(monkeypatch)
    backend = make(tmp_path)
    backend.load(path)
    assert trt_state.builds[-1]["flags"] == {"INT8"} and not trt_state.builds[-1]["calibrator"]
    assert backend.describe()["precision"] == "int8 (the model's Q/DQ nodes; BuilderFlag.INT8)"
    make(tmp_path).load(write_model(tmp_path / "plain.onnx"))
    assert trt_state.builds[-1]["flags"] == set()


def test_quantised_from_network_layers_without_onnx(monkeypatch, tmp_path):
    """Where the onnx package cannot read the model, a network with Q/DQ layers counts as quantised."""
    from backends import int8_calibration
    from sut.errors import BackendUnavailable

    trt_state, _ = fake_tensorrt.install(monkeypatch)
    path = write_model(tmp_path / "qdq.onnx", qdq=True)

    def no_onnx(model_path):
        raise BackendUnavailable("no onnx")

    monkeypatch.setattr(int8_calibration, "_load_onnx", no_onnx)
    backend = make(tmp_path)
    backend.load(path)
    assert not trt_state.builds[-1]["calibrator"]
    assert backend.applied_precision() == "int8 (the model's Q/DQ nodes; BuilderFlag.INT8)"


def weight_only_model(path):
    """y = x @ W with W stored as int8 behind a DequantizeLinear: a float model (activations not quantised)."""
    q = np.round(WEIGHTS / 0.01).astype(np.int8)
    graph = helper.make_graph(
        [helper.make_node("DequantizeLinear", ["Wq", "s"], ["W"]), helper.make_node("MatMul", ["x", "W"], ["y"])],
        "weight_only", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor("Wq", TensorProto.INT8, (4, 3), q.ravel()),
         helper.make_tensor("s", TensorProto.FLOAT, (), [0.01])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize("version", ["10.3.0", "11.4.0.106"])
def test_weight_only_int8_model_is_float(monkeypatch, tmp_path, version):
    """One definition of quantised (backends/int8_calibration.is_quantized): int8 weights behind a
    DequantizeLinear do not make a model quantised, so int8 calibrates it (the Q/DQ copy); TensorRT 8-10
    still gets the INT8 flag for its DequantizeLinear layer at fp32/fp16."""
    from backends import int8_calibration

    trt_state, _ = install_version(monkeypatch, version)
    eleven = version.startswith("11.")
    path = weight_only_model(tmp_path / "wo.onnx")
    assert not int8_calibration.is_quantized(path)
    assert make(tmp_path).supported_precisions(path) == ("fp32", "fp16", "int8")
    rng = np.random.default_rng(6)
    batches = [rng.uniform(-1, 1, (4, 4)).astype(np.float32) for _ in range(4)]
    backend = make(tmp_path, precision="int8", calibration_batches=batches)
    backend.load(path)
    build = trt_state.builds[-1]
    assert backend.qdq_path and backend.describe()["build"]["onnx"] == "qdq" and build["qdq"]
    built = {n.op_type for n in onnx.load(backend.qdq_path).graph.node}
    assert "QuantizeLinear" in built  # activations quantised now
    assert backend.applied_precision().startswith("int8 (Q/DQ copy calibrated on 16 samples: ")
    x = batches[0]
    np.testing.assert_allclose(backend.predict(x), x @ WEIGHTS, atol=0.05)
    backend.close()
    backend = make(tmp_path, precision="fp32")
    backend.load(path)
    assert trt_state.builds[-1]["flags"] == (set() if eleven else {"INT8"})
    assert backend.applied_precision() == ("fp32 (strongly typed)" if eleven else "fp32 (BuilderFlag.INT8)")
    backend.close()
    if eleven:
        need_module("onnxconverter_common", "TensorRT 11's fp16 builds from an fp16 ONNX copy made with it")
    backend = make(tmp_path, precision="fp16")
    backend.load(path)  # 11: the fp16 copy keeps DequantizeLinear in float32 (fp16 scales need opset 19)
    assert trt_state.builds[-1]["flags"] == (set() if eleven else {"FP16", "INT8"})
    np.testing.assert_allclose(backend.predict(x), x @ WEIGHTS, atol=0.05)
    backend.close()
    if not eleven:
        with pytest.raises(ConfigError, match='calibrator = "entropy" cannot calibrate .*wo.onnx: it holds '
                                              'DequantizeLinear nodes'):
            make(tmp_path, precision="int8", calibrator="entropy", calibration_batches=batches).load(path)


def test_real_mobilenet_qdq_onnx(fakes, tmp_path):
    """The shared QDQ MobileNet through the fake engine: NCHW float input, 1001 outputs, batch 1."""
    trt_state, _ = fakes
    path = shared_path("models", "mobilenet", "mobilenet_v1_1.0_224_quant_qdq_nchw.onnx")
    backend = make(tmp_path, precision="int8", max_batch_size=1)
    info = backend.load(str(path))
    assert info.input.shape == (3, 224, 224) and info.input.layout == "NCHW"
    assert info.output.shape == (1001,) and info.max_batch_size == 1
    assert not trt_state.builds[-1]["calibrator"]
    x = np.random.default_rng(2).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    want = fake_tensorrt.reference_session(str(path)).run(None, {info.input.name: x})[0]
    np.testing.assert_array_equal(backend.predict(x), want)


@pytest.mark.hardware
def test_real_tensorrt_on_gpu(tmp_path):
    need_module("tensorrt", "needs NVIDIA TensorRT and a GPU")
    from backends.tensorrt import TensorRTBackend
    path = shared_path("models", "mobilenet", "mobilenet_v1_1.0_224_quant_qdq_nchw.onnx")
    backend = TensorRTBackend(BackendOptions(precision="fp16", extra={"engine_cache": str(tmp_path)}))
    try:
        info = backend.load(str(path))
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    out = backend.predict(np.zeros((1, *info.input.shape), info.input.dtype))
    assert out.shape == (1, 1001)


# --- PyCUDA binding ------------------------------------------------------------------------------

def fake_pycuda_driver(devices=1):
    """Just enough of ``pycuda.driver`` (documented API) for backends.cuda_memory.PyCuda."""
    import ctypes
    import types

    drv = types.ModuleType("pycuda.driver")
    drv.pushed = []

    class Allocation:
        def __init__(self, n):
            self.buf = (ctypes.c_ubyte * n)()

        def __int__(self):
            return ctypes.addressof(self.buf)

        def free(self):
            self.buf = None

    class Context:
        @staticmethod
        def pop():
            drv.pushed.pop()

    class PrimaryContext:
        def push(self):
            drv.pushed.append(self)

    class Device:
        def __init__(self, i):
            self.i = i

        @staticmethod
        def count():
            return devices

        def name(self):
            return "Fake Orin"

        def compute_capability(self):
            return (8, 7)

        def retain_primary_context(self):
            return PrimaryContext()

    class Stream:
        handle = 0x77

        def synchronize(self):
            assert drv.pushed, "no context current"

    def need_context(fn):
        def wrapped(*args):
            assert drv.pushed, f"{fn.__name__} without a current context"
            return fn(*args)
        return wrapped

    drv.init = lambda: None
    drv.Device, drv.Context, drv.Stream = Device, Context, Stream
    drv.mem_alloc = need_context(Allocation)
    drv.pagelocked_empty = need_context(lambda shape, dtype: np.zeros(shape, dtype))
    drv.memcpy_htod_async = need_context(lambda dst, src, stream: ctypes.memmove(dst, src.ctypes.data, src.nbytes))
    drv.memcpy_dtoh_async = need_context(lambda dst, src, stream: ctypes.memmove(dst.ctypes.data, src, dst.nbytes))
    return drv


def test_pycuda_binding(monkeypatch):
    import sys
    import types

    from backends.cuda_memory import open_cuda

    drv = fake_pycuda_driver()
    package = types.ModuleType("pycuda")
    package.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    cuda = open_cuda(0, prefer="pycuda")
    assert cuda.binding == "pycuda" and cuda.device_name() == "Fake Orin" and cuda.compute_capability() == (8, 7)
    host = cuda.host_empty((2, 3), np.float32)
    host.array[:] = np.arange(6).reshape(2, 3)
    back = cuda.host_empty((2, 3), np.float32)
    stream = cuda.stream_create()
    ptr = cuda.malloc(host.nbytes)
    cuda.copy_to_device_async(ptr, host.array, stream)
    cuda.copy_to_host_async(back.array, ptr, stream)
    cuda.stream_sync(stream)
    np.testing.assert_array_equal(back.array, host.array)
    assert cuda.stream_handle(stream) == 0x77 and drv.pushed == []  # every push was popped
    cuda.free(ptr)

    package.driver = fake_pycuda_driver(devices=0)
    monkeypatch.setitem(sys.modules, "pycuda.driver", package.driver)
    with pytest.raises(BackendUnavailable, match="no CUDA GPU found"):
        open_cuda(0, prefer="pycuda")


def test_no_cuda_binding_at_all(monkeypatch):
    import sys

    from backends.cuda_memory import open_cuda

    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(BackendUnavailable, match="neither cuda-python .* nor pycuda is installed"):
        open_cuda(0)


def test_int8_calibration_from_the_harness_and_cache_dir(fakes, tmp_path, model):
    """The harness's generic options: calibration batches made for the input
    spec TensorRT asks for, engines kept under the run's cache directory."""
    from backends.tensorrt import TensorRTBackend

    trt_state, _ = fakes
    asked = []

    def calibration(spec):
        asked.append(spec)
        return [np.full((2, *spec.shape), 0.5, spec.dtype) for _ in range(2)]

    backend = TensorRTBackend(BackendOptions(precision="int8", max_batch_size=4, cache_dir=str(tmp_path / "c"),
                                             calibration=calibration, extra={"calibrator": "entropy"}))
    backend.load(model)
    assert [(s.name, s.shape, s.dtype) for s in asked] == [("x", (4,), np.dtype(np.float32))]
    assert trt_state.builds[-1]["calibration_batches"] == 1
    assert list((tmp_path / "c" / "tensorrt").glob("*.engine"))
    backend.close()


# --- TensorRT versions: 8.x-10.x builder flags, 11 strongly typed ----------------------------------

VERSIONS = ["8.6.1", "10.3.0", "10.16.1.11", "11.4.0.106"]


def install_version(monkeypatch, trt_version, **cuda):
    return fake_tensorrt.install(monkeypatch, trt_state=fake_tensorrt.FakeTrtState(version=trt_version),
                                 cuda_state=fake_tensorrt.FakeCudaState(**cuda))


@pytest.mark.parametrize("version", VERSIONS)
def test_fp16_on_every_version(monkeypatch, tmp_path, model, version):
    """8.x-10.x: the FP16 flag on the model as it is; 11: no flag, an fp16 copy of the model."""
    trt_state, _ = install_version(monkeypatch, version)
    eleven = version.startswith("11.")
    if eleven:
        need_module("onnxconverter_common", "TensorRT 11's fp16 builds from an fp16 ONNX copy made with it")
    backend = make(tmp_path, precision="fp16")
    info = backend.load(model)
    build = trt_state.builds[-1]
    assert build["strongly_typed"] is eleven
    assert build["flags"] == (set() if eleven else {"FP16"})
    assert build["weights"] == ({"HALF"} if eleven else {"FLOAT"})
    assert info.input.dtype == np.float32 and info.output.dtype == np.float32  # io types kept
    described = backend.describe()["build"]
    assert described["strongly_typed"] is eleven and described["onnx"] == ("fp16" if eleven else "model")
    assert described["builder_flags"] == ([] if eleven else ["FP16"])
    assert backend.describe()["precision"] == ("fp16 (fp16 ONNX copy; strongly typed)" if eleven
                                               else "fp16 (BuilderFlag.FP16)")
    x = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(backend.predict(x), x @ WEIGHTS, rtol=2e-3, atol=2e-3)
    backend.close()
    if eleven:  # the fp16 copy is cached beside the engines, and reused
        copies = list((tmp_path / "engines" / "onnx").glob("*-fp16-*.onnx"))
        assert len(copies) == 1 and str(copies[0]) == backend.describe()["built_from"]
        mtime = copies[0].stat().st_mtime_ns
        again = make(tmp_path, precision="fp16")
        again.load(model)
        assert again.engine_from_cache and copies[0].stat().st_mtime_ns == mtime


@pytest.mark.parametrize("version", VERSIONS)
def test_int8_of_a_float_model_builds_from_a_qdq_copy(monkeypatch, tmp_path, model, version):
    """The default calibrator: ONNX Runtime's static Q/DQ quantisation, on every TensorRT version."""
    trt_state, _ = install_version(monkeypatch, version)
    eleven = version.startswith("11.")
    rng = np.random.default_rng(4)
    batches = [rng.uniform(-1, 1, (3, 4)).astype(np.float32) for _ in range(4)]
    backend = make(tmp_path, precision="int8", calibration_batches=batches)
    backend.load(model)
    build = trt_state.builds[-1]
    assert build["qdq"] and not build["calibrator"] and build["strongly_typed"] is eleven
    assert build["flags"] == (set() if eleven else {"FP16", "INT8"})
    assert backend.describe()["build"]["onnx"] == "qdq"
    assert backend.describe()["precision"] == (
        f"int8 (Q/DQ copy calibrated on 12 samples: {backend.qdq_path}; "
        + ("strongly typed)" if eleven else "BuilderFlag.FP16+INT8)"))
    import onnx as onnx_module

    built = onnx_module.load(backend.describe()["built_from"])
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in built.graph.node}
    x = batches[0]
    np.testing.assert_allclose(backend.predict(x), x @ WEIGHTS, atol=0.05)
    backend.close()


def test_qdq_copy_uses_the_harness_calibration_and_cache_dir(fakes, tmp_path, model):
    from backends.tensorrt import TensorRTBackend

    trt_state, _ = fakes
    asked = []

    def calibration(spec):
        asked.append(spec)
        return [np.full((2, *spec.shape), 0.5, spec.dtype) for _ in range(2)]

    backend = TensorRTBackend(BackendOptions(precision="int8", max_batch_size=4, cache_dir=str(tmp_path / "c"),
                                             calibration=calibration))
    backend.load(model)
    assert [(s.name, s.shape) for s in asked] == [("x", (4,))]
    assert list((tmp_path / "c" / "qdq").glob("*.qdq.onnx")) and trt_state.builds[-1]["qdq"]


def test_qdq_copy_comes_from_backend_load(fakes, tmp_path, model, monkeypatch):
    """One int8 path for every ONNX backend: Backend.load asks backends/int8_calibration.for_backend
    (with calibration_batches as BackendOptions.calibration, the copy kept beside the engines) and
    TensorRT builds from what it returns."""
    from backends import int8_calibration

    trt_state, _ = fakes
    calls = []
    qdq_path = write_model(tmp_path / "made.qdq.onnx", qdq=True)

    def for_backend(model_path, options, cache_root):
        spec = int8_calibration.input_spec(model_path)
        calls.append((model_path, spec.name, spec.shape, [b.shape for b in options.calibration(spec)], cache_root))
        return qdq_path, spec

    monkeypatch.setattr(int8_calibration, "for_backend", for_backend)
    backend = make(tmp_path, precision="int8", calibration_batches=lambda: iter([np.ones((2, 4), np.float32)]))
    backend.load(model)
    assert calls == [(model, "x", (4,), [(2, 4)], str(tmp_path / "engines"))]
    assert trt_state.builds[-1]["qdq"] and backend.describe()["built_from"] == qdq_path
    assert backend.qdq_path == qdq_path and backend.describe()["precision"] == (
        f"int8 (Q/DQ copy {qdq_path}; BuilderFlag.FP16+INT8)")


def test_entropy_calibrator_refused_on_tensorrt_11(monkeypatch, tmp_path, model):
    trt_state, _ = install_version(monkeypatch, "11.4.0.106")
    with pytest.raises(ConfigError, match='TensorRT 11.4.0.106 has no INT8 calibrators'):
        make(tmp_path, calibrator="entropy").check_precision("int8", model)  # up front, as the harness asks
    assert not trt_state.builds and not trt_state.parsed
    # a Q/DQ model needs no calibrator: accepted
    make(tmp_path, calibrator="entropy").check_precision("int8", write_model(tmp_path / "q.onnx", qdq=True))
    with pytest.raises(ConfigError, match='TensorRT 11.4.0.106 has no INT8 calibrators .*calibrator = "qdq"'):
        make(tmp_path, precision="int8", calibrator="entropy",
             calibration_batches=[np.ones((4, 4), np.float32)]).load(model)


def test_qdq_model_on_tensorrt_11_is_built_as_it_is(monkeypatch, tmp_path):
    trt_state, _ = install_version(monkeypatch, "11.4.0.106")
    path = write_model(tmp_path / "qdq.onnx", qdq=True)
    for precision in (None, "int8"):
        backend = make(tmp_path, precision=precision)
        backend.load(path)
        build = trt_state.builds[-1]
        assert build["qdq"] and build["strongly_typed"] and build["flags"] == set()
        assert backend.describe()["built_from"] == path
        assert backend.describe()["precision"] == "int8 (the model's Q/DQ nodes; strongly typed)"
        backend.close()
    assert len(trt_state.parsed) == 2  # no copy was parsed


def test_refusals_come_before_any_run(monkeypatch, tmp_path, model):
    """check_precision (called by the harness before the first run) refuses what load would:
    dla_core with fp32, a missing fp16 converter on TensorRT 11, and a missing TensorRT."""
    from backends import onnx_fp16
    from sut.errors import BackendUnavailable as Unavailable

    trt_state, _ = install_version(monkeypatch, "11.4.0.106")
    with pytest.raises(ConfigError, match="dla_core=0 needs precision fp16 or int8"):
        make(tmp_path, dla_core=0).check_precision("fp32", model)

    def missing():
        raise Unavailable("an fp16 ONNX model needs the 'onnxconverter-common' package")

    monkeypatch.setattr(onnx_fp16, "converter_version", missing)
    with pytest.raises(Unavailable, match="onnxconverter-common"):
        make(tmp_path).check_precision("fp16", model)
    assert not trt_state.parsed
    install_version(monkeypatch, "10.3.0")
    make(tmp_path).check_precision("fp16", model)  # builder flag: no converter needed
    fake_tensorrt.install(monkeypatch, with_tensorrt=False)
    with pytest.raises(Unavailable, match="pip install -e '.\\[tensorrt\\]'"):
        make(tmp_path).check_precision("fp16", model)


def test_applied_precision_names_entropy_and_dla(fakes, tmp_path, model):
    batches = [np.ones((4, 4), np.float32)]
    backend = make(tmp_path, precision="int8", calibrator="entropy", calibration_batches=batches)
    assert backend.applied_precision() == "int8"  # before load: what was asked
    backend.load(model)
    (table,) = (tmp_path / "engines").glob("*.calib")
    assert backend.applied_precision() == f"int8 (entropy calibrator, table {table}; BuilderFlag.FP16+INT8)"
    backend = make(tmp_path, precision="fp16", dla_core=1)
    backend.load(model)
    assert backend.describe()["precision"] == "fp16 (BuilderFlag.FP16; DLA core 1 with GPU fallback)"
    backend = make(tmp_path, precision="fp32")
    backend.load(model)
    assert backend.describe()["precision"] == "fp32 (no precision flags)"


def test_tensorrt_too_old_is_one_line(monkeypatch, tmp_path, model):
    trt_state, _ = install_version(monkeypatch, "8.6.1")
    import sys

    monkeypatch.delattr(sys.modules["tensorrt"].Builder, "build_serialized_network")
    with pytest.raises(BackendUnavailable, match="TensorRT 8.6.1 is too old .*build_serialized_network.*8.4 or newer"):
        make(tmp_path).load(model)


# --- CUDA: driver, devices, threads ---------------------------------------------------------------

def test_driver_older_than_the_bindings(monkeypatch, tmp_path, model):
    install_version(monkeypatch, "10.16.1.11", driver=12040, runtime=13000, version="13.0.1")
    with pytest.raises(BackendUnavailable) as exc:
        make(tmp_path).load(model)
    text = str(exc.value)
    assert "driver supports CUDA 12.4, but cuda-python 13.0.1 needs a CUDA 13.0 driver" in text
    assert "pip install 'cuda-python>=12,<13'" in text and "'.[tensorrt-cu12]'" in text and "\n" not in text


def test_no_driver_with_the_fake(monkeypatch, tmp_path, model):
    install_version(monkeypatch, "10.3.0", driver=0)
    with pytest.raises(BackendUnavailable, match=r"no usable CUDA GPU: .*cudaErrorInsufficientDriver "
                                                 r"\(no NVIDIA driver on this machine\)"):
        make(tmp_path).load(model)


def test_older_minor_driver_is_fine(monkeypatch, tmp_path, model):
    """CUDA minor version compatibility: bindings for 12.9 on a 12.2 driver."""
    install_version(monkeypatch, "10.3.0", driver=12020, runtime=12090)
    assert make(tmp_path).load(model).input.shape == (4,)


def test_bad_device_index_is_a_config_error(monkeypatch, tmp_path, model):
    from backends.tensorrt import TensorRTBackend

    install_version(monkeypatch, "10.3.0", devices=2)
    with pytest.raises(ConfigError, match=r"CUDA device 2 does not exist: this machine has 2 \(pass --device 0 to 1\)"):
        TensorRTBackend(BackendOptions(device="2", extra={"engine_cache": str(tmp_path)})).load(model)


def test_device_1_from_worker_threads(monkeypatch, tmp_path, model):
    """Each worker thread makes the chosen GPU current before using it (CUDA's device is per thread)."""
    import threading

    from backends.tensorrt import TensorRTBackend

    trt_state, cuda_state = install_version(monkeypatch, "10.3.0", devices=2)
    backend = TensorRTBackend(BackendOptions(device="cuda:1", instances=2, max_batch_size=2,
                                             extra={"engine_cache": str(tmp_path)}))
    backend.load(model)
    x = np.ones((2, 4), np.float32)
    results = {}

    def work(i):
        for _ in range(3):
            results[i] = backend.predict(x, instance=i)

    threads = [threading.Thread(target=work, args=(i,), name=f"worker-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not cuda_state.errors, cuda_state.errors
    for i in range(2):
        np.testing.assert_allclose(results[i], x @ WEIGHTS, rtol=1e-6)
    assert {e["thread"] for e in trt_state.executions} == {"worker-0", "worker-1"}
    per_thread = [d for name, d in cuda_state.set_device_calls if name.startswith("worker")]
    assert per_thread == [1, 1], "one cudaSetDevice(1) per worker thread, not one per call"
    assert set(cuda_state.mem_device.values()) == {1}
    backend.close()


def test_fake_refuses_work_on_the_wrong_device(monkeypatch, tmp_path, model):
    """Without cudaSetDevice in the worker thread, the fake (like CUDA) fails: the check above means something."""
    import threading

    from backends import cuda_memory
    from backends.tensorrt import TensorRTBackend
    from sut.errors import BackendFailure

    install_version(monkeypatch, "10.3.0", devices=2)
    backend = TensorRTBackend(BackendOptions(device="1", extra={"engine_cache": str(tmp_path)}))
    backend.load(model)
    monkeypatch.setattr(cuda_memory.CudaPython, "make_current", lambda self: None)
    errors = []

    def work():
        try:
            backend.predict(np.ones((1, 4), np.float32))
        except BackendFailure as exc:
            errors.append(str(exc))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert errors and "cudaErrorInvalidResourceHandle" in errors[0]
    monkeypatch.undo()
