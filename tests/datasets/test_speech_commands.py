"""datasets.speech_commands: layouts, model checks, preprocessing and the reference accuracy."""

from __future__ import annotations

import pickle
import shutil
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import datasets
from backends.base import ModelInfo, TensorSpec
from datasets import cache
from datasets.speech_commands import LABELS, MfccPreprocessor, SpeechCommands
from datasets.wav import read_wav
from sut.errors import ConfigError, DatasetError, ModelError
from tests.conftest import need_module, runtime_figure, shared_path

INT8_SPEC = TensorSpec("input_1", (49, 10, 1), np.int8, scale=0.5847029, zero_point=83)
FLOAT_SPEC = TensorSpec("input_1", (49, 10, 1), np.float32)
OUTPUT = TensorSpec("Identity", (12,), np.int8, scale=1 / 256, zero_point=-128)


def mini() -> str:
    return str(shared_path("data", "speech-commands-mini"))


def scanned(path=None, **options) -> SpeechCommands:
    dataset = SpeechCommands(path or mini(), options=options)
    dataset.scan()
    return dataset


def info(spec=INT8_SPEC, out=OUTPUT) -> ModelInfo:
    return ModelInfo(inputs=(spec,), outputs=(out,))


# --- index -------------------------------------------------------------------
def test_registered_under_its_name():
    assert isinstance(datasets.create("speech_commands", "somewhere"), SpeechCommands)


def test_test_set_layout_is_dealt_round_robin_over_labels():
    dataset = scanned()
    assert len(dataset) == 300 and Counter(dataset.labels) == {i: 25 for i in range(12)}
    assert dataset.labels[:24] == list(range(12)) * 2
    for source, label in zip(dataset.sources, dataset.labels):
        assert Path(source).parent.name == LABELS[label]
    for label in range(12):
        files = [s for s, lab in zip(dataset.sources, dataset.labels) if lab == label]
        assert files == sorted(files)


def test_count_takes_a_balanced_prefix():
    dataset = SpeechCommands(mini(), count=24)
    dataset.scan()
    assert Counter(dataset.labels) == {i: 2 for i in range(12)}


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="layout='flat'; accepted: auto, test_set, full"):
        SpeechCommands(mini(), options={"layout": "flat"})
    with pytest.raises(ConfigError, match="quantization='floor'; accepted: truncate, round"):
        SpeechCommands(mini(), options={"quantization": "floor"})
    with pytest.raises(ConfigError, match="has no option resample"):
        SpeechCommands(mini(), options={"resample": True})


def test_missing_folder_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        scanned(str(tmp_path / "nowhere"))


def test_missing_label_folders_are_named(tmp_path):
    for label in LABELS[:5]:
        (tmp_path / label).mkdir()
    with pytest.raises(DatasetError, match=r"lacks the label folder\(s\) on, right, stop, up, yes, _silence_"):
        scanned(str(tmp_path))


def test_empty_label_folder_is_a_dataset_error(tmp_path):
    for label in LABELS:
        (tmp_path / label).mkdir()
        if label != "up":
            shutil.copy(next(Path(mini(), label).glob("*.wav")), tmp_path / label)
    with pytest.raises(DatasetError, match=r"no \.wav files in .*up"):
        scanned(str(tmp_path))


# --- full dataset layout --------------------------------------------------------
@pytest.fixture
def full_tree(tmp_path):
    """A miniature Speech Commands v0.02: word folders, testing_list.txt, background noise."""
    root = tmp_path / "speech_commands_v0.02"
    source = Path(mini())
    listed = []
    for word, origin in (("yes", "yes"), ("no", "no"), ("stop", "stop")):
        (root / word).mkdir(parents=True)
        for wav in sorted((source / origin).glob("*.wav"))[:3]:
            shutil.copy(wav, root / word / wav.name)
        listed += [f"{word}/{p.name}" for p in sorted((root / word).iterdir())[:2]]  # third one is training data
    for word in ("backward", "bed"):
        (root / word).mkdir()
        for i, wav in enumerate(sorted((source / "_unknown_").glob(f"{word}_*.wav"))[:2]):
            shutil.copy(wav, root / word / f"{word}{i}_nohash_0.wav")
            listed.append(f"{word}/{word}{i}_nohash_0.wav")
    (root / "testing_list.txt").write_text("\n".join(listed) + "\n")
    noise = np.concatenate([read_wav(str(p)) for p in sorted((source / "_silence_").glob("*.wav"))[:4]])
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "pink_noise.wav", noise[:int(2.5 * 16000)])  # 2 clips
    write_wav(root / "_background_noise_" / "white_noise.wav", noise[16000:])  # 3 clips
    (root / "_background_noise_" / "README.md").write_text("not audio")
    return root, tmp_path / "silence"


