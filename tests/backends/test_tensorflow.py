"""TensorFlow backend on the real runtime (tensorflow-cpu) and the shared KWS SavedModel."""

from __future__ import annotations

import numpy as np
import pytest

from backends.base import BackendOptions
from sut.errors import BackendUnavailable, ConfigError, ModelError
from tests.conftest import need_module, shared_path

KWS_CLIPS = 300
# /work/shared/README.md: kws_ref_model/ (SavedModel, TF 2.21 CPU) 93.000%; TF 2.15.1 CPU scores the same
# (through tf.saved_model.load and through the TF1 loader)
KWS_GOOD = 279
TF1_LOADER = "tf.compat.v1.saved_model.loader.load"


def make(**kwargs):
    from backends.tensorflow import TensorFlowBackend

    extra = kwargs.pop("extra", {})
    return TensorFlowBackend(BackendOptions(extra=extra, **kwargs))


def test_import_needs_only_numpy():
    import backends.tensorflow  # noqa: F401


@pytest.fixture(scope="module")
def tf():
    return need_module("tensorflow")


@pytest.fixture(scope="module")
def kws(tf):
    path = shared_path("models", "kws", "kws_ref_model")
    backend = make(max_batch_size=32)
    info = backend.load(str(path))
    yield backend, info, path
    backend.close()


@pytest.fixture(scope="module")
def tf2_reads_kws(tf):
    """Whether this TensorFlow's own tf.saved_model.load restores the KWS SavedModel, asked of TF directly.

    TF 2.15 does (its Keras 2 revives the saved optimizer); TF 2.16+ does not
    ('_UserObject' object has no attribute 'add_slot'), so the backend falls back to the TF1 loader.
    """
    path = shared_path("models", "kws", "kws_ref_model")
    try:
        tf.saved_model.load(str(path))
    except AttributeError as exc:
        assert "add_slot" in str(exc)
        return False
    return True


@pytest.fixture(scope="module")
def kws_inputs():
    from datasets.speech_commands import SpeechCommands

    dataset = SpeechCommands(str(shared_path("data", "speech-commands-mini")), None, {})
    dataset.scan()
    return dataset


def test_kws_saved_model_loader(kws, tf2_reads_kws):
    """tf.saved_model.load where this TensorFlow can restore the model, else the TF1 loader."""
    backend, info, _ = kws
    assert backend.loaded_with == ("tf.saved_model.load" if tf2_reads_kws else TF1_LOADER)
    assert info.input.name == "input_1" and info.input.shape == (49, 10, 1)
    assert info.input.dtype == np.float32 and not info.input.quantized
    assert info.output.name == "dense" and info.output.shape == (12,)
    assert info.max_batch_size == 32 and info.batch_sizes is None and info.instances == 1
    out = backend.predict(np.zeros((3, 49, 10, 1), np.float32))
    assert out.shape == (3, 12) and out.dtype == np.float32
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-5)  # softmax head
    assert backend.describe()["runtime"].startswith("tensorflow 2.")


def test_kws_accuracy_on_speech_commands_mini(kws, kws_inputs):
    """All 300 clips through the project's MFCC front end: exactly the reference 279/300."""
    backend, info, _ = kws
    dataset = kws_inputs
    dataset.check_model(info)
    assert len(dataset) == KWS_CLIPS
    inputs = dataset.preprocessor(info.input).batch(dataset.sources)
    assert inputs.shape == (KWS_CLIPS, 49, 10, 1) and inputs.dtype == np.float32
    outputs = np.concatenate([backend.predict(inputs[i:i + 32]) for i in range(0, KWS_CLIPS, 32)])
    responses = dataset.postprocess(outputs, info)
    accuracy = dataset.score({i: r for i, r in enumerate(responses)})
    assert (accuracy.good, accuracy.total) == (KWS_GOOD, KWS_CLIPS)
    assert accuracy.line() == "accuracy=93.000%, good=279, total=300"


