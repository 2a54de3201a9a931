"""The OpenVINO 2021.4 (IECore) path: for real on the CPU where 2021.4 is installed, MYRIAD with it faked.

``openvino==2021.4.2`` installs on Python <= 3.9 only; the compatibility job
``.ci/compat/openvino-2021.4.sh`` runs this file there, where the "real"
tests load the shared ONNX MobileNet on the CPU and check that the fake
(tests/backends/fake_openvino_legacy.py) has no name and accepts nothing the
real module lacks or refuses. Elsewhere those tests skip and the faked
MYRIAD tests run on their own.
"""

from __future__ import annotations

import importlib
import re

import numpy as np
import pytest

from backends.base import BackendOptions
from backends.openvino import OpenVINOBackend
from sut.errors import BackendUnavailable, ConfigError, ModelError
from tests.backends import fake_openvino_legacy as fake
from tests.conftest import shared_path

MOBILENET_ONNX = ("models", "mobilenet", "mobilenet_v1_1.0_224_quant_qdq_nchw.onnx")
MOBILENET_IR = ("models", "mobilenet", "openvino_ir", "mobilenet_v1_0.25_128_quant.xml")


def _real_inference_engine():
    """The real 2021.4 ``openvino.inference_engine`` when that is the installed OpenVINO, else None."""
    try:
        openvino = importlib.import_module("openvino")
    except ImportError:
        return None
    if hasattr(openvino, "Core"):
        return None
    try:
        importlib.import_module("openvino.runtime")  # 2022.x: API 2.0, which the backend uses instead
        return None
    except ImportError:
        pass
    try:
        return importlib.import_module("openvino.inference_engine")
    except ImportError:
        return None


REAL = _real_inference_engine()
real_only = pytest.mark.skipif(REAL is None, reason="needs openvino 2021.4 (IECore only; Python <= 3.9): "
                                                    "run by .ci/compat/openvino-2021.4.sh")


@pytest.fixture
def ie(monkeypatch):
    return fake.install(monkeypatch)


@pytest.fixture
def ir_model(tmp_path):
    xml = tmp_path / "model.xml"
    xml.write_text('<?xml version="1.0"?>\n<net name="model" version="10">\n</net>\n')
    (tmp_path / "model.bin").write_bytes(b"\0")
    return str(xml)


def load(model, **options):
    backend = OpenVINOBackend(BackendOptions(**options))
    return backend, backend.load(model)


# --- MYRIAD and the rest, with the runtime faked ---------------------------------------------
def test_myriad_gets_fp16_input_and_optimal_requests(ie, ir_model):
    backend, info = load(ir_model, device="MYRIAD")
    core = fake.IECore.created[-1]
    assert core.reads == [{"model": ir_model, "weights": ir_model[:-4] + ".bin"}]
    network = core.loads[0]["network"]
    assert network.input_info["input"].precision == "FP16"
    assert network.outputs["prob"].precision == "FP32"
    assert core.loads[0]["device_name"] == "MYRIAD"
    assert core.loads[0]["num_requests"] == 0  # 0 = the device's optimal number
    assert info.input.dtype == np.float16
    assert info.input.shape == (3, 224, 224) and info.input.layout == "NCHW"
    assert not info.input.quantized
    assert info.output.shape == (1001,) and info.output.dtype == np.float32
    assert info.instances == 4 and info.max_batch_size == 1


def test_predict_uses_the_instance_request(ie, ir_model):
    backend, info = load(ir_model, device="MYRIAD", instances=2)
    assert info.instances == 2
    batch = np.full((1, 3, 224, 224), 7, np.float16)
    out = backend.predict(batch, instance=1)
    assert out.shape == (1, 1001) and int(np.argmax(out[0])) == 7
    requests = fake.IECore.created[-1].loads[0]
    assert requests["num_requests"] == 2
    exec_requests = backend._legacy._exec_net.requests
    assert len(exec_requests[1].inputs_seen) == 1 and not exec_requests[0].inputs_seen
    assert exec_requests[1].inputs_seen[0].dtype == np.float16


