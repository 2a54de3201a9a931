"""LiteRT backend on the shared .tflite models, with the real runtime."""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pytest

import backends
from backends import litert
from backends.base import BackendOptions
from backends.litert import LiteRTBackend
from sut.errors import BackendFailure, BackendUnavailable, ConfigError, ModelError
from tests.backends.concurrency import predict_per_instance
from tests.conftest import shared_path

RUNTIME_MODULES = ("ai_edge_litert", "ai_edge_litert.interpreter",
                   "tflite_runtime", "tflite_runtime.interpreter")


def model(*parts):
    return str(shared_path("models", *parts))


def load(path, **options):
    backend = LiteRTBackend(BackendOptions(**options))
    backend.load(path)
    return backend


def random_batch(spec, n, seed=0):
    rng = np.random.default_rng(seed)
    if spec.dtype.kind == "f":
        return rng.uniform(-1, 1, (n, *spec.shape)).astype(spec.dtype)
    info = np.iinfo(spec.dtype)
    return rng.integers(info.min, info.max + 1, (n, *spec.shape), dtype=spec.dtype)


def assert_quantisation(spec, quant):
    scale, zero_point = quant
    if scale is None:
        assert (spec.scale, spec.zero_point) == (None, None)
    else:
        assert spec.scale == pytest.approx(scale, rel=1e-7) and spec.zero_point == zero_point


# file, input (shape, dtype, (scale, zero point), layout), output (shape, dtype, (scale, zero point))
MODELS = [
    (("mobilenet", "mobilenet_v1_1.0_224_quant.tflite"), (224, 224, 3), np.uint8, (0.0078125, 128),
     "NHWC", (1001,), np.uint8, (1 / 256, 0)),
    (("mobilenet", "mobilenet_v1_0.25_128_quant.tflite"), (128, 128, 3), np.uint8, (0.0078125, 128),
     "NHWC", (1001,), np.uint8, (1 / 256, 0)),
    (("kws", "kws_ref_model.tflite"), (49, 10, 1), np.int8, (0.5847029089927673, 83),
     None, (12,), np.int8, (1 / 256, -128)),
    (("kws", "kws_ref_model_float32.tflite"), (49, 10, 1), np.float32, (None, None),
     None, (12,), np.float32, (None, None)),
]


@pytest.mark.parametrize("parts, shape, dtype, quant, layout, out_shape, out_dtype, out_quant", MODELS,
                         ids=[m[0][1] for m in MODELS])
def test_model_info_and_predict(runtime, parts, shape, dtype, quant, layout, out_shape, out_dtype, out_quant):
    with load(model(*parts)) as backend:
        info = backend.info
        assert (info.input.shape, info.input.dtype, info.input.layout) == (shape, np.dtype(dtype), layout)
        assert_quantisation(info.input, quant)
        assert (info.output.shape, info.output.dtype) == (out_shape, np.dtype(out_dtype))
        assert_quantisation(info.output, out_quant)
        assert (info.batch_sizes, info.max_batch_size, info.instances) == ((1,), 1, 1)
        out = backend.predict(random_batch(info.input, 1), 0)
        assert out.shape == (1, *out_shape) and out.dtype == np.dtype(out_dtype)


def test_cat_is_egyptian_cat(runtime):
    from PIL import Image

    image = Image.open(shared_path("data", "images-misc", "cat.bmp")).convert("RGB")
    pixels = np.asarray(image.resize((224, 224), Image.BILINEAR), dtype=np.uint8)
    with load(model("mobilenet", "mobilenet_v1_1.0_224_quant.tflite")) as backend:
        scores = backend.predict(pixels[None], 0)[0]
    assert int(np.argmax(scores)) == 286  # Egyptian cat, 1001-class index


def test_output_is_not_the_interpreters_buffer(runtime):
    with load(model("kws", "kws_ref_model_float32.tflite")) as backend:
        spec = backend.info.input
        first = backend.predict(random_batch(spec, 1, seed=1), 0)
        kept = first.copy()
        second = backend.predict(random_batch(spec, 1, seed=2), 0)
        assert not np.array_equal(first, second)
        np.testing.assert_array_equal(first, kept)


def test_edgetpu_model_asks_for_edgetpu_backend(runtime):
    path = model("mobilenet", "mobilenet_v1_1.0_224_quant_edgetpu.tflite")
    with pytest.raises(ModelError, match="Edge TPU") as err:
        load(path)
    assert path in str(err.value) and "--backend edgetpu" in str(err.value)