def test_forced_loaders(kws, kws_inputs, tf2_reads_kws):
    """loader=tf2 is a ModelError where TF cannot restore the model; where it can, both loaders agree on every clip."""
    backend, info, path = kws
    if not tf2_reads_kws:
        with pytest.raises(ModelError, match="tf.saved_model.load cannot load .*add_slot"):
            make(extra={"loader": "tf2"}).load(str(path))
        return
    assert backend.loaded_with == "tf.saved_model.load"
    tf1 = make(max_batch_size=32, extra={"loader": "tf1"})
    tf1_info = tf1.load(str(path))
    assert tf1.loaded_with == TF1_LOADER
    assert (tf1_info.input, tf1_info.output) == (info.input, info.output)
    inputs = kws_inputs.preprocessor(info.input).batch(kws_inputs.sources)
    ours = np.concatenate([backend.predict(inputs[i:i + 32]) for i in range(0, KWS_CLIPS, 32)])
    theirs = np.concatenate([tf1.predict(inputs[i:i + 32]) for i in range(0, KWS_CLIPS, 32)])
    tf1.close()
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)
    assert (theirs.argmax(axis=1) == ours.argmax(axis=1)).all()


def test_unknown_signature(kws):
    _, _, path = kws
    with pytest.raises(ModelError, match="no signature 'predict'; it has: serving_default"):
        make(extra={"loader": "tf1", "signature": "predict"}).load(str(path))


def test_frozen_graph_matches_saved_model(kws, tf, tmp_path):
    backend, _, path = kws
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], str(path))
        output_op = meta.signature_def["serving_default"].outputs["dense"].name.split(":")[0]
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), [output_op])
    pb = tmp_path / "kws_frozen.pb"
    pb.write_bytes(frozen.SerializeToString())
    x = np.random.default_rng(0).uniform(-30, 30, (4, 49, 10, 1)).astype(np.float32)
    frozen_backend = make(max_batch_size=4)
    info = frozen_backend.load(str(pb))
    assert info.input.name == "serving_default_input_1:0" and info.input.shape == (49, 10, 1)
    assert info.output.shape == (12,)
    np.testing.assert_allclose(frozen_backend.predict(x), backend.predict(x), rtol=1e-5, atol=1e-6)
    frozen_backend.close()


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_file(tf, tmp_path, suffix):
    """A file written by this TensorFlow's own tf.keras (Keras 2 up to TF 2.15, Keras 3 from 2.16)."""
    keras = tf.keras
    inputs = keras.Input((6, 6, 3))
    hidden = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    outputs = keras.layers.Dense(5)(keras.layers.Flatten()(hidden))
    model = keras.Model(inputs, outputs)
    path = tmp_path / f"tiny{suffix}"
    model.save(str(path))
    backend = make(max_batch_size=8)
    info = backend.load(str(path))
    assert info.input.shape == (6, 6, 3) and info.input.layout == "NHWC" and info.output.shape == (5,)
    assert info.max_batch_size == 8
    assert info.input.dtype == np.float32 and info.output.dtype == np.float32
    x = np.random.default_rng(1).standard_normal((3, 6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(backend.predict(x), model(x, training=False).numpy(), rtol=1e-5, atol=1e-6)
    backend.close()


def test_keras_file_from_the_other_keras(tf, tmp_path):
    """A .keras file recorded as written by the other Keras major version: the error names both versions."""
    import zipfile

    from backends.tensorflow import _installed_keras_version

    installed = _installed_keras_version(tf)
    assert installed and installed.split(".")[0] in ("2", "3")
    other = "2.15.0" if installed.startswith("3") else "3.15.1"
    path = tmp_path / "other.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", '{"keras_version": "%s"}' % other)
        archive.writestr("config.json", "{}")
    fix = "or use TensorFlow 2.15" if other.startswith("2") else "use TensorFlow 2.16 or newer"
    with pytest.raises(ModelError) as caught:
        make().load(str(path))
    message = str(caught.value)
    assert f"written by Keras {other} and TensorFlow {tf.__version__} reads it with Keras {installed}" in message
    assert fix in message and "\n" not in message


def test_fp16_on_cpu_is_refused_up_front(kws):
    """Auto mixed precision rewrites graphs for NVIDIA GPUs only: on this CPU-only TensorFlow fp16
    would run float32, so it is refused (the harness asks check_precision before any run)."""
    _, _, path = kws
    backend = make(precision="fp16", extra={"loader": "tf1"})
    with pytest.raises(ConfigError, match=r"cannot apply precision fp16: TensorFlow \S+ sees no GPU, and auto "
                                          r"mixed precision .* applies nothing on a CPU; choose fp32") as exc:
        backend.check_precision("fp16", str(path))
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="cannot apply precision fp16"):
        backend.load(str(path))
    assert backend._runner is None


