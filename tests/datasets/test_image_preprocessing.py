"""Preprocessing against OpenCV, byte for byte, on the shared images.

OpenCV is the reference the MLPerf harness uses. The code under test uses
``cv2.resize`` when OpenCV is installed (it is faster) and its own NumPy
resize otherwise; both paths are checked here.
"""

from __future__ import annotations

import numpy as np
import pytest

from backends.base import TensorSpec
from datasets import image_preprocessing as ip
from datasets.quantize import quantize
from sut.errors import DatasetError
from tests.conftest import need_module, shared_path

FOLDERS = ("imagenet-mini", "imagenet-fullres-mini", "images-misc")
METHODS = {"linear": "INTER_LINEAR", "area": "INTER_AREA"}


def images(folder):
    directory = shared_path("data", folder)
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".bmp", ".png"))


def cv2_rgb(cv2, path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def cv2():
    return need_module("cv2", "OpenCV is the reference for resize and decoding")


@pytest.fixture(params=["numpy", "opencv"])
def resize_path(request, monkeypatch):
    """Run a test once with the NumPy resize and once with cv2.resize."""
    if request.param == "numpy":
        monkeypatch.setenv("MLPERF_EDGE_NO_OPENCV", "1")
    else:
        need_module("cv2", "the OpenCV resize path")
    ip.opencv.cache_clear()
    yield request.param
    ip.opencv.cache_clear()


# --- pure geometry, reference numbers ---------------------------------------------

@pytest.mark.parametrize("shape, out, expected", [
    ((227, 227), 224, (256, 256)),
    ((227, 227), 128, (146, 146)),
    ((368, 496), 224, (256, 345)),
    ((496, 368), 224, (345, 256)),
    ((600, 512), 224, (300, 256)),
    ((341, 512), 128, (146, 219)),
])
def test_scaled_size_matches_reference_formula(shape, out, expected):
    assert ip.scaled_size(*shape, out) == expected


def test_crop_origin_truncates_half_pixels():
    assert ip.crop_origin(256, 345, 224) == (16, 60)
    assert ip.crop_origin(146, 219, 128) == (9, 45)
    image = np.arange(5 * 6).reshape(5, 6, 1)
    assert ip.centre_crop(image, 3)[:, :, 0].tolist() == [[7, 8, 9], [13, 14, 15], [19, 20, 21]]


def test_normalise_known_values():
    pixels = np.array([[[0, 128, 255]]], dtype=np.uint8)
    mid = np.float32(128) / np.float32(255) * np.float32(2) - np.float32(1)  # float32 arithmetic
    np.testing.assert_array_equal(ip.normalise(pixels, "mobilenet"),
                                  np.array([[[-1.0, mid, 1.0]]], dtype=np.float32))
    np.testing.assert_allclose(ip.normalise(pixels, "resnet50"), [[[-123.68, 11.22, 151.06]]], rtol=1e-6)
    assert ip.normalise(pixels, "resnet50").dtype == np.float32
    with pytest.raises(ValueError, match="inception"):
        ip.normalise(pixels, "inception")


def test_layout():
    x = np.arange(2 * 3 * 3).reshape(2, 3, 3)
    assert ip.to_layout(x, "NHWC") is x
    nchw = ip.to_layout(x, "NCHW")
    assert nchw.shape == (3, 2, 3) and nchw[1, 0, 2] == x[0, 2, 1]


def test_resize_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        ip.resize(np.zeros((4, 4, 3), np.float32), 2, 2)
    with pytest.raises(ValueError, match="cubic"):
        ip.resize(np.zeros((4, 4, 3), np.uint8), 2, 2, "cubic")


# --- decoding --------------------------------------------------------------------

@pytest.mark.parametrize("folder", FOLDERS)
def test_decode_equals_cv2_imread(cv2, folder):
    for path in images(folder):
        decoded = ip.decode_image(str(path))
        assert decoded.dtype == np.uint8 and decoded.shape[2] == 3
        np.testing.assert_array_equal(decoded, cv2_rgb(cv2, path), err_msg=str(path))


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "RGBA"])
def test_decode_converts_other_modes_to_rgb(tmp_path, mode):
    from PIL import Image

    rgb = Image.new("RGB", (5, 4), (200, 100, 50))
    path = tmp_path / f"img_{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
    rgb.convert(mode).save(path)
    decoded = ip.decode_image(str(path))
    assert decoded.shape == (4, 5, 3) and decoded.dtype == np.uint8


@pytest.mark.parametrize("mode, suffix", [("L", "jpg"), ("CMYK", "jpg"), ("P", "png"), ("RGBA", "png"), ("L", "bmp")])
def test_decode_other_modes_equals_cv2_imread(cv2, tmp_path, mode, suffix):
    from PIL import Image

    path = tmp_path / f"converted.{suffix}"
    Image.open(images("imagenet-mini")[0]).convert(mode).save(path)
    np.testing.assert_array_equal(ip.decode_image(str(path)), cv2_rgb(cv2, path))