def write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.astype("<i2").tobytes())


def test_full_layout(full_tree):
    root, silence_dir = full_tree
    dataset = scanned(str(root), silence_dir=str(silence_dir))
    by_label = Counter(LABELS[label] for label in dataset.labels)
    assert by_label == {"yes": 2, "no": 2, "stop": 2, "_unknown_": 4, "_silence_": 5}
    assert sorted((root / "yes").iterdir())[2].as_posix() not in dataset.sources  # not in testing_list.txt
    unknown = [s for s, lab in zip(dataset.sources, dataset.labels) if LABELS[lab] == "_unknown_"]
    assert {Path(s).parent.name for s in unknown} == {"backward", "bed"}
    silence = [s for s, lab in zip(dataset.sources, dataset.labels) if LABELS[lab] == "_silence_"]
    assert all(s.startswith(str(silence_dir)) for s in silence)
    noise = read_wav(str(root / "_background_noise_" / "white_noise.wav"))
    whites = sorted(s for s in silence if "white_noise" in s)
    assert len(whites) == 3
    np.testing.assert_array_equal(read_wav(whites[1]), noise[16000:32000])


def test_full_layout_is_deterministic_and_reuses_its_silence_clips(full_tree):
    root, silence_dir = full_tree
    first = scanned(str(root), silence_dir=str(silence_dir))
    mtimes = [Path(s).stat().st_mtime_ns for s in first.sources]
    second = scanned(str(root), silence_dir=str(silence_dir), layout="full")
    assert (second.sources, second.labels) == (first.sources, first.labels)
    assert [Path(s).stat().st_mtime_ns for s in second.sources] == mtimes


def test_full_layout_errors(full_tree):
    root, silence_dir = full_tree
    with pytest.raises(DatasetError, match="_background_noise_ is there: for the full dataset, testing_list.txt"):
        scanned(str(root), layout="test_set")
    with (root / "testing_list.txt").open("a") as f:
        f.write("left/missing_nohash_0.wav\n")
    with pytest.raises(DatasetError, match=r"testing_list.txt line 11 lists left/missing_nohash_0.wav, which is not in"):
        scanned(str(root), silence_dir=str(silence_dir))
    (root / "testing_list.txt").write_text("yes/" + next((root / "yes").iterdir()).name + "\n")
    shutil.rmtree(root / "_background_noise_")
    with pytest.raises(DatasetError, match="no silence clips"):
        scanned(str(root), silence_dir=str(silence_dir))


def test_testing_list_duplicates_and_bad_bytes_are_dataset_errors(full_tree):
    root, silence_dir = full_tree
    listed = (root / "testing_list.txt").read_text().splitlines()
    (root / "testing_list.txt").write_text("\n".join(listed + [listed[0]]) + "\n")
    with pytest.raises(DatasetError, match=rf"testing_list.txt line {len(listed) + 1} lists {listed[0]} again "
                                           rf"\(first at line 1\)"):
        scanned(str(root), silence_dir=str(silence_dir))
    (root / "testing_list.txt").write_bytes(b"yes/\xff.wav\n")
    with pytest.raises(DatasetError, match=r"testing_list.txt line 1: byte 0xff is not UTF-8"):
        scanned(str(root), silence_dir=str(silence_dir))


def test_unwritable_silence_dir_is_a_dataset_error(full_tree):
    root, silence_dir = full_tree
    silence_dir.write_text("a file where the folder should be")
    with pytest.raises(DatasetError, match=r"cannot write silence clips in .*silence.*--cache-dir"):
        scanned(str(root), silence_dir=str(silence_dir))


# --- model fit -----------------------------------------------------------------
@pytest.mark.parametrize("shape", [(49, 10, 1), (49, 10), (490,)])
def test_accepts_mfcc_shaped_models(shape):
    SpeechCommands(mini()).check_model(info(TensorSpec("x", shape, np.int8, scale=0.5, zero_point=0)))
    SpeechCommands(mini()).check_model(info(TensorSpec("x", shape, np.float32)))


def test_refuses_other_models():
    dataset = SpeechCommands(mini())
    with pytest.raises(ModelError, match=r"input 'img' is \(224, 224, 3\)"):
        dataset.check_model(info(TensorSpec("img", (224, 224, 3), np.uint8, scale=1 / 128, zero_point=128)))
    with pytest.raises(ModelError, match=r"12 output classes .*'logits' is shaped \(1001,\)"):
        dataset.check_model(info(out=TensorSpec("logits", (1001,), np.float32)))
    with pytest.raises(ModelError, match="int8 without them"):
        dataset.check_model(info(TensorSpec("x", (49, 10, 1), np.int8)))