def test_cpu_keeps_fp32_and_refuses_fp16(ie, ir_model):
    _, info = load(ir_model, device="CPU", threads=3)
    assert info.input.dtype == np.float32
    assert fake.IECore.created[-1].loads[0]["config"] == {"CPU_THREADS_NUM": "3"}
    with pytest.raises(ConfigError, match=r"2021\.4's CPU plugin refuses fp16 input .*use precision fp32"):
        load(ir_model, device="CPU", precision="fp16")


def test_fp16_asked_for_on_another_device(ie, ir_model, monkeypatch):
    monkeypatch.setattr(fake.IECore, "available_devices_default", ["CPU", "GPU"])
    _, info = load(ir_model, device="GPU", precision="fp16")
    assert info.input.dtype == np.float16
    assert fake.IECore.created[-1].loads[0]["network"].input_info["input"].precision == "FP16"


def test_precisions_are_refused_up_front(ie, ir_model, tmp_path):
    """What 2021.4 would not apply is a ConfigError from check_precision (the harness asks it before any
    run), through the OpenVINO backend, which hands 2021.4's rules to the legacy class."""
    def check(precision, model=ir_model, device="CPU"):
        OpenVINOBackend(BackendOptions(device=device, precision=precision)).check_precision(precision, model)

    assert OpenVINOBackend(BackendOptions()).qdq_int8 is False  # no Q/DQ copy swapped in on 2021.4
    check("fp32")
    check("fp16", device="MYRIAD")
    for precision in ("fp32", "int8", "bf16"):
        with pytest.raises(ConfigError, match=f"'MYRIAD' \\(the NCS2\\) computes in FP16 only: .*not {precision}"):
            check(precision, device="MYRIAD")
    with pytest.raises(ConfigError, match=r"2021\.4's CPU plugin refuses fp16 input"):
        check("fp16")
    with pytest.raises(ConfigError, match="cannot apply precision bf16 .*it can apply fp32, int8;"):
        check("bf16")
    assert OpenVINOBackend(BackendOptions(device="MYRIAD")).supported_precisions(ir_model) == ("fp16",)
    with pytest.raises(ConfigError, match="cannot apply precision int8 to .*model.xml: the IR has no FakeQuantize"):
        check("int8")
    quantised = tmp_path / "q.xml"
    quantised.write_text('<net name="q" version="10"><layers><layer id="1" type="FakeQuantize"/></layers></net>')
    check("int8", str(quantised))


def test_int8_of_a_float_onnx_model_is_refused(ie, tmp_path):
    """2021.4's ONNX importer rejects the Q/DQ copy int8 calibration makes (shown for real in
    test_int8_calibration.py where a 2021.4 venv exists); whether a model is float is read with onnx."""
    import importlib.util

    path = tmp_path / "float.onnx"
    if importlib.util.find_spec("onnx"):
        from onnx import TensorProto, helper, save

        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
        save(helper.make_model(graph), str(path))
        reason = "it is a float model, and 2021.4's ONNX importer rejects the Q/DQ copy"
    else:  # the 2021.4 CI venv has no onnx module
        path.write_bytes(b"\0")
        reason = r"whether the model is quantised is read with the 'onnx' module, which is not installed \(pip"
    backend = OpenVINOBackend(BackendOptions(precision="int8"))
    with pytest.raises(ConfigError, match=f"2021.4 cannot apply precision int8 to .*float.onnx: {reason}"):
        backend.load(str(path))
    assert backend.qdq_path is None and not fake.IECore.created


def test_describe_records_the_applied_precision(ie, ir_model):
    backend, _ = load(ir_model, device="MYRIAD", precision="fp16")
    assert backend.describe()["precision"] == backend.applied_precision() == "fp16"
    backend, _ = load(ir_model, device="MYRIAD")
    assert backend.describe()["precision"] == "the model's own"


def test_the_fake_cpu_refuses_fp16_input_as_the_real_one(ie, ir_model):
    core = fake.IECore()
    network = core.read_network(model=ir_model, weights=ir_model[:-4] + ".bin")
    network.input_info["input"].precision = "FP16"
    with pytest.raises(RuntimeError, match=r"Input image format FP16 is not supported yet"):
        core.load_network(network=network, device_name="CPU")


