"""int8 by calibration: a Q/DQ copy of a float ONNX model, made by ONNX Runtime.

``--precision int8`` means one thing for every backend that reads ONNX (ONNX
Runtime, OpenVINO, TensorRT): the float model is quantised statically by
``onnxruntime.quantization.quantize_static`` into the QDQ format
(QuantizeLinear/DequantizeLinear pairs around the quantised tensors), from the
dataset's own preprocessed calibration samples, and the backend loads that
copy. Every runtime then runs the same scales and zero points.

Settings (:class:`QuantSettings`, defaults chosen to run everywhere): int8
activations and int8 weights, both symmetric (zero point 0, what TensorRT
requires and what ONNX Runtime recommends for GPUs and ARM CPUs), per-tensor
scales, MinMax calibration. Two alternatives were measured and are not the
default: uint8 asymmetric activations (ONNX Runtime's advice for x86 CPUs)
saturate ONNX Runtime's u8s8 kernels on x86 CPUs without VNNI unless
``reduce_range`` is set (KWS: 16/200 right instead of 183/200; OpenVINO runs the
same model correctly); per-channel weights are miscomputed for a ``Gemm``
with ``transB=0`` by ONNX Runtime 1.32's optimised graph and by OpenVINO
2026.4 alike (the unoptimised ONNX Runtime graph is right).

The Q/DQ model is cached under ``<cache_root>/qdq/`` with a key made of the
float model's sha256, the calibration set (sha256 of every batch's dtype,
shape and bytes, and the sample count), the settings and the onnxruntime
version, written as a temporary file and renamed when complete; the next run
with the same inputs reuses it without calibrating.

A model that already quantises its activations (QuantizeLinear,
DynamicQuantizeLinear, QLinear* or *Integer ops) is used as it is. A float
model whose weights alone are stored as int8 behind DequantizeLinear (what
``tf2onnx`` makes of a dynamic-range .tflite) still counts as float.

``onnxruntime`` and ``onnx`` are imported only when calibrating.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from backends.base import TensorSpec, file_sha256
from sut.errors import BackendUnavailable, ConfigError, HarnessError, ModelError

log = logging.getLogger(__name__)

#: bump when this module's output for the same inputs changes
FORMAT_VERSION = 1
EXTRA = "onnxruntime"
#: ops that quantise activations (a model holding one is already quantised)
ACTIVATION_QUANT_OPS = frozenset({
    "QuantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul", "QLinearAdd",
    "QLinearMul", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearLeakyRelu",
    "QLinearSigmoid", "QLinearSoftmax", "ConvInteger", "MatMulInteger", "DynamicQuantizeMatMul",
})
#: ONNX TensorProto element type -> NumPy dtype (the types a model input may have here)
_ONNX_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64,
                10: np.float16, 11: np.float64}
_FLOAT16, _BFLOAT16 = 10, 16
_QUANT_TYPES = {"int8": "QInt8", "uint8": "QUInt8"}
_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


@dataclasses.dataclass(frozen=True)
class QuantSettings:
    """What ``quantize_static`` is asked for; every field is part of the cache key."""

    activation_type: str = "int8"      # int8 | uint8
    weight_type: str = "int8"          # int8 | uint8
    per_channel: bool = False          # weights quantised per output channel (see the module notes)
    calibrate_method: str = "minmax"   # minmax | entropy | percentile
    symmetric_activations: bool = True  # zero point 0 (TensorRT needs it)
    symmetric_weights: bool = True
    reduce_range: bool = False         # 7-bit weights (old x86 CPUs without VNNI)

    @classmethod
    def make(cls, settings: QuantSettings | Mapping[str, Any] | None) -> QuantSettings:
        """Settings from None (defaults), an instance, or a mapping of field overrides."""
        if settings is None:
            return cls()
        if isinstance(settings, cls):
            chosen = settings
        else:
            fields = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(settings) - fields)
            if unknown:
                raise ConfigError(f"unknown int8 calibration setting {', '.join(unknown)}; "
                                  f"accepted: {', '.join(sorted(fields))}")
            chosen = cls(**dict(settings))
        for name, value, allowed in (("activation_type", chosen.activation_type, _QUANT_TYPES),
                                     ("weight_type", chosen.weight_type, _QUANT_TYPES),
                                     ("calibrate_method", chosen.calibrate_method, _METHODS)):
            if value not in allowed:
                raise ConfigError(f"int8 calibration setting {name}={value!r}; choose one of: {', '.join(allowed)}")
        return chosen


# --- what a model is ---------------------------------------------------------------------

def _load_onnx(model_path: str | os.PathLike):
    """The ModelProto (no external weights), or ModelError / BackendUnavailable."""
    path = Path(model_path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    if path.suffix.lower() != ".onnx":
        raise ModelError(f"int8 calibration makes a Q/DQ ONNX copy of a float ONNX model; {path} is not "
                         "an ONNX model (.onnx): convert it to ONNX, or leave --precision unset")
    try:
        import onnx
    except ImportError as exc:
        raise BackendUnavailable(f"int8 calibration needs the Python module 'onnx' ({exc}); "
                                 f"pip install -e '.[{EXTRA}]'") from exc
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for a file that is not ONNX
        raise ModelError(f"{path} is not a readable ONNX model: {exc}") from exc


def _nodes(graph):
    """Every node of ``graph`` and of its subgraphs (If/Loop bodies)."""
    stack = [graph]
    while stack:
        g = stack.pop()
        for node in g.node:
            yield node
            for attr in node.attribute:
                if attr.HasField("g"):
                    stack.append(attr.g)
                stack.extend(attr.graphs)


def _quantisation_ops(model) -> set[str]:
    """Op types in ``model`` that quantise activations; a DequantizeLinear of a
    constant (weight-only quantisation) does not count."""
    constants = {init.name for init in model.graph.initializer}
    constants |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    found = set()
    for node in _nodes(model.graph):
        if node.op_type in ACTIVATION_QUANT_OPS:
            found.add(node.op_type)
        elif node.op_type == "DequantizeLinear" and node.input and node.input[0] not in constants:
            found.add(node.op_type)
    return found


def is_quantized(model_path: str | os.PathLike) -> bool:
    """Whether the ONNX model already quantises its activations (Q/DQ or QOperator)."""
    return bool(_quantisation_ops(_load_onnx(model_path)))


def model_precision(model_path: str | os.PathLike) -> str:
    """``"int8"`` (activations quantised), ``"fp16"`` (float16 or bfloat16 tensors) or ``"fp32"``."""
    model = _load_onnx(model_path)
    if _quantisation_ops(model):
        return "int8"
    types = [init.data_type for init in model.graph.initializer]
    types += [vi.type.tensor_type.elem_type for vi in model.graph.input]
    return "fp16" if any(t in (_FLOAT16, _BFLOAT16) for t in types) else "fp32"


def input_spec(model_path: str | os.PathLike) -> TensorSpec:
    """The model's one input, per sample, as the harness describes it (layout guessed
    like the ONNX backends do: (3,H,W) is NCHW, (H,W,3) NHWC)."""
    return _input_spec(_load_onnx(model_path), model_path)


def _input_spec(model, model_path) -> TensorSpec:
    initializers = {init.name for init in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"{model_path} has {len(inputs)} inputs; int8 calibration feeds models with exactly one")
    vi = inputs[0]
    elem = vi.type.tensor_type.elem_type
    if elem not in _ONNX_DTYPES:
        raise ModelError(f"{model_path}: input '{vi.name}' has ONNX element type {elem}, which calibration "
                         "cannot feed")
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim]
    shape = tuple(dims[1:])
    if not dims or any(d < 1 for d in shape):
        raise ModelError(f"{model_path}: input '{vi.name}' has shape {dims}; calibration needs a batch "
                         "dimension first and fixed sizes after it")
    layout = "NCHW" if len(shape) == 3 and shape[0] == 3 else "NHWC" if len(shape) == 3 and shape[-1] == 3 else None
    return TensorSpec(vi.name, shape, _ONNX_DTYPES[elem], layout)


def _fixed_batch(model) -> int | None:
    """The input's fixed batch size, or None when it is symbolic."""
    initializers = {init.name for init in model.graph.initializer}
    vi = next(v for v in model.graph.input if v.name not in initializers)
    dims = vi.type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None


