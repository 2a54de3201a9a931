"""ImageNet dataset: index errors, model checks, and top-1 on real models (no LoadGen)."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest

from backends.base import ModelInfo, TensorSpec
from datasets import cache, image_preprocessing
from datasets.imagenet import ImageNet
from sut.errors import ConfigError, DatasetError, ModelError
from tests.conftest import need_module, runtime_figure, shared_path

MOBILENET_224 = TensorSpec("input", (224, 224, 3), np.uint8, "NHWC", 0.0078125, 128)


def info_for(input_spec, classes=1001):
    return ModelInfo(inputs=(input_spec,), outputs=(TensorSpec("out", (classes,), np.uint8, None, 1 / 256, 0),))


def small_copy(tmp_path, n=3):
    """A tmp dataset with the first ``n`` imagenet-mini images and their labels."""
    source = shared_path("data", "imagenet-mini")
    lines = (source / "val_map.txt").read_text().splitlines()[:n]
    for line in lines:
        shutil.copy(source / line.split()[0], tmp_path)
    (tmp_path / "val_map.txt").write_text("\n".join(lines) + "\n")
    return tmp_path, lines


# --- index --------------------------------------------------------------------

def test_scan_reads_val_map_in_order():
    ds = ImageNet(str(shared_path("data", "imagenet-mini")))
    ds.scan()
    assert len(ds) == 260
    assert ds.sources[0].endswith("ILSVRC2012_val_00000347.JPEG") and ds.labels[0] == 472
    assert ds.labels[1] == 705


def test_count_keeps_the_first_samples():
    ds = ImageNet(str(shared_path("data", "imagenet-mini")), count=5)
    ds.scan()
    assert len(ds) == 5 and ds.labels[:2] == [472, 705]
    too_many = ImageNet(str(shared_path("data", "imagenet-mini")), count=261)
    with pytest.raises(DatasetError, match="261"):
        too_many.scan()


def test_missing_directory(tmp_path):
    with pytest.raises(DatasetError, match="nowhere"):
        ImageNet(str(tmp_path / "nowhere")).scan()
    with pytest.raises(DatasetError, match="not found"):
        ImageNet(None).scan()


def test_missing_val_map(tmp_path):
    with pytest.raises(DatasetError, match="val_map.txt"):
        ImageNet(str(tmp_path)).scan()
    with pytest.raises(DatasetError, match="labels.txt"):
        ImageNet(str(tmp_path), options={"val_map": str(tmp_path / "labels.txt")}).scan()


@pytest.mark.parametrize("bad_line", ["img.JPEG", "img.JPEG cat", "img.JPEG 1000", "img.JPEG -1", "a b 3"])
def test_malformed_line_names_line_number(tmp_path, bad_line):
    directory, lines = small_copy(tmp_path, 2)
    (directory / "val_map.txt").write_text(lines[0] + "\n" + bad_line + "\n")
    with pytest.raises(DatasetError, match=r"line 2\b"):
        ImageNet(str(directory)).scan()


def test_missing_image_named(tmp_path):
    directory, lines = small_copy(tmp_path, 3)
    (directory / lines[1].split()[0]).unlink()
    with pytest.raises(DatasetError, match=lines[1].split()[0]):
        ImageNet(str(directory)).scan()


def test_val_map_option_and_unknown_options(tmp_path):
    directory, lines = small_copy(tmp_path, 2)
    other = directory / "other_map.txt"
    other.write_text(lines[1] + "\n")
    ds = ImageNet(str(directory), options={"val_map": str(other)})
    ds.scan()
    assert len(ds) == 1
    with pytest.raises(ConfigError, match="inception"):
        ImageNet(str(directory), options={"preprocessing": "inception"})
    with pytest.raises(ConfigError, match="colour"):
        ImageNet(str(directory), options={"colour": "rgb"})


def test_corrupt_image_raises_naming_file(tmp_path):
    directory, lines = small_copy(tmp_path, 2)
    name = lines[1].split()[0]
    data = (directory / name).read_bytes()
    (directory / name).write_bytes(data[: len(data) // 3])
    ds = ImageNet(str(directory))
    ds.scan()
    preprocess = ds.preprocessor(MOBILENET_224)
    assert preprocess(ds.sources[0]).shape == (224, 224, 3)
    with pytest.raises(DatasetError, match=name):
        preprocess(ds.sources[1])


# --- model checks -------------------------------------------------------------------

@pytest.mark.parametrize("spec", [
    MOBILENET_224,
    TensorSpec("input", (3, 224, 224), np.float32, "NCHW"),
    TensorSpec("input", (128, 128, 3), np.int8, "NHWC", 0.0078125, 0),
])
def test_check_model_accepts_images(spec):
    ImageNet(None).check_model(info_for(spec, 1001))
    ImageNet(None).check_model(info_for(spec, 1000))


@pytest.mark.parametrize("spec, message", [
    (TensorSpec("input_1", (49, 10, 1), np.int8, None, 0.58, 83), "input_1"),
    (TensorSpec("input", (224, 224, 1), np.uint8, "NHWC", 0.0078125, 128), "3 colour channels.*has 1"),
    (TensorSpec("input", (4, 224, 224), np.float32, "NCHW"), "has 4"),
    (TensorSpec("input", (224, 224, 3), np.uint8, "NHWC"), "without a scale"),
])
def test_check_model_rejects_non_images(spec, message):
    with pytest.raises(ModelError, match=message):
        ImageNet(None).check_model(info_for(spec))


def test_check_model_rejects_wrong_class_count():
    with pytest.raises(ModelError, match="1000 or 1001.*has 12"):
        ImageNet(None).check_model(info_for(MOBILENET_224, 12))


def test_postprocess_background_offset():
    outputs = np.zeros((2, 1001), np.uint8)
    outputs[0, 287], outputs[1, 1] = 9, 9
    assert ImageNet(None).postprocess(outputs, info_for(MOBILENET_224, 1001)).tolist() == [[286.0], [0.0]]
    outputs = np.zeros((1, 1000), np.float32)
    outputs[0, 7] = 1
    response = ImageNet(None).postprocess(outputs, info_for(MOBILENET_224, 1000))
    assert response.dtype == np.float32 and response.tolist() == [[7.0]]


# --- preprocessor and cache key -----------------------------------------------------

def test_preprocessor_is_picklable_and_matches_spec():
    ds = ImageNet(None, options={"preprocessing": "resnet50"})
    spec = TensorSpec("input", (3, 224, 224), np.float16, "NCHW")
    fn = pickle.loads(pickle.dumps(ds.preprocessor(spec)))
    path = str(shared_path("data", "images-misc", "cat.bmp"))
    out = fn(path)
    assert out.shape == (3, 224, 224) and out.dtype == np.float16


def test_cache_key_changes_with_everything_that_changes_output():
    base = ImageNet(None).cache_key(MOBILENET_224)
    variants = [
        ImageNet(None, options={"preprocessing": "resnet50"}).cache_key(MOBILENET_224),
        ImageNet(None).cache_key(TensorSpec("input", (128, 128, 3), np.uint8, "NHWC", 0.0078125, 128)),
        ImageNet(None).cache_key(TensorSpec("input", (3, 224, 224), np.uint8, "NCHW", 0.0078125, 128)),
        ImageNet(None).cache_key(TensorSpec("input", (224, 224, 3), np.int8, "NHWC", 0.0078125, 128)),
        ImageNet(None).cache_key(TensorSpec("input", (224, 224, 3), np.uint8, "NHWC", 0.007, 128)),
        ImageNet(None).cache_key(TensorSpec("input", (224, 224, 3), np.uint8, "NHWC", 0.0078125, 127)),
    ]
    keys = [repr(sorted(base.items()))] + [repr(sorted(k.items())) for k in variants]
    assert len(set(keys)) == len(keys)
    assert base["resize"] == "linear" and variants[0]["resize"] == "area"
    assert ImageNet(None).cache_key(MOBILENET_224) == base


# --- top-1 with real models, LiteRT directly (no LoadGen) ---------------------------------

def top1(model, folder, cache_root):
    interpreter_module = need_module("ai_edge_litert.interpreter", "LiteRT runs the reference models")
    interpreter = interpreter_module.Interpreter(str(shared_path("models", "mobilenet", model)))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = inp["quantization"]
    spec = TensorSpec(inp["name"], tuple(inp["shape"][1:]), inp["dtype"], "NHWC", scale, zero_point)
    info = ModelInfo(inputs=(spec,), outputs=(TensorSpec(out["name"], tuple(out["shape"][1:]), out["dtype"]),))
    ds = ImageNet(str(shared_path("data", folder)))
    ds.scan()
    ds.check_model(info)
    store = cache.prepare(ds.sources, ds.preprocessor(spec), spec, ds.cache_key(spec),
                          cache_root=cache_root, workers=2, progress=False)
    predictions = {}
    for i in range(len(ds)):
        interpreter.set_tensor(inp["index"], store.rows([i]))
        interpreter.invoke()
        predictions[i] = ds.postprocess(interpreter.get_tensor(out["index"]), info)[0]
    return ds.score(predictions)


@pytest.mark.parametrize("model, folder, good, total", [
    ("mobilenet_v1_1.0_224_quant.tflite", "imagenet-mini", 202, 260),
    ("mobilenet_v1_0.25_128_quant.tflite", "imagenet-mini", 147, 260),
    ("mobilenet_v1_1.0_224_quant.tflite", "imagenet-fullres-mini", 22, 30),
])
def test_top1_matches_reference_figures(tmp_path, model, folder, good, total):
    accuracy = top1(model, folder, tmp_path / "cache")
    expected = f"accuracy={100 * good / total:.3f}%, good={good}, total={total}"
    assert accuracy.line() == runtime_figure(model, folder, need_module("ai_edge_litert.interpreter"), expected)


def mobilenet_top1_index(tensor):
    """Top-1 of MobileNet v1 1.0 224 (quantised) as a 1001-class index."""
    interpreter_module = need_module("ai_edge_litert.interpreter", "LiteRT runs the reference models")
    interpreter = interpreter_module.Interpreter(
        str(shared_path("models", "mobilenet", "mobilenet_v1_1.0_224_quant.tflite")))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], tensor[None])
    interpreter.invoke()
    return int(np.argmax(interpreter.get_tensor(out["index"])[0]))


# grace_hopper.bmp: the README's 653 (military uniform) is what the whole image
# resized to 224x224 gives (the TFLite/Coral example preprocessing, tested
# below); with the MLPerf 87.5 % centre crop the same model says 668
# (mortarboard), and so does OpenCV's own pipeline, byte-identical to ours
# (tests/datasets/test_image_preprocessing.py), and Pillow's bilinear.
@pytest.mark.parametrize("name, expected", [("cat.bmp", 286), ("parrot.jpg", 89), ("grace_hopper.bmp", 668)])
def test_known_images_top1_mlperf_preprocessing(name, expected):
    tensor = ImageNet(None).preprocessor(MOBILENET_224)(str(shared_path("data", "images-misc", name)))
    assert mobilenet_top1_index(tensor) == expected


@pytest.mark.parametrize("name, expected", [("cat.bmp", 286), ("parrot.jpg", 89), ("grace_hopper.bmp", 653)])
def test_known_images_top1_whole_image_resized(name, expected):
    from datasets import image_preprocessing as ip
    from datasets.quantize import quantize

    image = ip.decode_image(str(shared_path("data", "images-misc", name)))
    whole = ip.resize(image, 224, 224, "linear")
    assert mobilenet_top1_index(quantize(ip.normalise(whole, "mobilenet"), MOBILENET_224)) == expected


def test_cache_key_changes_with_the_decoding_libraries(monkeypatch):
    """A cache written under another Pillow/OpenCV/NumPy is not read: their JPEG decoders differ
    (Pillow < 9.0 bundled a libjpeg that decodes most of imagenet-mini to other pixels)."""
    import PIL

    base = ImageNet(None).cache_key(MOBILENET_224)
    monkeypatch.setattr(PIL, "__version__", "8.4.0")
    assert ImageNet(None).cache_key(MOBILENET_224) != base
    monkeypatch.undo()
    monkeypatch.setattr(image_preprocessing, "opencv", lambda: None)  # as with MLPERF_EDGE_NO_OPENCV=1
    without_opencv = ImageNet(None).cache_key(MOBILENET_224)
    assert without_opencv["libraries"]["opencv"] is None
    assert without_opencv["libraries"]["pillow"] == PIL.__version__


# --- val_map.txt robustness -------------------------------------------------------------

def test_duplicate_line_is_an_error_naming_both_lines(tmp_path):
    directory, lines = small_copy(tmp_path, 3)
    (directory / "val_map.txt").write_text("\n".join(lines + [lines[1]]) + "\n")
    with pytest.raises(DatasetError, match=rf"val_map.txt line 4 lists {lines[1].split()[0]} again \(first at line 2\)"):
        ImageNet(str(directory)).scan()
    # the same image under another spelling of its path is the same image
    (directory / "val_map.txt").write_text("\n".join(lines + ["./" + lines[0]]) + "\n")
    with pytest.raises(DatasetError, match="line 4 lists .* again .first at line 1"):
        ImageNet(str(directory)).scan()


def test_latin1_byte_is_an_error_naming_file_and_line(tmp_path):
    directory, lines = small_copy(tmp_path, 2)
    (directory / "val_map.txt").write_bytes((lines[0] + "\n").encode() + b"caf\xe9.JPEG 3\n")
    with pytest.raises(DatasetError, match=r"val_map.txt line 2: byte 0xe9 is not UTF-8 .*save the file as UTF-8"):
        ImageNet(str(directory)).scan()


def test_bom_at_the_start_of_val_map_is_ignored(tmp_path):
    directory, lines = small_copy(tmp_path, 2)
    (directory / "val_map.txt").write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode())
    ds = ImageNet(str(directory))
    ds.scan()
    assert [s.split("/")[-1] for s in ds.sources] == [line.split()[0] for line in lines]


def test_invisible_character_in_a_missing_file_name_is_shown(tmp_path):
    directory, lines = small_copy(tmp_path, 1)
    (directory / "val_map.txt").write_text(f"\u200b{lines[0]}\n")
    with pytest.raises(DatasetError, match=r"not found: '.*\\u200bILSVRC"):
        ImageNet(str(directory)).scan()


def test_undecodable_image_error_names_the_file_not_a_buffer(tmp_path):
    bad = tmp_path / "not-an-image.JPEG"
    bad.write_bytes(b"this is text, not pixels")
    with pytest.raises(DatasetError) as info:
        image_preprocessing.decode_image(str(bad))
    assert str(bad) in str(info.value) and "BytesIO" not in str(info.value)
