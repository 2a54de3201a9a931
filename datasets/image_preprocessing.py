"""ImageNet preprocessing as pure NumPy functions (array in, array out).

The MLPerf reference decodes with OpenCV, resizes with ``cv2.resize`` and
centre-crops (``docs/preprocessing.md`` in the shared folder). Accuracy
depends on those exact pixels, so the resize here reproduces OpenCV's uint8
arithmetic bit for bit without needing OpenCV at run time:

* ``INTER_LINEAR``: 11-bit fixed-point weights (``INTER_RESIZE_COEF_BITS``),
  an exact integer horizontal pass, then the vertical pass with the rounding
  of OpenCV's SIMD loop (``>> 4``, high half of a 16-bit product,
  ``(v + 2) >> 2``). OpenCV 5.0 (opencv-python-headless 5.0.0.93, tested)
  rounds every element that way. OpenCV 4.x's source rounds the last
  ``(width * channels) % lanes`` elements of each row exactly instead (not
  tested here), which can differ by 1 at the right edge of a row; rows of
  256 x 3 elements have no such tail at any SIMD width.
* ``INTER_AREA``: upscaling uses the same fixed-point path with "area"
  coefficients; integer downscaling averages blocks; other downscaling
  accumulates float32 area weights as OpenCV does.

Index and weight tables depend only on (input size, output size) and are
cached. ``tests/datasets/test_image_preprocessing.py`` checks the output
against ``cv2.resize`` on the shared images.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import numpy as np

from backends.base import TensorSpec

log = logging.getLogger(__name__)

PREPROCESSINGS = ("mobilenet", "resnet50")
#: preprocessing -> resize: "linear" is cv2.INTER_LINEAR, "area" cv2.INTER_AREA
RESIZE_METHODS = {"mobilenet": "linear", "resnet50": "area"}
RESNET50_MEANS = np.array([123.68, 116.78, 103.94], dtype=np.float32)
#: the reference resizes the short side to out * 100 / CROP_PERCENT, then crops
CROP_PERCENT = 87.5

EXIF_ORIENTATION = 0x0112
_COEF_BITS = 11
_COEF_SCALE = 1 << _COEF_BITS


# --- decoding ---------------------------------------------------------------

def decode_image(path: str) -> np.ndarray:
    """Read an image file (JPEG, PNG, BMP, ...) into an RGB uint8 (H, W, 3) array.

    Greyscale, palette, CMYK and alpha images are converted to RGB; EXIF
    orientation is applied, as ``cv2.imread`` does. Raises DatasetError
    naming the file when it is missing, truncated or not an image.
    """
    from PIL import Image, ImageOps

    from sut.errors import DatasetError

    try:
        with Image.open(path) as image:
            image.load()
            is_jpeg, adobe = image.format == "JPEG", bool(image.info.get("adobe"))
            if image.getexif().get(EXIF_ORIENTATION, 1) != 1:  # transposing copies: only when needed
                image = ImageOps.exif_transpose(image)
            if image.mode == "CMYK" and is_jpeg:
                return _jpeg_cmyk_to_rgb(image, inverted=adobe)
            if image.mode != "RGB":
                image = image.convert("RGB")
            return np.asarray(image, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot decode image {path}: {exc}") from exc


def _jpeg_cmyk_to_rgb(image, inverted: bool) -> np.ndarray:
    """CMYK JPEG -> RGB with OpenCV's integer formula (Pillow's own differs by 1).

    libjpeg hands out Adobe CMYK inverted; Pillow undoes that, OpenCV works
    on the raw values: ``rgb = k - ((255 - cmy) * k >> 8)``.
    """
    cmyk = np.asarray(image, dtype=np.int32)
    if inverted:
        cmyk = 255 - cmyk
    k = cmyk[..., 3:]
    return (k - (((255 - cmyk[..., :3]) * k) >> 8)).astype(np.uint8)


# --- geometry ---------------------------------------------------------------

def scaled_size(height: int, width: int, out_height: int, out_width: int | None = None) -> tuple[int, int]:
    """(new_height, new_width) before the crop, as the reference's ``resize_with_aspectratio``.

    The short side becomes ``int(100 * out / 87.5)`` (256 for 224), the long
    side ``int(short * long / short_orig)``.
    """
    out_width = out_height if out_width is None else out_width
    new_height = int(100.0 * out_height / CROP_PERCENT)
    new_width = int(100.0 * out_width / CROP_PERCENT)
    if height > width:
        return int(new_height * height / width), new_width
    return new_height, int(new_width * width / height)


def crop_origin(height: int, width: int, out_height: int, out_width: int | None = None) -> tuple[int, int]:
    """(top, left) of the centred window: ``int((H - out) / 2)``, ``int((W - out) / 2)``."""
    out_width = out_height if out_width is None else out_width
    return int((height - out_height) / 2), int((width - out_width) / 2)


def centre_crop(image: np.ndarray, out_height: int, out_width: int | None = None) -> np.ndarray:
    out_width = out_height if out_width is None else out_width
    top, left = crop_origin(image.shape[0], image.shape[1], out_height, out_width)
    return image[top:top + out_height, left:left + out_width]


# --- resize -------------------------------------------------------------------

def resize(image: np.ndarray, width: int, height: int, method: str = "linear") -> np.ndarray:
    """``cv2.resize(image, (width, height), interpolation=INTER_LINEAR/INTER_AREA)``.

    ``image`` is uint8 (H, W, C); the result is byte-for-byte OpenCV's.
    """
    return resize_window(image, width, height, method, (0, height), (0, width))


def resize_window(image: np.ndarray, width: int, height: int, method: str,
                  rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """Rows ``rows[0]:rows[1]`` and columns ``cols[0]:cols[1]`` of :func:`resize`.

    Computing only the crop window saves work; every output pixel is
    computed exactly as in the full resize.
    """
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"resize needs a uint8 (H, W, C) array, got {image.dtype}{image.shape}")
    src_h, src_w, channels = image.shape
    if method not in ("linear", "area"):
        raise ValueError(f"unknown resize method '{method}'; accepted: linear, area")
    scale_x, scale_y = _scale(src_w, width), _scale(src_h, height)
    fast_area = _is_integer(scale_x) and _is_integer(scale_y)
    if method == "linear" and fast_area and round(scale_x) == 2 and round(scale_y) == 2:
        method = "area"  # OpenCV's own shortcut: 2x linear downscale == block average
    if method == "area" and scale_x >= 1 and scale_y >= 1:
        if fast_area:
            out = _area_fast(image, width, height, int(round(scale_x)), int(round(scale_y)))
        else:
            out = _area_float(image, width, height)
        return out[rows[0]:rows[1], cols[0]:cols[1]]
    return _linear_fixed(image, width, height, method == "area", rows, cols)


def _scale(src: int, dst: int) -> float:
    """OpenCV's ``scale = 1. / inv_scale`` with ``inv_scale = dst / src`` (in doubles)."""
    return 1.0 / (dst / src)


