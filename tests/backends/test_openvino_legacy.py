"""The OpenVINO 2021.4 (IECore / NCS2 MYRIAD) path, with ``openvino.inference_engine`` faked.

No NCS2 and no Python <= 3.9 here, so the runtime module is replaced by
tests/backends/fake_openvino_legacy.py; everything above it runs for real.
"""

from __future__ import annotations

import numpy as np
import pytest

from backends.base import BackendOptions
from backends.openvino import OpenVINOBackend
from sut.errors import BackendUnavailable, ConfigError, ModelError
from tests.backends import fake_openvino_legacy as fake


@pytest.fixture
def ie(monkeypatch):
    return fake.install(monkeypatch)


@pytest.fixture
def ir_model(tmp_path):
    xml = tmp_path / "model.xml"
    xml.write_text("<net/>")
    (tmp_path / "model.bin").write_bytes(b"\0")
    return str(xml)


def load(ir_model, **options):
    backend = OpenVINOBackend(BackendOptions(**options))
    return backend, backend.load(ir_model)


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


def test_cpu_keeps_fp32_unless_fp16_asked(ie, ir_model):
    _, info = load(ir_model, device="CPU", threads=3)
    assert info.input.dtype == np.float32
    assert fake.IECore.created[-1].loads[0]["config"] == {"CPU_THREADS_NUM": "3"}
    _, info = load(ir_model, device="CPU", precision="fp16")
    assert info.input.dtype == np.float16


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


def test_missing_myriad_is_unavailable(ie, ir_model, monkeypatch):
    monkeypatch.setattr(fake.IECore, "available_devices_default", ["CPU"])
    with pytest.raises(BackendUnavailable, match=r"'MYRIAD' is not available.*NCS2.*this machine has: CPU"):
        load(ir_model, device="MYRIAD")


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