# --- the Q/DQ model ------------------------------------------------------------------------

def for_backend(model_path: str, options, cache_root: str | os.PathLike | None) -> tuple[str, TensorSpec | None]:
    """What a backend loads for ``--precision int8`` on an ONNX model (called by
    ``Backend.load``): ``(model_path, None)`` when the model is already
    quantised, else ``(Q/DQ copy, the input spec its calibration data was made
    for)``, calibrated on ``options.calibration(spec)``."""
    model = _load_onnx(model_path)
    ops = _quantisation_ops(model)
    if ops:
        log.info("int8: %s is already quantised (%s): running it as it is", model_path, ", ".join(sorted(ops)))
        return model_path, None
    if options.calibration is None:
        raise ConfigError(f"precision int8 on the float model {model_path} needs calibration samples: "
                          "BackendOptions.calibration is unset (the harness sets it from the dataset)")
    spec = _input_spec(model, model_path)
    return str(qdq_model(model_path, spec, options.calibration(spec), cache_root)), spec


def qdq_model(model_path: str | os.PathLike, spec: TensorSpec, batches: Iterable[np.ndarray],
              cache_root: str | os.PathLike | None = None,
              settings: QuantSettings | Mapping[str, Any] | None = None) -> Path:
    """A Q/DQ copy of the float ONNX ``model_path``, calibrated on ``batches``.

    ``batches``: input arrays ``(n, *spec.shape)`` of ``spec.dtype``,
    preprocessed for ``spec`` (the model's input). Returns the cached copy's
    path (``<cache_root>/qdq/``; ``cache_root`` None: the harness cache
    directory), or ``model_path`` itself when the model is already quantised.
    Raises ModelError (not ONNX, unreadable, quantisation failed), ConfigError
    (no or mismatched calibration data), BackendUnavailable (no onnxruntime/onnx).
    """
    model_path = Path(model_path)
    model = _load_onnx(model_path)
    ops = _quantisation_ops(model)
    if ops:
        log.info("int8: %s is already quantised (%s): using it as it is", model_path, ", ".join(sorted(ops)))
        return model_path
    try:
        import onnxruntime
        from onnxruntime import quantization
    except ImportError as exc:
        raise BackendUnavailable(f"int8 calibration needs onnxruntime's quantisation tools ({exc}); "
                                 f"pip install -e '.[{EXTRA}]'") from exc
    chosen = QuantSettings.make(settings)
    data, count, data_sha = _calibration_set(batches, spec)
    if not count:
        raise ConfigError(f"int8 calibration of {model_path} got no calibration samples")
    ident = {"format": FORMAT_VERSION, "model_sha256": file_sha256(model_path),
             "calibration": {"sha256": data_sha, "count": count},
             "settings": dataclasses.asdict(chosen), "onnxruntime": onnxruntime.__version__}
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]
    folder = Path(cache_root) if cache_root is not None else _default_cache_root()
    folder = folder / "qdq"
    final = folder / f"{_safe_stem(model_path)}-{key}.qdq.onnx"
    if final.is_file():
        log.info("int8: using cached Q/DQ model %s", final)
        return final
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{final.stem}.partial{os.getpid()}.onnx"
    reader = _reader(quantization.CalibrationDataReader, model.graph, data, _fixed_batch(model), count,
                     str(model_path))
    log.warning("int8: calibrating %s on %d samples (onnxruntime %s, %s); this may take a while",
                model_path, count, onnxruntime.__version__, _describe(chosen))
    start = time.monotonic()
    try:
        quantization.quantize_static(
            str(model_path), str(partial), reader,
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=chosen.per_channel,
            reduce_range=chosen.reduce_range,
            activation_type=getattr(quantization.QuantType, _QUANT_TYPES[chosen.activation_type]),
            weight_type=getattr(quantization.QuantType, _QUANT_TYPES[chosen.weight_type]),
            calibrate_method=getattr(quantization.CalibrationMethod, _METHODS[chosen.calibrate_method]),
            extra_options={"ActivationSymmetric": chosen.symmetric_activations,
                           "WeightSymmetric": chosen.symmetric_weights},
        )
        _write_json(folder / f"{final.stem}.json", {**ident, "model": str(model_path), "qdq_model": str(final)})
        os.replace(partial, final)
    except BaseException as exc:
        _unlink(partial)
        if not isinstance(exc, Exception) or isinstance(exc, HarnessError):
            raise
        raise ModelError(f"onnxruntime {onnxruntime.__version__} could not quantise {model_path}: "
                         f"{type(exc).__name__}: {_first_line(exc)}") from exc
    log.warning("int8: wrote %s in %.1f s", final, time.monotonic() - start)
    return final