def _is_integer(scale: float) -> bool:
    return abs(scale - round(scale)) < np.finfo(np.float64).eps


@functools.lru_cache(maxsize=256)
def _linear_table(src: int, dst: int, area_mode: bool, clamp: bool):
    """Source index and 11-bit weights per output index along one axis.

    ``clamp`` (the horizontal axis) moves out-of-range taps onto the edge
    pixel with weight (1, 0); the vertical axis keeps its weights and only
    clamps the row indices, exactly as OpenCV does.
    """
    inv = dst / src
    scale = 1.0 / inv
    d = np.arange(dst, dtype=np.float64)
    if not area_mode:
        f = ((d + 0.5) * scale - 0.5).astype(np.float32)
        s = np.floor(f).astype(np.int64)
        f = f - s.astype(np.float32)
    else:
        s = np.floor(d * scale).astype(np.int64)
        f = ((d + 1) - (s + 1) * inv).astype(np.float32)
        f = np.where(f <= 0, np.float32(0), f - np.floor(f)).astype(np.float32)
    if clamp:
        low = s < 0
        f[low], s[low] = 0, 0
        high = s >= src - 1
        f[high], s[high] = 0, src - 1
    w0 = np.rint((np.float32(1) - f) * np.float32(_COEF_SCALE)).astype(np.int32)
    w1 = np.rint(f * np.float32(_COEF_SCALE)).astype(np.int32)
    s0 = np.clip(s, 0, src - 1)
    s1 = np.clip(s + 1, 0, src - 1)
    for arr in (s0, s1, w0, w1):
        arr.flags.writeable = False
    return s0, s1, w0, w1