def test_text_file_named_tflite(runtime, tmp_path):
    path = tmp_path / "notes.tflite"
    path.write_text("this is not a model\n")
    with pytest.raises(ModelError, match="not a TFLite model") as err:
        load(str(path))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("dropped", [4, 36000], ids=["runtime-detects", "reader-detects"])
def test_truncated_model(runtime, tmp_path, dropped):
    data = shared_path("models", "kws", "kws_ref_model.tflite").read_bytes()
    path = tmp_path / "truncated.tflite"
    path.write_bytes(data[:-dropped])
    with pytest.raises(ModelError, match="truncated.tflite"):
        load(str(path))


def test_missing_and_wrong_suffix(runtime, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load(str(tmp_path / "absent.tflite"))
    onnx = model("mobilenet", "mobilenet_v1_1.0_224_quant_qdq_nchw.onnx")
    with pytest.raises(ModelError, match=r"\.tflite"):
        load(onnx)
    with pytest.raises(ModelError, match="--model"):
        load(None)


def test_instances_agree_with_single_instance(runtime):
    path = model("mobilenet", "mobilenet_v1_0.25_128_quant.tflite")
    with load(path) as single, load(path, instances=3, threads=1) as multi:
        assert multi.info.instances == 3 and multi.describe()["instances"] == 3
        assert multi.describe()["threads"] == 1
        batches = [random_batch(single.info.input, 1, seed=s) for s in range(3)]
        expected = [single.predict(b, 0) for b in batches]
        results = predict_per_instance(multi, batches, 3, repeats=5)
        for got, want in zip(results, expected):
            np.testing.assert_array_equal(got, want)


def test_predict_each_matches_predict_per_sample(runtime):
    path = model("mobilenet", "mobilenet_v1_0.25_128_quant.tflite")
    with load(path, instances=2, threads=1) as backend:
        batch = random_batch(backend.info.input, 5)
        samples = [batch[i:i + 1] for i in range(5)]
        expected = np.concatenate([backend.predict(s, 0) for s in samples])
        for instance in (0, 1):
            got = backend.predict_each(samples, instance)
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)


def test_predict_each_refuses_what_predict_refuses(runtime):
    with load(model("kws", "kws_ref_model.tflite")) as backend:
        batch = random_batch(backend.info.input, 2)
        with pytest.raises(BackendFailure, match="instance 1"):
            backend.predict_each([batch[:1]], 1)
        with pytest.raises(BackendFailure, match="batch size 2"):
            backend.predict_each([batch[:1], batch], 0)


def test_predict_each_goes_through_a_subclass_predict_impl(runtime):
    class Shifted(LiteRTBackend):  # a plugin that changes the answers (tests/submission does)
        def predict_impl(self, batch, instance):
            return super().predict_impl(batch, instance) + 1

    path = model("kws", "kws_ref_model_float32.tflite")
    with load(path) as plain, Shifted(BackendOptions()) as shifted:
        shifted.load(path)
        batch = random_batch(plain.info.input, 3)
        samples = [batch[i:i + 1] for i in range(3)]
        np.testing.assert_array_equal(shifted.predict_each(samples), plain.predict_each(samples) + 1)


def test_resizable_batch(runtime):
    path = model("kws", "kws_ref_model.tflite")  # batch dimension -1 in its signature
    with load(path, max_batch_size=4, instances=2) as backend:
        info = backend.info
        assert (info.batch_sizes, info.max_batch_size) == ((1, 4), 4)
        assert info.split_batch(6) == [4, 1, 1]
        batch = random_batch(info.input, 4)
        together = backend.predict(batch, 1)
        one_by_one = np.concatenate([backend.predict(batch[i:i + 1], 0) for i in range(4)])
        np.testing.assert_array_equal(together, one_by_one)
        with pytest.raises(BackendFailure, match="batch size 3"):
            backend.predict(batch[:3], 0)


def test_fixed_batch_falls_back_to_one(runtime, caplog):
    path = model("mobilenet", "mobilenet_v1_0.25_128_quant.tflite")
    with caplog.at_level(logging.WARNING, logger="backends.litert"):
        with load(path, max_batch_size=8) as backend:
            assert (backend.info.batch_sizes, backend.info.max_batch_size) == ((1,), 1)
    assert "batch size 8" in caplog.text and "using batch size 1" in caplog.text