# --- preprocessing ---------------------------------------------------------------
def test_preprocessor_is_picklable_and_matches_batch():
    dataset = scanned()
    preprocess = pickle.loads(pickle.dumps(dataset.preprocessor(INT8_SPEC)))
    batch = preprocess.batch(dataset.sources[:5])
    assert batch.shape == (5, 49, 10, 1) and batch.dtype == np.int8
    for source, row in zip(dataset.sources, batch):
        np.testing.assert_array_equal(preprocess(source), row)


def test_preprocessor_follows_the_model_shape_and_dtype():
    dataset = scanned()
    source = dataset.sources[0]
    full = dataset.preprocessor(INT8_SPEC)(source)
    flat = dataset.preprocessor(TensorSpec("x", (490,), np.int8, scale=0.5847029, zero_point=83))(source)
    np.testing.assert_array_equal(flat, full.reshape(-1))  # frame-major
    as_float = dataset.preprocessor(FLOAT_SPEC)(source)
    assert as_float.dtype == np.float32 and as_float.shape == (49, 10, 1)


def test_round_option_rounds_and_clips():
    dataset = scanned()
    truncated = dataset.preprocessor(INT8_SPEC).batch(dataset.sources[:48])
    rounded = scanned(quantization="round").preprocessor(INT8_SPEC).batch(dataset.sources[:48])
    floats = MfccPreprocessor(FLOAT_SPEC).batch(dataset.sources[:48])
    expected = np.clip(np.round(floats / np.float32(0.5847029) + np.float32(83)), -128, 127)
    np.testing.assert_array_equal(rounded, expected.astype(np.int8))
    assert (rounded != truncated).any()


def test_cache_key_covers_quantization_only_for_integer_inputs():
    truncate, rounded = SpeechCommands(mini()), SpeechCommands(mini(), options={"quantization": "round"})
    assert truncate.cache_key(INT8_SPEC) != rounded.cache_key(INT8_SPEC)
    assert truncate.cache_key(FLOAT_SPEC) == rounded.cache_key(FLOAT_SPEC)


def test_runs_in_the_cache_worker_processes(tmp_path):
    dataset = SpeechCommands(mini(), count=24)
    dataset.scan()
    store = cache.prepare(dataset.sources, dataset.preprocessor(INT8_SPEC), INT8_SPEC,
                          dataset.cache_key(INT8_SPEC), cache_root=tmp_path, workers=2, progress=False)
    np.testing.assert_array_equal(store.rows(range(24)), dataset.preprocessor(INT8_SPEC).batch(dataset.sources))


def test_the_null_backend_stands_in_for_a_kws_model_from_the_hint():
    from backends.base import BackendOptions
    from backends.null import NullBackend

    model = NullBackend(BackendOptions(hints=SpeechCommands(mini()).model_hint())).load(None)
    SpeechCommands(mini()).check_model(model)  # fits: no ModelError
    assert model.input.shape == (49, 10, 1) and model.output.shape == (12,)


def test_postprocess_is_argmax_without_offset():
    outputs = np.full((2, 12), -128, np.int8)
    outputs[0, 11], outputs[1, 0] = 100, 5
    responses = SpeechCommands(mini()).postprocess(outputs, info())
    assert responses.dtype == np.float32 and responses.tolist() == [[11.0], [0.0]]


# --- reference accuracy (LiteRT interpreter, no LoadGen) ----------------------------
@pytest.mark.parametrize("model", ["kws_ref_model.tflite", "kws_ref_model_float32.tflite"])
def test_reference_accuracy_on_speech_commands_mini(model):
    interpreter_module = need_module("ai_edge_litert.interpreter", "runs the reference KWS models")
    interpreter = interpreter_module.Interpreter(model_path=str(shared_path("models", "kws", model)))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = source["quantization"]
    spec = TensorSpec(source["name"], tuple(source["shape"][1:]), source["dtype"],
                      scale=scale or None, zero_point=zero_point if scale else None)
    dataset = scanned()
    dataset.check_model(info(spec, TensorSpec(target["name"], tuple(target["shape"][1:]), target["dtype"])))
    inputs = dataset.preprocessor(spec).batch(dataset.sources)
    predictions = {}
    for index, sample in enumerate(inputs):
        interpreter.set_tensor(source["index"], sample[None])
        interpreter.invoke()
        predictions[index] = dataset.postprocess(interpreter.get_tensor(target["index"]), None)[0]
    expected = runtime_figure(model, "speech-commands-mini", interpreter_module,
                              "accuracy=92.333%, good=277, total=300")
    assert dataset.score(predictions).line() == expected