def _linear_fixed(image, width, height, area_mode, rows, cols):
    src_h, src_w, channels = image.shape
    xs0, xs1, xw0, xw1 = (a[cols[0]:cols[1]] for a in _linear_table(src_w, width, area_mode, True))
    ys0, ys1, yw0, yw1 = (a[rows[0]:rows[1]] for a in _linear_table(src_h, height, area_mode, False))
    # horizontal pass (exact integers) on the band of source rows the window needs;
    # the vertical pass only ever uses it shifted right by 4 bits
    first, last = int(ys0.min()), int(ys1.max()) + 1
    band = image[first:last]
    left = np.take(band, xs0, axis=1).astype(np.int32)
    left *= xw0[None, :, None]
    right = np.take(band, xs1, axis=1).astype(np.int32)
    right *= xw1[None, :, None]
    left += right
    left >>= 4
    # vertical pass with OpenCV's SIMD rounding: high half of the 16-bit
    # product per row, then round off 2 bits
    top = np.take(left, ys0 - first, axis=0)
    top *= yw0[:, None, None]
    top >>= 16
    bottom = np.take(left, ys1 - first, axis=0)
    bottom *= yw1[:, None, None]
    bottom >>= 16
    top += bottom
    top += 2
    top >>= 2
    return np.clip(top, 0, 255).astype(np.uint8)


def _area_fast(image, width, height, fx, fy):
    """Integer-factor INTER_AREA: mean of each fx x fy block."""
    src_h, src_w, channels = image.shape
    blocks = image[:height * fy, :width * fx].astype(np.int32)
    total = blocks.reshape(height, fy, width, fx, channels).sum(axis=(1, 3))
    if fx == 2 and fy == 2:
        return ((total + 2) >> 2).astype(np.uint8)
    return np.rint(total.astype(np.float32) * np.float32(1.0 / (fx * fy))).clip(0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=256)
def _area_table(src: int, dst: int):
    """OpenCV's ``computeResizeAreaTab`` as (dst, taps) source indices and float32 weights.

    Taps are in increasing source order (the order OpenCV accumulates them);
    unused taps have weight 0 on the last pixel, which adds an exact zero.
    """
    scale = 1.0 / (dst / src)
    taps = []
    for dx in range(dst):
        fsx1 = dx * scale
        fsx2 = fsx1 + scale
        cell = min(scale, src - fsx1)
        sx1, sx2 = int(np.ceil(fsx1)), int(np.floor(fsx2))
        sx2 = min(sx2, src - 1)
        sx1 = min(sx1, sx2)
        row = []
        if sx1 - fsx1 > 1e-3:
            row.append((sx1 - 1, (sx1 - fsx1) / cell))
        row.extend((sx, 1.0 / cell) for sx in range(sx1, sx2))
        if fsx2 - sx2 > 1e-3:
            row.append((sx2, min(min(fsx2 - sx2, 1.0), cell) / cell))
        taps.append(row)
    width = max(len(row) for row in taps)
    index = np.full((dst, width), src - 1, dtype=np.int64)
    weight = np.zeros((dst, width), dtype=np.float32)
    for dx, row in enumerate(taps):
        for k, (sx, w) in enumerate(row):
            index[dx, k], weight[dx, k] = sx, np.float32(w)
    index.flags.writeable = weight.flags.writeable = False
    return index, weight


def _area_float(image, width, height):
    """Non-integer INTER_AREA downscale: float32 sums in OpenCV's order, rounded to even."""
    xi, xw = _area_table(image.shape[1], width)
    yi, yw = _area_table(image.shape[0], height)
    horiz = np.zeros((image.shape[0], width, image.shape[2]), dtype=np.float32)
    for k in range(xi.shape[1]):
        term = np.take(image, xi[:, k], axis=1).astype(np.float32)
        term *= xw[None, :, k, None]
        horiz += term
    total = np.zeros((height, width, image.shape[2]), dtype=np.float32)
    for k in range(yi.shape[1]):
        term = np.take(horiz, yi[:, k], axis=0)
        term *= yw[:, k, None, None]
        total += term
    return np.rint(total).clip(0, 255).astype(np.uint8)


