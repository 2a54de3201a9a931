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
import math
import re
import threading

import numpy as np

from backends.base import TensorSpec
from sut.errors import DatasetError

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

#: a JPEG starts with SOI and a marker, and a complete one ends with EOI
_JPEG_START, _JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"


def decode_image(path: str) -> np.ndarray:
    """Read an image file (JPEG, PNG, BMP, ...) into an RGB uint8 (H, W, 3) array.

    Greyscale, palette, CMYK and alpha images are converted to RGB; EXIF
    orientation is applied, as ``cv2.imread`` does. Raises DatasetError
    naming the file when it is missing, truncated or not an image.

    Complete JPEG files are decoded by OpenCV when it is installed (the
    reference's own decoder, and ~1.7x faster than Pillow here); everything
    else, including any file OpenCV refuses, goes through Pillow, which gives
    the same pixels (the tests check both paths on every shared image).
    """
    data = _read_file(path)
    image = _decode_jpeg_opencv(data)
    return image if image is not None else _decode_pillow(path, data)


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


def _decode_jpeg_opencv(data: bytes) -> np.ndarray | None:
    """``cv2.imdecode`` of a complete JPEG as RGB, else None.

    None when OpenCV is absent, the data is not a JPEG, or it does not end
    with EOI: OpenCV decodes a truncated JPEG with only a warning (grey
    rows at the bottom), while Pillow refuses it, so Pillow decides those.
    Also None when OpenCV cannot decode the data (it returns None rather
    than raising), so that Pillow names the problem.
    """
    cv2 = opencv()
    if cv2 is None or not data.startswith(_JPEG_START) or not data.endswith(_JPEG_END):
        return None
    buffer = np.frombuffer(data, dtype=np.uint8)
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.11 decodes straight to RGB
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag)
    if image is None or image.ndim != 3 or image.shape[2] != 3:
        return None
    return image if rgb_flag is not None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode_pillow(path: str, data: bytes) -> np.ndarray:
    """Pillow's decode of ``data`` (read from ``path``), converted as ``cv2.imread`` would."""
    import io

    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as image:
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
        raise DatasetError(f"cannot decode image {path}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    """Pillow's message without the in-memory buffer it names
    (``cannot identify image file <_io.BytesIO object at 0x...>``)."""
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image file Pillow can read (JPEG, PNG, BMP, ...)"
    return re.sub(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "the file", str(exc))


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

    Used only where it is faster and gives the same bytes (the tests check
    both paths against each other and against OpenCV): decoding complete
    JPEGs (:func:`decode_image`), ``cv2.resize`` (~20x the NumPy code above)
    and ``cv2.LUT`` for the value table. Those calls release the GIL, so
    :class:`ImagePreprocessor` can run on threads.
    """
    import os

    if os.environ.get("MLPERF_EDGE_NO_OPENCV"):
        return None
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def decoder_versions() -> dict:
    """The versions of the libraries whose output lands in the cache: JPEG
    decoders differ between releases (Pillow before 9.0 bundled IJG libjpeg 9,
    which decodes most ImageNet JPEGs to other pixels), so a cache written
    under one must not be read under another."""
    import PIL

    cv2 = opencv()
    return {"pillow": PIL.__version__, "opencv": cv2.__version__ if cv2 is not None else None,
            "numpy": np.__version__}


_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A reusable array of this thread (contents undefined), valid until the
    thread asks for ``name`` again.

    Per-image arrays of 150-200 kB are mapped fresh by the allocator and pay
    their page faults every time, which costs as much as the resize itself;
    one growing buffer per thread and name avoids that.
    """
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buffer = getattr(_SCRATCH, name, None)
    if buffer is None or buffer.size < nbytes:
        buffer = np.empty(nbytes, dtype=np.uint8)
        setattr(_SCRATCH, name, buffer)
    return buffer[:nbytes].view(dtype).reshape(shape)


def resize_and_crop(image: np.ndarray, out_height: int, out_width: int, method: str) -> np.ndarray:
    """Aspect-preserving resize then centre crop (OpenCV's bytes, with or without OpenCV)."""
    return _resize_and_crop(image, out_height, out_width, method, scratch=None)


def _resize_and_crop(image, out_height, out_width, method, scratch):
    """:func:`resize_and_crop`; with OpenCV, the full resize goes into the
    per-thread buffer named ``scratch`` (when not None) and the crop returned
    is a view of it."""
    height, width = scaled_size(image.shape[0], image.shape[1], out_height, out_width)
    top, left = crop_origin(height, width, out_height, out_width)
    cv2 = opencv()
    channels = image.shape[2]
    if cv2 is not None and channels in (1, 3, 4):
        flag = cv2.INTER_LINEAR if method == "linear" else cv2.INTER_AREA
        dst = None if scratch is None else _scratch(scratch, (height, width, channels), np.uint8)
        resized = cv2.resize(image, (width, height), dst=dst, interpolation=flag)
        return resized.reshape(height, width, channels)[top:top + out_height, left:left + out_width]
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


#: element types every OpenCV version's ``cv2.LUT`` writes (float16 goes through NumPy)
_LUT_DTYPES = frozenset(np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32,
                                              np.float32, np.float64))


@functools.lru_cache(maxsize=32)
def _opencv_lut(preprocessing: str, spec: TensorSpec) -> np.ndarray | None:
    """:func:`value_table` laid out for ``cv2.LUT`` (256 entries, one channel
    when every channel maps alike, as for MobileNet), or None when cv2.LUT
    cannot write the model's dtype."""
    table = value_table(preprocessing, spec)
    if table.dtype not in _LUT_DTYPES:
        return None
    if preprocessing == "mobilenet":
        return np.ascontiguousarray(table[:, 0])
    return np.ascontiguousarray(table.reshape(256, 1, 3))


@functools.lru_cache(maxsize=32)
def _opencv_affine(preprocessing: str, spec: TensorSpec, width: int) -> tuple[float, float] | None:
    """(alpha, beta) when ``cv2.convertScaleAbs(crop, alpha, beta)`` gives
    exactly :func:`value_table`'s bytes for crops ``width`` pixels wide, else None.

    MobileNet's normalise-and-quantise is an affine map of the pixel value;
    for uint8 inputs OpenCV computes it in SIMD float arithmetic, ~2-3x
    faster than ``cv2.LUT``. Its rounding is not NumPy's, so it is used only
    after checking every pixel value at every column of a window laid out as
    the real crop is (rows of a wider array: the SIMD body and row tail both
    run), against the table.
    """
    if preprocessing != "mobilenet" or spec.dtype != np.uint8 or not spec.quantized:
        return None
    alpha = 2.0 / (255.0 * spec.scale)
    beta = spec.zero_point - 1.0 / spec.scale
    values = (np.arange(256)[:, None] + np.arange(width * 3)[None, :]) % 256
    wider = np.zeros((256, width + 16, 3), dtype=np.uint8)
    window = wider[:, 8:8 + width]
    window[...] = values.reshape(256, width, 3)
    got = opencv().convertScaleAbs(window, alpha=alpha, beta=beta)  # only called with OpenCV present
    return (alpha, beta) if np.array_equal(got, value_table(preprocessing, spec)[:, 0][window]) else None


def _quantise_into(crop: np.ndarray, params: ImageParams, out: np.ndarray) -> None:
    """Normalise and quantise the uint8 (H, W, 3) ``crop`` into ``out`` (same shape), value by value."""
    if not _quantise_opencv(crop, params, out):
        _quantise_numpy(crop, params, out)


def _quantise_opencv(crop: np.ndarray, params: ImageParams, out: np.ndarray) -> bool:
    """``cv2.convertScaleAbs`` or ``cv2.LUT`` into ``out``; False when neither fits (or no OpenCV)."""
    cv2 = opencv()
    if cv2 is None:
        return False
    affine = None if crop.flags.c_contiguous else _opencv_affine(params.preprocessing, params.spec, crop.shape[1])
    if affine is not None:
        result = cv2.convertScaleAbs(crop, dst=out, alpha=affine[0], beta=affine[1])
    else:
        lut = _opencv_lut(params.preprocessing, params.spec)
        if lut is None:
            return False
        result = cv2.LUT(crop, lut, dst=out)
    if result is not out:  # OpenCV allocated its own array instead
        np.copyto(out, result.reshape(out.shape))
    return True


def _quantise_numpy(crop: np.ndarray, params: ImageParams, out: np.ndarray) -> None:
    table = value_table(params.preprocessing, params.spec)
    if params.preprocessing == "mobilenet":  # the same for every channel
        np.take(table[:, 0], crop, out=out, mode="clip")  # indices are 0..255: "clip" never clips
    else:
        np.take(table.ravel(), crop.astype(np.intp) * 3 + np.arange(3), out=out, mode="clip")


def preprocess_array(image: np.ndarray, params: ImageParams, out: np.ndarray | None = None) -> np.ndarray:
    """RGB uint8 image -> one model input tensor (layout and dtype of ``params.spec``).

    With ``out`` (e.g. a row of the cache file) the tensor is written there
    and ``out`` returned, without an intermediate array.
    """
    out = _output_array(params.spec, out)
    out_height, out_width = params.size
    crop = _resize_and_crop(image, out_height, out_width, params.resize_method, scratch="resized")
    layout = params.spec.layout
    if layout == "NHWC":
        _quantise_into(crop, params, out)
    elif layout == "NCHW":
        hwc = _scratch("hwc", (out_height, out_width, crop.shape[2]), out.dtype)
        _quantise_into(crop, params, hwc)
        np.copyto(out, hwc.transpose(2, 0, 1))
    else:
        raise ValueError(f"unknown layout '{layout}'; accepted: NHWC, NCHW")
    return out


def _output_array(spec: TensorSpec, out: np.ndarray | None) -> np.ndarray:
    """``out``, checked against the model input, or a new array for it."""
    shape = tuple(spec.shape)
    if out is None:
        return np.empty(shape, dtype=spec.dtype)
    if out.shape != shape or out.dtype != spec.dtype:
        raise ValueError(f"cannot write the model input {spec.dtype}{shape} into an array of "
                         f"{out.dtype}{out.shape}")
    return out


def preprocess_file(path: str, params: ImageParams, out: np.ndarray | None = None) -> np.ndarray:
    """Image file -> one model input tensor (into ``out`` when given); DatasetError names an unreadable file."""
    return preprocess_array(decode_image(path), params, out)


@dataclasses.dataclass(frozen=True)
class ImagePreprocessor:
    """Image file -> model input tensor, in the form ``datasets.cache.prepare`` uses best.

    Picklable, for worker processes. ``into`` writes straight into a row of
    the cache; ``releases_gil`` tells the cache it may run this on threads
    (no process start-up, nothing pickled): with OpenCV, the heavy steps
    (JPEG decode, resize, look-up) run outside the GIL.
    """

    params: ImageParams

    def __call__(self, path: str) -> np.ndarray:
        return preprocess_file(path, self.params)

    def into(self, path: str, out: np.ndarray) -> None:
        preprocess_file(path, self.params, out)

    @property
    def releases_gil(self) -> bool:
        return opencv() is not None
