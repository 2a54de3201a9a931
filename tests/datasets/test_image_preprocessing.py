"""Preprocessing against OpenCV, byte for byte, on the shared images.

OpenCV is the reference the MLPerf harness uses. The code under test uses
OpenCV when it is installed (it is faster: ``cv2.imdecode`` for complete
JPEGs, ``cv2.resize``, ``cv2.LUT``) and Pillow, its own NumPy resize and
``np.take`` otherwise; both paths are checked here.
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
def implementation(request, monkeypatch):
    """Run a test once without OpenCV (Pillow, NumPy) and once with it."""
    if request.param == "numpy":
        monkeypatch.setenv("MLPERF_EDGE_NO_OPENCV", "1")
    else:
        need_module("cv2", "the OpenCV decode, resize and look-up path")
        monkeypatch.delenv("MLPERF_EDGE_NO_OPENCV", raising=False)
    ip.opencv.cache_clear()
    yield request.param
    ip.opencv.cache_clear()


@pytest.fixture
def with_opencv(cv2, monkeypatch):
    """OpenCV installed and not disabled."""
    monkeypatch.delenv("MLPERF_EDGE_NO_OPENCV", raising=False)
    ip.opencv.cache_clear()
    yield cv2
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
def test_decode_equals_cv2_imread(cv2, implementation, folder):
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
def test_decode_other_modes_equals_cv2_imread(cv2, implementation, tmp_path, mode, suffix):
    from PIL import Image

    path = tmp_path / f"converted.{suffix}"
    Image.open(images("imagenet-mini")[0]).convert(mode).save(path)
    np.testing.assert_array_equal(ip.decode_image(str(path)), cv2_rgb(cv2, path))


def test_decode_truncated_jpeg_names_the_file(implementation, tmp_path):
    source = images("imagenet-mini")[0].read_bytes()
    path = tmp_path / "truncated.JPEG"
    path.write_bytes(source[: len(source) // 2])
    with pytest.raises(DatasetError, match="truncated.JPEG"):
        ip.decode_image(str(path))


def test_decode_not_an_image_names_the_file(implementation, tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image")
    with pytest.raises(DatasetError, match="notes.jpg"):
        ip.decode_image(str(path))
    with pytest.raises(DatasetError, match="absent.jpg"):
        ip.decode_image(str(tmp_path / "absent.jpg"))


def all_shared_images():
    directory = shared_path("data")
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".bmp", ".png"))


def both_decoders(path):
    """(OpenCV's decode or None when it leaves the file to Pillow, Pillow's decode)."""
    data = path.read_bytes()
    return ip._decode_jpeg_opencv(data), ip._decode_pillow(str(path), data)


def test_opencv_decodes_every_shared_jpeg_like_pillow(with_opencv):
    """The fast decoder may replace Pillow only where their bytes are equal."""
    jpegs = 0
    for path in all_shared_images():
        via_opencv, via_pillow = both_decoders(path)
        if path.suffix.lower() in (".jpeg", ".jpg"):
            jpegs += 1
            assert via_opencv is not None, f"{path}: a complete JPEG should not fall back to Pillow"
        if via_opencv is not None:
            assert via_opencv.dtype == np.uint8 and via_opencv.flags.c_contiguous
            np.testing.assert_array_equal(via_opencv, via_pillow, err_msg=str(path))
    assert jpegs >= 290


JPEG_VARIANTS = {
    "grey": dict(mode="L"),
    "cmyk-adobe": dict(mode="CMYK"),
    "progressive": dict(progressive=True),
    "subsampling-444": dict(subsampling=0),
    "subsampling-422": dict(subsampling=1),
    "quality-100": dict(quality=100),
    **{f"exif-orientation-{o}": dict(orientation=o) for o in range(1, 9)},
}


@pytest.mark.parametrize("variant", JPEG_VARIANTS)
def test_opencv_decodes_jpeg_variants_like_pillow(with_opencv, tmp_path, variant):
    """Greyscale, CMYK, progressive, chroma subsampling and every EXIF
    orientation, on a non-square image (orientations 5-8 swap its sides)."""
    from PIL import Image

    options = dict(JPEG_VARIANTS[variant])
    image = Image.open(shared_path("data", "imagenet-fullres-mini", "ILSVRC2012_val_00000001.JPEG"))
    image = image.convert(options.pop("mode", "RGB"))
    orientation = options.pop("orientation", None)
    if orientation is not None:
        exif = Image.Exif()
        exif[ip.EXIF_ORIENTATION] = orientation
        options["exif"] = exif.tobytes()
    path = tmp_path / f"{variant}.jpg"
    image.save(path, **options)
    via_opencv, via_pillow = both_decoders(path)
    assert via_opencv is not None
    np.testing.assert_array_equal(via_opencv, via_pillow)
    np.testing.assert_array_equal(ip.decode_image(str(path)), cv2_rgb(with_opencv, path))
    if orientation in (5, 6, 7, 8):
        assert via_opencv.shape[:2] == (image.width, image.height)


def test_jpeg_without_final_eoi_is_left_to_pillow(with_opencv, tmp_path):
    """Bytes after EOI: OpenCV is not asked (it would also decode a truncated
    file), Pillow decodes it, and the pixels are still OpenCV's."""
    source = images("imagenet-mini")[0]
    path = tmp_path / "trailing.jpg"
    path.write_bytes(source.read_bytes() + b"\0" * 16)
    assert ip._decode_jpeg_opencv(path.read_bytes()) is None
    np.testing.assert_array_equal(ip.decode_image(str(path)), cv2_rgb(with_opencv, source))