def test_cpu_backend_refuses_device_and_precision(runtime):
    path = model("kws", "kws_ref_model.tflite")
    with pytest.raises(ConfigError, match="usb:0"):
        load(path, device="usb:0")
    with pytest.raises(ConfigError, match="fp16"):
        load(path, precision="fp16")


def test_version_and_describe(runtime):
    backend = LiteRTBackend()
    assert backend.version().startswith(("litert ", "tflite-runtime "))
    assert backend.describe()["backend"] == "litert"


def test_subclass_delegates_reach_the_interpreter(runtime, monkeypatch):
    """The hook the Edge TPU backend uses: _delegates(instance) -> experimental_delegates."""
    seen = []

    class Recording(runtime.Interpreter):
        def __init__(self, **kwargs):
            seen.append(dict(kwargs))
            kwargs.pop("experimental_delegates", None)  # the CPU runtime has no such device
            super().__init__(**kwargs)

    class WithDelegate(LiteRTBackend):
        def _delegates(self, instance):
            return [f"delegate-{instance}"]

    backend = WithDelegate(BackendOptions(instances=2, threads=1))
    monkeypatch.setattr(backend, "_runtime", types.SimpleNamespace(Interpreter=Recording))
    backend.load(model("kws", "kws_ref_model.tflite"))
    assert [k["experimental_delegates"] for k in seen] == [["delegate-0"], ["delegate-1"]]
    assert all(k["num_threads"] == 1 for k in seen)


def test_missing_runtime_is_backend_unavailable(monkeypatch):
    for name in RUNTIME_MODULES:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(BackendUnavailable, match=r"ai_edge_litert.*pip install -e '\.\[litert\]'"):
        backends.create("litert")


def only_tflite_runtime(monkeypatch, version, interpreter):
    """Make ``tflite_runtime`` (at ``version``, with ``interpreter``) the only LiteRT package present."""
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime", types.SimpleNamespace(__version__=version))
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", interpreter)


def test_falls_back_to_tflite_runtime(runtime, monkeypatch):
    """With only tflite_runtime present (here: the same interpreter under that name; the real
    tflite-runtime runs in the CI jobs .ci/compat/py38.sh and py39-tflite-runtime.sh)."""
    only_tflite_runtime(monkeypatch, "2.14.0", runtime)
    monkeypatch.setattr(litert, "RUNTIMES", tuple(r._replace(numpy1_only=False) for r in litert.RUNTIMES))
    with load(model("kws", "kws_ref_model.tflite")) as backend:
        assert backend.version() == "tflite-runtime 2.14.0"
        assert backend.predict(random_batch(backend.info.input, 1), 0).shape == (1, 12)


def test_runtime_below_its_floor_is_one_line_exit_5(runtime, monkeypatch):
    only_tflite_runtime(monkeypatch, "2.4.1", runtime)
    monkeypatch.setattr(litert.np, "__version__", "1.26.4")
    with pytest.raises(BackendUnavailable, match=r"^backend 'litert' needs tflite-runtime 2\.5 or newer, and "
                                                 r"2\.4\.1 is installed; pip install -U 'tflite-runtime>=2\.5'$") as err:
        backends.create("litert")
    assert err.value.exit_code == 5


def test_tflite_runtime_under_numpy_2_is_one_line(runtime, monkeypatch):
    """tflite-runtime wheels are NumPy 1.x builds: importing one under NumPy 2 prints a traceback."""
    only_tflite_runtime(monkeypatch, "2.14.0", runtime)
    monkeypatch.setattr(litert.np, "__version__", "2.0.2")
    with pytest.raises(BackendUnavailable, match=r"tflite-runtime .* is built for NumPy 1\.x and cannot run with "
                                                 r"NumPy 2\.0\.2; pip install 'numpy<2'"):
        backends.create("litert")


def test_real_runtime_is_named_in_version(runtime):
    """Whichever LiteRT package is installed (ai-edge-litert, or tflite-runtime on Python 3.8), for real."""
    _, version = litert.import_runtime("litert", "litert")
    label, number = version.split(" ")
    expected = "litert" if litert._present("ai_edge_litert") else "tflite-runtime"
    assert label == expected and number[0].isdigit()