def test_precision_recorded_is_what_ran(kws):
    backend, _, path = kws
    assert backend.describe()["precision"] == "the model's own"
    fp32 = make(precision="fp32", extra={"loader": "tf1"})
    fp32.load(str(path))
    assert fp32.describe()["precision"] == "fp32 (the model as saved)"
    fp32.close()


def test_option_errors(tf, tmp_path):
    path = str(shared_path("models", "kws", "kws_ref_model"))
    with pytest.raises(ConfigError, match="no option tftrt; accepted: signature"):
        make(extra={"tftrt": True}).load(path)
    with pytest.raises(ConfigError, match="int8 only through TF-TRT .*use onnxruntime or openvino"):
        make(precision="int8").load(path)
    with pytest.raises(ConfigError, match="cannot apply precision int8: TF-TRT .* needs TensorFlow built with "
                                          "TensorRT, and TensorFlow .* here is not"):
        make(precision="int8", extra={"tf_trt": True}).check_precision("int8", path)
    with pytest.raises(ConfigError, match="converts SavedModel directories only"):
        make(extra={"tf_trt": True}).check_precision("int8", str(tmp_path / "m.keras"))
    with pytest.raises(ConfigError, match="cannot apply precision bf16 .*it can apply fp32, fp16, int8"):
        make().check_precision("bf16", path)
    with pytest.raises(ConfigError, match="loader='tf3'"):
        make(extra={"loader": "tf3"}).load(path)
    with pytest.raises(BackendUnavailable, match="option tf_trt needs TensorFlow built with TensorRT"):
        make(extra={"tf_trt": True}).load(path)
    with pytest.raises(BackendUnavailable, match="device 'GPU:0' is not present"):
        make(device="GPU:0").load(path)


def test_model_errors(tmp_path):
    with pytest.raises(ModelError, match="model not found"):
        make().load(str(tmp_path / "missing"))
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"x")
    with pytest.raises(ModelError, match="expected a SavedModel directory or a file ending in .keras, .h5 or .pb"):
        make().load(str(tflite))
    with pytest.raises(ModelError, match="without saved_model.pb"):
        make().load(str(tmp_path))


def test_bad_frozen_graph(tf, tmp_path):
    pb = tmp_path / "bad.pb"
    pb.write_bytes(b"\xff\xff not a graph")
    with pytest.raises(ModelError, match="not a frozen TensorFlow GraphDef"):
        make().load(str(pb))


# --- TF-TRT: the converter stands in for TensorRT on a GPU (neither exists here) --------------------

class _StandInConverter:
    """Takes TrtGraphConverterV2's arguments (checked against the real class below), runs the
    calibration function as TF-TRT would, and saves the SavedModel unchanged."""

    made: list = []

    def __init__(self, **kwargs):
        self.kwargs, self.calibration = kwargs, []
        _StandInConverter.made.append(self)

    def convert(self, calibration_input_fn=None):
        if calibration_input_fn is not None:
            for inputs in calibration_input_fn():
                assert isinstance(inputs, tuple) and len(inputs) == 1
                self.calibration.append((tuple(inputs[0].shape), inputs[0].dtype.name))

    def save(self, output_saved_model_dir):
        import shutil

        shutil.copytree(self.kwargs["input_saved_model_dir"], output_saved_model_dir, dirs_exist_ok=True)