# --- normalisation and layout ----------------------------------------------------

def normalise(image: np.ndarray, preprocessing: str) -> np.ndarray:
    """uint8 RGB -> float32: MobileNet ``x / 255 * 2 - 1``, ResNet50 ``x - means``."""
    x = image.astype(np.float32)
    if preprocessing == "mobilenet":
        return x / np.float32(255) * np.float32(2) - np.float32(1)
    if preprocessing == "resnet50":
        return x - RESNET50_MEANS
    raise ValueError(f"unknown preprocessing '{preprocessing}'; accepted: {', '.join(PREPROCESSINGS)}")


def to_layout(x: np.ndarray, layout: str) -> np.ndarray:
    """(H, W, C) -> ``layout`` ("NHWC" keeps it, "NCHW" gives (C, H, W))."""
    if layout == "NHWC":
        return x
    if layout == "NCHW":
        return np.ascontiguousarray(x.transpose(2, 0, 1))
    raise ValueError(f"unknown layout '{layout}'; accepted: NHWC, NCHW")


# --- the whole pipeline -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ImageParams:
    """Everything that decides the preprocessed tensor (picklable, hashable)."""

    preprocessing: str  # "mobilenet" or "resnet50"
    spec: TensorSpec  # the model input: shape (per sample), layout, dtype, quantisation

    @property
    def resize_method(self) -> str:
        return RESIZE_METHODS[self.preprocessing]

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the model input."""
        shape = self.spec.shape
        return (shape[0], shape[1]) if self.spec.layout == "NHWC" else (shape[1], shape[2])


@functools.lru_cache(maxsize=1)
def opencv():
    """``cv2`` when it is installed (and not disabled with MLPERF_EDGE_NO_OPENCV=1), else None.

    Only ``cv2.resize`` is used, and only because it is ~20x faster than the
    NumPy code above, which gives the same bytes (the tests check both paths
    against each other and against OpenCV). Decoding stays with Pillow: it
    refuses truncated files that OpenCV would decode with a warning.
    """
    import os

    if os.environ.get("MLPERF_EDGE_NO_OPENCV"):
        return None
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def resize_and_crop(image: np.ndarray, out_height: int, out_width: int, method: str) -> np.ndarray:
    """Aspect-preserving resize then centre crop (OpenCV's bytes, with or without OpenCV)."""
    height, width = scaled_size(image.shape[0], image.shape[1], out_height, out_width)
    top, left = crop_origin(height, width, out_height, out_width)
    cv2 = opencv()
    if cv2 is not None and image.shape[2] in (1, 3, 4):
        flag = cv2.INTER_LINEAR if method == "linear" else cv2.INTER_AREA
        resized = cv2.resize(image, (width, height), interpolation=flag)
        return resized.reshape(height, width, image.shape[2])[top:top + out_height, left:left + out_width]
    return resize_window(image, width, height, method,
                         (top, top + out_height), (left, left + out_width))


@functools.lru_cache(maxsize=32)
def value_table(preprocessing: str, spec: TensorSpec) -> np.ndarray:
    """(256, 3) table: pixel value and channel -> normalised, quantised value.

    Normalisation and quantisation act on each element alone, so looking the
    result up per pixel gives exactly the bytes of computing it per pixel.
    """
    from datasets.quantize import quantize

    values = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)
    table = quantize(normalise(values[:, None, :], preprocessing)[:, 0, :], spec)
    table.flags.writeable = False
    return table


def preprocess_array(image: np.ndarray, params: ImageParams) -> np.ndarray:
    """RGB uint8 image -> one model input tensor (layout and dtype of ``params.spec``)."""
    out_height, out_width = params.size
    crop = resize_and_crop(image, out_height, out_width, params.resize_method)
    table = value_table(params.preprocessing, params.spec)
    if params.preprocessing == "mobilenet":  # the same for every channel
        x = np.take(table[:, 0], crop)
    else:
        x = np.take(table.ravel(), crop.astype(np.intp) * 3 + np.arange(3))
    return np.ascontiguousarray(to_layout(x, params.spec.layout))


def preprocess_file(path: str, params: ImageParams) -> np.ndarray:
    """Image file -> one model input tensor; DatasetError names an unreadable file."""
    return preprocess_array(decode_image(path), params)