def test_quantised_input_needs_scale_from_options(ie, ir_model, monkeypatch):
    monkeypatch.setattr(fake.IECore, "network_args",
                        {"input_shape": [1, 128, 128, 3], "input_precision": "U8", "layout": "NHWC", "classes": 1001})
    with pytest.raises(ModelError, match="input_scale and input_zero_point"):
        load(ir_model, device="MYRIAD")
    backend, info = load(ir_model, device="MYRIAD",
                         extra={"input_scale": 0.0078125, "input_zero_point": 128})
    assert info.input.dtype == np.uint8  # a quantised input is not turned into fp16
    assert (info.input.scale, info.input.zero_point) == (0.0078125, 128)
    assert info.input.layout == "NHWC"
    out = backend.predict(np.full((1, 128, 128, 3), 200, np.uint8))
    assert int(np.argmax(out[0])) == 200


def test_myriad_without_its_plugin_says_how_to_get_it(ie, ir_model, monkeypatch):
    monkeypatch.setattr(fake.IECore, "available_devices_default", ["CPU"])
    with pytest.raises(BackendUnavailable, match=r"'MYRIAD' is not available \(this OpenVINO has no MYRIAD plugin; "
                                                 r"the NCS2 needs the OpenVINO 2022\.3 LTS archive .*this machine has: CPU"):
        load(ir_model, device="MYRIAD")


def test_myriad_plugin_that_does_not_load_names_libusb(ie, ir_model, monkeypatch):
    monkeypatch.setattr(fake.IECore, "available_devices_default", ["CPU"])

    def no_libusb(self, device_name):
        raise RuntimeError(f"Failed to create plugin libmyriadPlugin.so for device {device_name}\n"
                           "Please, check your environment\nCannot load library 'libmyriadPlugin.so': "
                           "libusb-1.0.so.0: cannot open shared object file: No such file or directory\n")

    monkeypatch.setattr(fake.IECore, "get_versions", no_libusb)
    with pytest.raises(BackendUnavailable) as caught:
        load(ir_model, device="MYRIAD")
    assert "\n" not in str(caught.value)
    assert "libusb-1.0.so.0 is missing; apt install libusb-1.0-0" in str(caught.value)


def test_multi_device_list_is_checked(ie, ir_model):
    with pytest.raises(BackendUnavailable, match="GPU"):
        load(ir_model, device="MULTI:MYRIAD,GPU")


def test_missing_weights_and_tflite_are_model_errors(ie, tmp_path):
    xml = tmp_path / "lonely.xml"
    xml.write_text("<net/>")
    with pytest.raises(ModelError, match="lonely.bin"):
        OpenVINOBackend(BackendOptions(device="MYRIAD")).load(str(xml))
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"\.xml, \.onnx"):
        OpenVINOBackend(BackendOptions(device="MYRIAD")).load(str(tflite))


def test_an_ir_from_a_newer_converter_is_one_line(ie, tmp_path):
    xml = tmp_path / "new.xml"
    xml.write_text('<?xml version="1.0"?>\n<net name="m" version="11">\n<rt_info>\n'
                   '<Runtime_version value="2026.4.1-22982-e213a147257-releases/2026/4" />\n</rt_info>\n</net>\n')
    (tmp_path / "new.bin").write_bytes(b"\0")
    with pytest.raises(ModelError) as caught:
        load(str(xml), device="MYRIAD")
    message = str(caught.value)
    assert "\n" not in message
    assert "written by OpenVINO 2026.4.1, newer than the installed OpenVINO 2021.4.2 can read" in message
    assert "use the ONNX model instead" in message


def test_a_release_older_than_2021_4_is_unavailable(ie, ir_model, monkeypatch):
    monkeypatch.setattr(ie, "get_version", lambda: "2021.3.0-2787-60059f2c755-releases/2021/3")
    with pytest.raises(BackendUnavailable, match=r"OpenVINO 2021\.3\.0 is older than the 2021\.4 this backend needs"):
        load(ir_model, device="MYRIAD")


def test_unknown_option_is_refused(ie, ir_model):
    with pytest.raises(ConfigError, match="accepted backend_options"):
        load(ir_model, device="MYRIAD", extra={"nonsense": 1})