def test_decode_truncated_jpeg_names_the_file(tmp_path):
    source = images("imagenet-mini")[0].read_bytes()
    path = tmp_path / "truncated.JPEG"
    path.write_bytes(source[: len(source) // 2])
    with pytest.raises(DatasetError, match="truncated.JPEG"):
        ip.decode_image(str(path))


def test_decode_not_an_image_names_the_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image")
    with pytest.raises(DatasetError, match="notes.jpg"):
        ip.decode_image(str(path))
    with pytest.raises(DatasetError, match="absent.jpg"):
        ip.decode_image(str(tmp_path / "absent.jpg"))


# --- resize: byte-exact against cv2.resize ----------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("folder", FOLDERS)
def test_resize_equals_cv2_on_shared_images(cv2, folder, method):
    inter = getattr(cv2, METHODS[method])
    for path in images(folder):
        image = cv2_rgb(cv2, path)
        for out in (224, 128):
            height, width = ip.scaled_size(image.shape[0], image.shape[1], out)
            expected = cv2.resize(image, (width, height), interpolation=inter)
            np.testing.assert_array_equal(ip.resize(image, width, height, method), expected,
                                          err_msg=f"{path.name} -> {width}x{height} {method}")


@pytest.mark.parametrize("method", METHODS)
def test_resize_equals_cv2_on_random_sizes(cv2, method):
    """Up- and downscaling, integer and fractional factors, 1/3/4 channels, many ties."""
    rng = np.random.default_rng(7)
    inter = getattr(cv2, METHODS[method])
    for trial in range(120):
        height, width = (int(v) for v in rng.integers(1, 160, 2))
        channels = int(rng.choice([1, 3, 4]))
        if trial % 4 == 0:
            factor_x, factor_y = (int(v) for v in rng.integers(1, 5, 2))
            out_w, out_h = max(1, width // factor_x), max(1, height // factor_y)
        else:
            out_w, out_h = (int(v) for v in rng.integers(1, 200, 2))
        image = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        if trial % 3 == 0:
            image = image // 64 * 64
        expected = cv2.resize(image, (out_w, out_h), interpolation=inter).reshape(out_h, out_w, channels)
        np.testing.assert_array_equal(ip.resize(image, out_w, out_h, method), expected,
                                      err_msg=f"{image.shape} -> {out_w}x{out_h}")


def test_resize_window_equals_crop_of_full_resize():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (120, 90, 3), dtype=np.uint8)
    for method in METHODS:
        full = ip.resize(image, 70, 93, method)
        window = ip.resize_window(image, 70, 93, method, (10, 80), (5, 65))
        np.testing.assert_array_equal(window, full[10:80, 5:65])


# --- the whole pipeline against a straightforward OpenCV implementation ---------------------

def reference_pipeline(cv2, path, preprocessing, spec):
    """What the MLPerf reference does: imread, BGR->RGB, resize, crop, normalise, quantise."""
    image = cv2_rgb(cv2, path)
    out_h, out_w = (spec.shape[0], spec.shape[1]) if spec.layout == "NHWC" else spec.shape[1:]
    height, width = image.shape[:2]
    new_h, new_w = int(100.0 * out_h / 87.5), int(100.0 * out_w / 87.5)
    if height > width:
        h, w = int(new_h * height / width), new_w
    else:
        h, w = new_h, int(new_w * width / height)
    inter = cv2.INTER_LINEAR if preprocessing == "mobilenet" else cv2.INTER_AREA
    image = cv2.resize(image, (w, h), interpolation=inter)
    left, top = int((w - out_w) / 2), int((h - out_h) / 2)
    image = image[top:top + out_h, left:left + out_w]
    x = np.asarray(image, dtype="float32")
    if preprocessing == "mobilenet":
        x /= 255.0
        x -= 0.5
        x *= 2.0
    else:
        x -= np.array([123.68, 116.78, 103.94], dtype=np.float32)
    if spec.layout == "NCHW":
        x = x.transpose([2, 0, 1])
    return quantize(x, spec)


SPECS = [
    ("mobilenet", TensorSpec("input", (224, 224, 3), np.uint8, "NHWC", 0.0078125, 128)),
    ("mobilenet", TensorSpec("input", (128, 128, 3), np.int8, "NHWC", 0.0078125, 0)),
    ("mobilenet", TensorSpec("input", (3, 224, 224), np.float32, "NCHW")),
    ("resnet50", TensorSpec("input", (224, 224, 3), np.float16, "NHWC")),
    ("resnet50", TensorSpec("input", (3, 224, 224), np.float32, "NCHW")),
    ("resnet50", TensorSpec("input", (224, 224, 3), np.int8, "NHWC", 1.0, -1)),
]


@pytest.mark.parametrize("preprocessing, spec", SPECS)
@pytest.mark.parametrize("folder", FOLDERS)
def test_pipeline_equals_reference_byte_for_byte(cv2, resize_path, folder, preprocessing, spec):
    params = ip.ImageParams(preprocessing, spec)
    paths = images(folder)
    for path in paths[:: max(1, len(paths) // 40)]:
        got = ip.preprocess_file(str(path), params)
        assert got.shape == spec.shape and got.dtype == spec.dtype
        expected = reference_pipeline(cv2, path, preprocessing, spec)
        assert got.tobytes() == np.ascontiguousarray(expected).tobytes(), path.name


def test_preprocess_file_is_picklable_with_params():
    import functools
    import pickle

    params = ip.ImageParams("mobilenet", TensorSpec("input", (224, 224, 3), np.uint8, "NHWC", 0.0078125, 128))
    fn = pickle.loads(pickle.dumps(functools.partial(ip.preprocess_file, params=params)))
    assert fn.keywords["params"] == params


@pytest.mark.parametrize("preprocessing, spec", SPECS)
def test_value_table_equals_elementwise_computation(preprocessing, spec):
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    expected = quantize(ip.normalise(pixels, preprocessing), spec)
    table = ip.value_table(preprocessing, spec)
    got = np.take(table.ravel(), pixels.astype(np.intp) * 3 + np.arange(3))
    assert got.tobytes() == expected.tobytes()