def _calibration_set(batches: Iterable[np.ndarray], spec: TensorSpec) -> tuple[list[np.ndarray], int, str]:
    """The batches as contiguous arrays, their sample count and a sha256 of them all."""
    h, data, count = hashlib.sha256(), [], 0
    for batch in batches:
        batch = np.ascontiguousarray(batch)
        if batch.dtype != spec.dtype or batch.shape[1:] != spec.shape:
            raise ConfigError(f"calibration batch is {batch.dtype.name}{list(batch.shape)}; the model input "
                              f"'{spec.name}' takes {spec.dtype.name}[n, {', '.join(map(str, spec.shape))}]")
        if not len(batch):
            continue
        h.update(f"{batch.dtype.str}{batch.shape}".encode())
        h.update(memoryview(batch).cast("B"))
        data.append(batch)
        count += len(batch)
    return data, count, h.hexdigest()


def _reader(base, graph, data: list[np.ndarray], fixed_batch: int | None, count: int, label: str):
    """A ``CalibrationDataReader`` (``base``: onnxruntime's, imported lazily) over
    in-memory batches, cut to the model's fixed batch size when it has one; logs progress."""
    initializers = {init.name for init in graph.initializer}
    input_name = next(v.name for v in graph.input if v.name not in initializers)
    if fixed_batch:
        joined = np.concatenate(data)
        usable = len(joined) // fixed_batch * fixed_batch
        if usable < len(joined):
            log.info("int8: the model takes batches of %d: %d calibration samples not used",
                     fixed_batch, len(joined) - usable)
        data = [joined[i:i + fixed_batch] for i in range(0, usable, fixed_batch)]

    class Reader(base):
        def __init__(self):
            self.position, self.fed, self.next_report = 0, 0, time.monotonic() + 10

        def get_next(self):
            if self.position >= len(data):
                return None
            batch = data[self.position]
            self.position += 1
            self.fed += len(batch)
            if time.monotonic() >= self.next_report or self.position == len(data):
                log.info("int8: calibration of %s: %d/%d samples", label, self.fed, count)
                self.next_report = time.monotonic() + 10
            return {input_name: batch}

        def rewind(self):
            self.position, self.fed = 0, 0

        def __len__(self):
            return len(data)

    return Reader()


# --- helpers -----------------------------------------------------------------------------

def _describe(settings: QuantSettings) -> str:
    sym = lambda on: "symmetric" if on else "asymmetric"  # noqa: E731
    return (f"{settings.activation_type} {sym(settings.symmetric_activations)} activations, "
            f"{settings.weight_type} {sym(settings.symmetric_weights)} weights "
            f"{'per channel' if settings.per_channel else 'per tensor'}, {settings.calibrate_method}")


def _default_cache_root() -> Path:
    from datasets.cache import DEFAULT_CACHE_DIR

    return Path(DEFAULT_CACHE_DIR)


def _safe_stem(path: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem)
    return stem[:60] or "model"


def _write_json(path: Path, data: dict) -> None:
    partial = path.with_name(f"{path.name}.partial{os.getpid()}")
    partial.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(partial, path)


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else ""