def test_describe_and_version(ie, ir_model):
    backend, _ = load(ir_model, device="MYRIAD")
    described = backend.describe()
    assert described["runtime"] == "openvino " + fake.get_version()
    assert described["device"] == "MYRIAD" and described["api"] == "IECore (2021.4)"
    assert described["device_name"] == "Intel Movidius Myriad X VPU"
    assert described["infer_requests"] == 4


# --- the fake against the real 2021.4 module -------------------------------------------------
def _public(obj) -> set:
    return {n for n in dir(obj) if not n.startswith("_")}


def _real_objects():
    core = REAL.IECore()
    network = core.read_network(model=str(shared_path(*MOBILENET_ONNX)))
    name, output = next(iter(network.input_info)), next(iter(network.outputs))
    executable = core.load_network(network=network, device_name="CPU", num_requests=1)
    request = executable.requests[0]
    request.infer({name: np.zeros((1, 3, 224, 224), np.float32)})
    return {"IECore": core, "IENetwork": network, "InputInfoPtr": network.input_info[name],
            "DataPtr": network.outputs[output], "ExecutableNetwork": executable, "InferRequest": request,
            "Blob": request.output_blobs[output], "_keep": (core, executable)}


def _fake_objects(ir_model):
    core = fake.IECore()
    network = core.read_network(model=ir_model, weights=ir_model[:-4] + ".bin")
    executable = core.load_network(network=network, device_name="CPU", num_requests=1)
    request = executable.requests[0]
    request.infer({"input": np.zeros((1, 3, 224, 224), np.float32)})
    return {"IECore": core, "IENetwork": network, "InputInfoPtr": network.input_info["input"],
            "DataPtr": network.outputs["prob"], "ExecutableNetwork": executable, "InferRequest": request,
            "Blob": request.output_blobs["prob"]}


@real_only
def test_the_fake_has_no_name_the_real_module_lacks(ir_model):
    real, faked = _real_objects(), _fake_objects(ir_model)
    assert set(fake.STANDS_FOR.values()) <= _public(REAL)
    for kind in fake.STANDS_FOR.values():
        extra = _public(faked[kind]) - _public(real[kind]) - fake.TEST_ONLY
        assert not extra, f"fake {kind} has {sorted(extra)}, which the real 2021.4 {kind} lacks"
    assert fake.get_version() == REAL.get_version()


