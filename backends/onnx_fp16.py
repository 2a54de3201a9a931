"""An fp16 copy of a float ONNX model, cached on disk.

TensorRT 11 builds strongly typed networks only: a layer runs in the type of
its tensors, and there is no ``BuilderFlag.FP16`` any more. ``fp16`` there
means building from an ONNX file whose weights and activations are float16.
:func:`fp16_model` makes that copy with ``onnxconverter-common``'s
``float16.convert_float_to_float16`` (inputs and outputs stay float32, so the
harness's preprocessing and postprocessing do not change; casts are inserted
at the edges) and keeps it at ``<cache_root>/<sha256 of the model>-fp16-<converter
version>.onnx``, so it is made once per model and converter version.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sut.errors import BackendUnavailable, ModelError

log = logging.getLogger(__name__)

#: bump when the conversion settings below change
FORMAT = 2


def converter_version() -> str:
    """``onnxconverter-common``'s version, or BackendUnavailable saying how to install it."""
    try:
        import onnxconverter_common
    except ImportError as exc:
        raise BackendUnavailable(
            f"an fp16 ONNX model needs the 'onnxconverter-common' package, which is not installed ({exc}): "
            "pip install onnxconverter-common (or pip install -e '.[tensorrt-cu12]')") from exc
    return str(onnxconverter_common.__version__)


def fp16_path(cache_root: str | os.PathLike, model_sha256: str, version: str) -> Path:
    return Path(cache_root) / f"{model_sha256[:24]}-fp16-occ{version}-f{FORMAT}.onnx"


def fp16_model(model_path: str | os.PathLike, model_sha256: str, cache_root: str | os.PathLike) -> Path:
    """The cached fp16 copy of ``model_path`` (made now if absent); float32 inputs and outputs."""
    version = converter_version()
    out = fp16_path(cache_root, model_sha256, version)
    if out.exists():
        log.info("fp16 model from cache: %s", out)
        return out
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(model_path))
    try:
        # Q/DQ nodes stay float32 (their scales may be float16 only from opset 19): a model whose
        # weights are int8 behind DequantizeLinear gets a Cast after it
        block = list(float16.DEFAULT_OP_BLOCK_LIST) + ["QuantizeLinear", "DequantizeLinear"]
        converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    except Exception as exc:  # noqa: BLE001 - the converter raises assorted errors on models it cannot take
        raise ModelError(f"cannot convert {model_path} to fp16 with onnxconverter-common {version}: "
                         f"{type(exc).__name__}: {exc}") from exc
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.tmp.{os.getpid()}")
    onnx.save(converted, str(tmp))
    os.replace(tmp, out)
    log.info("fp16 model written: %s (onnxconverter-common %s)", out, version)
    return out