def test_jpeg_opencv_cannot_decode_names_the_file(with_opencv, tmp_path):
    """cv2.imdecode returns None instead of raising: Pillow then names the problem."""
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff" + b"junk" * 8 + b"\xff\xd9")
    assert ip._decode_jpeg_opencv(path.read_bytes()) is None
    with pytest.raises(DatasetError, match="broken.jpg"):
        ip.decode_image(str(path))


def test_truncated_jpeg_with_opencv_names_the_file(with_opencv, tmp_path):
    source = images("imagenet-mini")[0].read_bytes()
    path = tmp_path / "cut.JPEG"
    path.write_bytes(source[: len(source) // 2])
    assert ip._decode_jpeg_opencv(path.read_bytes()) is None
    with pytest.raises(DatasetError, match="cut.JPEG"):
        ip.decode_image(str(path))


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
def test_pipeline_equals_reference_byte_for_byte(cv2, implementation, folder, preprocessing, spec):
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


@pytest.mark.parametrize("preprocessing, spec", SPECS)
def test_preprocess_into_an_array_gives_the_same_bytes(implementation, preprocessing, spec):
    params = ip.ImageParams(preprocessing, spec)
    path = str(images("imagenet-fullres-mini")[0])
    out = np.full(spec.shape, 7, dtype=spec.dtype)
    assert ip.preprocess_file(path, params, out) is out
    assert out.tobytes() == ip.preprocess_file(path, params).tobytes()


def test_preprocess_into_a_wrong_array_is_refused():
    params = ip.ImageParams("mobilenet", SPECS[0][1])
    path = str(images("imagenet-mini")[0])
    with pytest.raises(ValueError, match="int8"):
        ip.preprocess_file(path, params, np.empty((224, 224, 3), np.int8))
    with pytest.raises(ValueError, match="128"):
        ip.preprocess_file(path, params, np.empty((128, 128, 3), np.uint8))


def test_results_do_not_share_the_reused_buffers(implementation):
    """The resize and layout buffers are reused per thread; what callers get must not be."""
    params = ip.ImageParams("mobilenet", TensorSpec("input", (3, 224, 224), np.uint8, "NCHW", 0.0078125, 128))
    small, large = images("imagenet-mini")[0], images("imagenet-fullres-mini")[0]
    first = ip.preprocess_file(str(small), params)
    crop = ip.resize_and_crop(ip.decode_image(str(small)), 224, 224, "linear")
    kept, kept_crop = first.copy(), crop.copy()
    ip.preprocess_file(str(large), params)
    np.testing.assert_array_equal(first, kept)
    np.testing.assert_array_equal(crop, kept_crop)


def test_image_preprocessor_runs_on_threads_only_with_opencv(implementation):
    import pickle

    params = ip.ImageParams("mobilenet", SPECS[0][1])
    preprocessor = pickle.loads(pickle.dumps(ip.ImagePreprocessor(params)))
    assert preprocessor.releases_gil is (implementation == "opencv")
    path = str(images("imagenet-mini")[0])
    out = np.empty(params.spec.shape, params.spec.dtype)
    preprocessor.into(path, out)
    assert out.tobytes() == preprocessor(path).tobytes() == ip.preprocess_file(path, params).tobytes()


@pytest.mark.parametrize("scale, zero_point, affine", [
    (0.0078125, 128, True),  # the shared MobileNets
    (0.0078125, 129, True),
    (0.01, 100, True),
    (2 / 255, 128, False),  # every odd pixel lands on .5: OpenCV breaks those ties otherwise
    (0.0078125, 127, False),  # x = 0 maps to -1: convertScaleAbs would give |-1| = 1, the table 0
])
@pytest.mark.parametrize("size", [224, 128, 97])
def test_opencv_affine_shortcut_only_where_bytes_are_equal(with_opencv, scale, zero_point, affine, size):
    """convertScaleAbs replaces the look-up only where it was checked equal; outputs match either way."""
    spec = TensorSpec("input", (size, size, 3), np.uint8, "NHWC", scale, zero_point)
    assert (ip._opencv_affine("mobilenet", spec, size) is not None) is affine
    params = ip.ImageParams("mobilenet", spec)
    for path in images("imagenet-fullres-mini")[:3] + images("images-misc"):
        image = ip.decode_image(str(path))
        crop = ip.resize_and_crop(image, size, size, "linear")
        expected = np.take(ip.value_table("mobilenet", spec)[:, 0], crop)
        assert ip.preprocess_array(image, params).tobytes() == expected.tobytes(), path.name