def _error(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the point is to compare what each raises
        return type(exc), str(exc).splitlines()[0] if str(exc) else ""
    return None


@real_only
def test_the_fake_refuses_what_the_real_module_refuses(ir_model, tmp_path):
    onnx = str(shared_path(*MOBILENET_ONNX))
    real_core, fake_core = REAL.IECore(), fake.IECore()

    def both(action):
        real_net = real_core.read_network(model=onnx)
        fake_net = fake_core.read_network(model=ir_model, weights=ir_model[:-4] + ".bin")
        return (_error(lambda: action(real_core, real_net, next(iter(real_net.input_info)))),
                _error(lambda: action(fake_core, fake_net, "input")))

    def fp16_on_cpu(core, net, name):
        net.input_info[name].precision = "FP16"
        core.load_network(network=net, device_name="CPU", num_requests=1)

    real, faked = both(fp16_on_cpu)
    assert real == faked == (RuntimeError, "[ NOT_IMPLEMENTED ] Input image format FP16 is not supported yet...")

    def bogus_precision(core, net, name):
        net.input_info[name].precision = "FP8"

    real, faked = both(bogus_precision)
    assert real == faked and real[0] is ValueError  # the same message, with the same list of precisions

    def unknown_device(core, net, name):
        core.load_network(network=net, device_name="NOPE")

    real, faked = both(unknown_device)
    assert real == faked and "not registered" in real[1]

    def infer(data):
        def action(core, net, name):
            executable = core.load_network(network=net, device_name="CPU", num_requests=1)
            executable.requests[0].infer({name: data})  # 2021.4: the request needs its network alive
        return action

    real, faked = both(infer(np.zeros((1, 3, 224, 224), np.float64)))  # converted, as buffer[:] = data
    assert real is None and faked is None
    real, faked = both(infer(np.zeros((2, 3, 224, 224), np.float32)))
    assert real == faked and real[0] is ValueError

    real = _error(lambda: real_core.get_metric("CPU", "NOPE"))
    assert real == _error(lambda: fake_core.get_metric("CPU", "NOPE")) == (RuntimeError, "Unsupported metric key NOPE")
    missing = str(tmp_path / "missing.onnx")
    assert _error(lambda: real_core.read_network(model=missing)) == _error(
        lambda: fake_core.read_network(model=missing))
    ir = str(shared_path(*MOBILENET_IR))
    real = _error(lambda: real_core.read_network(model=ir, weights=ir[:-4] + ".bin"))
    assert real == _error(lambda: fake_core.read_network(model=ir, weights=ir[:-4] + ".bin"))
    assert real[0] is RuntimeError and real[1].startswith("Unknown model format!")


# --- the real 2021.4 on the CPU --------------------------------------------------------------
@real_only
def test_real_onnx_mobilenet_on_the_cpu():
    backend, info = load(str(shared_path(*MOBILENET_ONNX)), instances=0)
    assert info.input.dtype == np.float32 and info.input.shape == (3, 224, 224) and info.input.layout == "NCHW"
    assert info.output.shape == (1001,) and info.instances >= 1 and info.max_batch_size == 1
    batch = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    scores = backend.predict(batch)
    assert scores.shape == (1, 1001) and np.isfinite(scores).all()
    np.testing.assert_array_equal(backend.predict(batch[:, :, :, :]), scores)
    described = backend.describe()
    assert described["api"] == "IECore (2021.4)" and described["runtime"].startswith("openvino 2021.4.2-")
    assert backend.version() == described["runtime"]
    # what the executable graph runs: on a CPU without VNNI, 2021.4.2 runs this Q/DQ model's convolutions in FP32
    assert re.fullmatch(r"the model's own; conv/matmul layers: (\d+ in [A-Z0-9]+(, )?)+", described["precision"])


@real_only
def test_real_fp16_on_the_cpu_is_a_config_error():
    with pytest.raises(ConfigError, match="refuses fp16 input"):
        load(str(shared_path(*MOBILENET_ONNX)), precision="fp16")


@real_only
def test_real_shared_ir_is_too_new_in_one_line():
    with pytest.raises(ModelError) as caught:
        load(str(shared_path(*MOBILENET_IR)))
    assert "\n" not in str(caught.value) and caught.value.exit_code == 3
    assert "newer than the installed OpenVINO 2021.4.2 can read" in str(caught.value)


@real_only
def test_real_myriad_says_why_it_is_missing():
    with pytest.raises(BackendUnavailable) as caught:
        load(str(shared_path(*MOBILENET_ONNX)), device="MYRIAD")
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_code == 5
    assert "'MYRIAD' is not available (" in message
    assert "libusb" in message or "plugged in" in message  # the pip wheel has the plugin; it needs libusb


@real_only
def test_real_reference_accuracy():
    """Measured with benchmarks/openvino_reference_accuracy.py on 2021.4.2 (CPU): 78.077% (203/260)
    on a CPU without AVX512-VNNI, 78.462% (204/260) on one with it (AMD EPYC): the oracle, which
    shares no code with the harness, computes the same per CPU, so the figure is per ISA."""
    from tests.conftest import cpu_flags

    expected = ("accuracy=78.462%, good=204, total=260" if "avx512_vnni" in cpu_flags() else
                "accuracy=78.077%, good=203, total=260")
    imagenet = pytest.importorskip("datasets.imagenet")
    backend, info = load(str(shared_path(*MOBILENET_ONNX)), instances=1)
    dataset = imagenet.ImageNet(str(shared_path("data", "imagenet-mini")), None, {"preprocessing": "mobilenet"})
    dataset.scan()
    dataset.check_model(info)
    preprocess = dataset.preprocessor(info.input)
    predictions = {}
    for index, source in enumerate(dataset.sources):
        predictions[index] = dataset.postprocess(backend.predict(preprocess(source)[None], 0), info)[0]
    assert dataset.score(predictions).line() == expected
