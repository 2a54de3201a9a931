"""Edge TPU backend.

The missing-runtime error is checked for real (no libedgetpu here, so
``load_delegate`` raises OSError). Everything that needs a TPU runs with only
the delegate and interpreter faked at the runtime module's boundary
(tests/backends/fake_edgetpu.py); parsing, instance handling and reporting run
for real. Real-TPU checks are marked ``hardware``.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from backends import edgetpu
from backends.base import BackendOptions
from backends.edgetpu import EdgeTPUBackend
from sut.errors import BackendUnavailable, ConfigError
from tests.backends.concurrency import predict_per_instance
from tests.backends.fake_edgetpu import Recorder
from tests.conftest import shared_path

EDGETPU_MODEL = ("models", "mobilenet", "mobilenet_v1_0.25_128_quant_edgetpu.tflite")
CPU_MODEL = ("models", "mobilenet", "mobilenet_v1_0.25_128_quant.tflite")


@pytest.fixture
def fake(monkeypatch, runtime):
    return Recorder(monkeypatch, runtime)


def model(parts):
    return str(shared_path(*parts))


def load(parts, **options):
    backend = EdgeTPUBackend(BackendOptions(**options))
    return backend, backend.load(model(parts))


def image(value, shape=(1, 128, 128, 3)):
    return np.full(shape, value, np.uint8)


# --- for real: no Edge TPU runtime on this machine -------------------------------------
# ai_edge_litert's Delegate.__del__ trips over its own half-built object when the
# library fails to load (AttributeError '_library'); that is the runtime's noise, not ours.
RUNTIME_DEL_NOISE = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@RUNTIME_DEL_NOISE
def test_missing_runtime_is_unavailable_naming_library_and_device(runtime):
    try:
        runtime.load_delegate(edgetpu.default_library(), {"device": "usb"})
        pytest.skip("an Edge TPU runtime and device are present on this machine")
    except (OSError, ValueError):
        pass
    with pytest.raises(BackendUnavailable, match=r"'libedgetpu\.so\.1' for device 'usb'.*Edge TPU runtime"):
        load(EDGETPU_MODEL, device="usb")


@RUNTIME_DEL_NOISE
def test_delegate_library_option_is_used(runtime, tmp_path):
    missing = str(tmp_path / "libedgetpu-custom.so.1")
    with pytest.raises(BackendUnavailable, match="libedgetpu-custom.so.1"):
        load(EDGETPU_MODEL, device="usb:0", extra={"delegate_library": missing})


@pytest.mark.parametrize("system, library", [("Linux", "libedgetpu.so.1"), ("Darwin", "libedgetpu.1.dylib"),
                                             ("Windows", "edgetpu.dll")])
def test_library_per_platform(system, library):
    assert edgetpu.default_library(system) == library


def test_unknown_platform():
    with pytest.raises(BackendUnavailable, match="delegate_library"):
        edgetpu.default_library("Plan9")


@pytest.mark.parametrize("device, parsed", [
    (None, [None]), ("usb", ["usb"]), ("USB:1", ["usb:1"]), ("pci:0", ["pci:0"]), (":2", [":2"]),
    ("usb:0, usb:1,pci", ["usb:0", "usb:1", "pci"]),
])
def test_parse_devices(device, parsed):
    assert edgetpu.parse_devices(device, "libedgetpu.so.1") == parsed


@pytest.mark.parametrize("device", ["gpu", "usb:x", "usb:0,,usb:1", "tpu:0"])
def test_bad_devices_are_config_errors(device):
    with pytest.raises(ConfigError, match="usb:N"):
        edgetpu.parse_devices(device, "libedgetpu.so.1")


def test_a_device_listed_twice_is_refused():
    with pytest.raises(ConfigError, match="twice"):
        edgetpu.parse_devices("usb:0,USB:0", "libedgetpu.so.1")


def test_all_devices_needs_the_runtime():
    with pytest.raises(BackendUnavailable, match="device 'all'"):
        edgetpu.parse_devices("all", "libedgetpu-not-here.so.1")


def test_clock_variant_from_the_library_path():
    assert edgetpu.clock_variant("/opt/edgetpu_runtime/libedgetpu/direct/k8/libedgetpu.so.1") == "max"
    assert edgetpu.clock_variant("/opt/edgetpu_runtime/libedgetpu/throttled/k8/libedgetpu.so.1") == "std"
    assert edgetpu.clock_variant(None) in ("max", "std", "unknown")


# --- with the delegate and interpreter faked ---------------------------------------------
def test_one_interpreter_per_device(fake):
    backend, info = load(EDGETPU_MODEL, device="usb:0,usb:1,pci:0")
    assert info.instances == 3 and info.max_batch_size == 1
    assert [d.options for d in fake.delegates] == [{"device": "usb:0"}, {"device": "usb:1"}, {"device": "pci:0"}]
    assert all(d.library == "libedgetpu.so.1" for d in fake.delegates)
    assert [i.delegates for i in fake.interpreters] == [[d] for d in fake.delegates]
    assert info.input.dtype == np.uint8 and info.input.shape == (128, 128, 3)
    assert (info.input.scale, info.input.zero_point) == (0.0078125, 128)


def test_predict_goes_to_the_instance_tpu(fake):
    backend, info = load(EDGETPU_MODEL, device="usb:0,usb:1")
    assert int(np.argmax(backend.predict(image(7), instance=0))) == 7
    assert int(np.argmax(backend.predict(image(7), instance=1))) == 107
    assert [i.invocations for i in fake.interpreters] == [1, 1]


def test_instances_predict_concurrently(fake):
    backend, info = load(EDGETPU_MODEL, device="usb:0,usb:1,usb:2")
    outputs = predict_per_instance(backend, [image(k) for k in range(30)], info.instances)
    answers = [int(np.argmax(out)) for out in outputs]
    assert answers == [(k % 3) * 100 + k for k in range(30)]
    assert [i.invocations for i in fake.interpreters] == [10, 10, 10]


def test_default_device_lets_libedgetpu_choose(fake):
    backend, info = load(EDGETPU_MODEL)
    assert info.instances == 1 and fake.delegates[0].options == {}
    assert backend.describe()["devices"] == ["default"]


def test_absent_tpu_is_unavailable(fake):
    with pytest.raises(BackendUnavailable, match=r"device 'usb:5'.*Failed to load delegate"):
        load(EDGETPU_MODEL, device="usb:0,usb:5")


def test_instances_must_match_devices(fake):
    backend, info = load(EDGETPU_MODEL, device="usb:0,usb:1", instances=2)
    assert info.instances == 2
    with pytest.raises(ConfigError, match="one instance per TPU"):
        load(EDGETPU_MODEL, device="usb:0", instances=4)


def test_batches_are_one_sample(fake, caplog):
    with caplog.at_level(logging.WARNING, logger="backends.edgetpu"):
        _, info = load(EDGETPU_MODEL, device="usb", max_batch_size=8)
    assert info.max_batch_size == 1 and "one sample at a time" in caplog.text


def test_cpu_model_warns_that_nothing_runs_on_the_tpu(fake, caplog):
    with caplog.at_level(logging.WARNING, logger="backends.edgetpu"):
        backend, info = load(CPU_MODEL, device="usb")
    assert "nothing runs on the Edge TPU" in caplog.text and "edgetpu_compiler" in caplog.text
    assert int(np.argmax(backend.predict(image(3)))) == 3


def test_edgetpu_model_gives_no_warning(fake, caplog):
    with caplog.at_level(logging.WARNING, logger="backends.edgetpu"):
        load(EDGETPU_MODEL, device="usb")
    assert "nothing runs" not in caplog.text


def test_options_checked(fake):
    with pytest.raises(ConfigError, match="int8"):
        load(EDGETPU_MODEL, device="usb", precision="fp16")
    with pytest.raises(ConfigError, match="delegate_library"):
        load(EDGETPU_MODEL, device="usb", extra={"clock": "max"})


def test_describe(fake):
    backend, _ = load(EDGETPU_MODEL, device="usb:0,usb:1", threads=2)
    described = backend.describe()
    assert described["backend"] == "edgetpu" and described["runtime"].startswith(("litert", "tflite-runtime"))
    assert described["devices"] == ["usb:0", "usb:1"]
    assert described["delegate_library"] == "libedgetpu.so.1"  # not loaded in this process
    assert described["edgetpu_runtime"] == "unknown"
    assert described["clock"] in ("max", "std", "unknown")
    assert described["instances"] == 2 and described["threads"] == 2
    assert {i.num_threads for i in fake.interpreters} == {2}


def test_close_releases_interpreters_and_delegates(fake):
    backend, _ = load(EDGETPU_MODEL, device="usb:0,usb:1")
    backend.close()
    assert backend._runners == [] and backend._tpu_delegates == {}


def test_registry_finds_it():
    import backends

    assert backends.available()["edgetpu"] == "backends.edgetpu:EdgeTPUBackend"


# --- real hardware ----------------------------------------------------------------------
@pytest.mark.hardware
def test_real_tpu_top1_on_grace_hopper():
    if os.environ.get("EDGETPU_DEVICE") is None:
        pytest.skip("needs a Coral Edge TPU: set EDGETPU_DEVICE (e.g. usb:0) to run")
    backend, info = load(("models", "mobilenet", "mobilenet_v1_1.0_224_quant_edgetpu.tflite"),
                         device=os.environ["EDGETPU_DEVICE"])
    out = backend.predict(np.full((1, *info.input.shape), 128, np.uint8))
    assert out.shape == (1, 1001)