@pytest.fixture
def tf_trt_stand_in(tf, monkeypatch):
    """A TensorRT build of TensorFlow with one GPU of compute capability 8.0, as far as the backend asks."""
    import inspect

    from tensorflow.python.compiler import tensorrt as package
    from tensorflow.python.compiler.tensorrt import trt_convert

    real = trt_convert.TrtGraphConverterV2
    ours = {"input_saved_model_dir", "input_saved_model_signature_key", "precision_mode", "use_calibration"}
    assert ours <= set(inspect.signature(real.__init__).parameters)
    assert "calibration_input_fn" in inspect.signature(real.convert).parameters
    stand_in = type("trt_convert", (), {"TrtGraphConverterV2": _StandInConverter,
                                        "TrtPrecisionMode": trt_convert.TrtPrecisionMode})
    monkeypatch.setattr(package, "trt_convert", stand_in)
    gpu = tf.config.PhysicalDevice("/physical_device:GPU:0", "GPU")
    physical = tf.config.list_physical_devices
    monkeypatch.setattr(tf.config, "list_physical_devices",
                        lambda kind=None: [gpu] if kind == "GPU" else physical(kind))
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda d: {"compute_capability": (8, 0)})
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda d, on: None)
    build = dict(tf.sysconfig.get_build_info(), is_tensorrt_build=True)
    monkeypatch.setattr(tf.sysconfig, "get_build_info", lambda: build)
    _StandInConverter.made = []
    return _StandInConverter.made


def test_tf_trt_int8_calibrates_on_the_harness_samples(kws, tf_trt_stand_in, tmp_path):
    reference, _, path = kws
    asked = []

    def calibration(spec):
        asked.append(spec)
        return [np.full((3, *spec.shape), 0.5, spec.dtype), np.zeros((2, *spec.shape), spec.dtype)]

    backend = make(precision="int8", calibration=calibration,
                   extra={"tf_trt": True, "tf_trt_dir": str(tmp_path / "trt"), "loader": "tf1"})
    backend.check_precision("int8", str(path))
    backend.load(str(path))
    (converter,) = tf_trt_stand_in
    assert converter.kwargs == {"input_saved_model_dir": str(path), "precision_mode": "INT8", "use_calibration": True,
                                "input_saved_model_signature_key": "serving_default"}
    assert [(s.shape, s.dtype) for s in asked] == [((49, 10, 1), np.dtype(np.float32))]
    assert converter.calibration == [((3, 49, 10, 1), "float32"), ((2, 49, 10, 1), "float32")]
    assert backend.describe()["precision"] == "int8 (TF-TRT precision mode INT8, calibrated by TF-TRT on 5 samples)"
    x = np.ones((1, 49, 10, 1), np.float32)
    np.testing.assert_allclose(backend.predict(x), reference.predict(x), rtol=1e-6)  # the stand-in changes nothing
    backend.close()


def test_tf_trt_fp16_and_missing_calibration(kws, tf_trt_stand_in, tmp_path):
    _, _, path = kws
    backend = make(precision="fp16", extra={"tf_trt": True, "tf_trt_dir": str(tmp_path / "trt"), "loader": "tf1"})
    backend.check_precision("fp16", str(path))
    backend.load(str(path))
    kwargs = tf_trt_stand_in[-1].kwargs
    assert kwargs["precision_mode"] == "FP16" and not kwargs["use_calibration"]
    assert backend.describe()["precision"] == "fp16 (TF-TRT precision mode FP16)"
    backend.close()
    with pytest.raises(ConfigError, match="int8 with TF-TRT needs calibration samples"):
        make(precision="int8", extra={"tf_trt": True, "loader": "tf1"}).load(str(path))
    with pytest.raises(ConfigError, match="device 'CPU:0' is a CPU"):
        make(precision="fp16", device="CPU:0").check_precision("fp16", str(path))


def test_fp16_needs_compute_capability_7(kws, tf_trt_stand_in, monkeypatch, tf):
    _, _, path = kws
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda d: {"compute_capability": (6, 1)})
    with pytest.raises(ConfigError, match="GPU /physical_device:GPU:0 has compute capability 6.1; auto mixed "
                                          "precision needs 7.0"):
        make(precision="fp16").check_precision("fp16", str(path))
