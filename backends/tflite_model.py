"""Reading a .tflite file without a runtime: its custom ops and its input/output tensors.

Backends call this before building an interpreter, to refuse a model with a
clear message (an Edge TPU model on the CPU backend, a file that is not
TFLite at all) instead of the runtime's own error.

The file is a FlatBuffer (schema: ``tensorflow/compiler/mlir/lite/schema/schema.fbs``).
It is read here with a ~40-line reader rather than the generated schema module
shipped as ``ai_edge_litert.schema_py_generated``: ``tflite_runtime`` (what Coral
boards have) does not ship that module, and the few fields needed here are
simple. The tests check this reader against that module where it is installed.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

from sut.errors import ModelError

TFLITE_IDENTIFIER = b"TFL3"
EDGETPU_CUSTOM_OP = "edgetpu-custom-op"

# schema.fbs TensorType -> NumPy dtype (types with no NumPy equivalent are left out)
_DTYPES = {
    0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_,
    7: np.int16, 9: np.int8, 10: np.float64, 12: np.uint64, 15: np.uint32, 16: np.uint16,
}

# field numbers in schema.fbs
_MODEL_OPERATOR_CODES, _MODEL_SUBGRAPHS = 1, 2
_OPCODE_CUSTOM_CODE = 1
_SUBGRAPH_TENSORS, _SUBGRAPH_INPUTS, _SUBGRAPH_OUTPUTS = 0, 1, 2
_TENSOR_SHAPE, _TENSOR_TYPE, _TENSOR_NAME, _TENSOR_QUANTIZATION, _TENSOR_SHAPE_SIGNATURE = 0, 1, 3, 4, 7
_QUANT_SCALE, _QUANT_ZERO_POINT = 2, 3

# what reading a truncated or corrupt file raises
_MALFORMED = (IndexError, struct.error, UnicodeDecodeError)


class TFLiteTensor(NamedTuple):
    """One input or output of the main subgraph, as stored in the file.

    ``shape`` includes the batch dimension; ``shape_signature`` has -1 for
    dimensions that may be resized (``None`` when the file has none).
    ``scale``/``zero_point`` are the per-tensor quantisation, ``None`` when
    the tensor is not quantised (or quantised per channel).
    ``dtype`` is ``None`` for types NumPy cannot hold (strings, resources).
    """

    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    dtype: np.dtype | None
    scale: float | None
    zero_point: int | None


def custom_ops(path: str) -> set[str]:
    """Names of the custom ops the model uses, e.g. ``{"edgetpu-custom-op"}``."""
    root = _read_root(path)
    try:
        return {code for op in root.tables(_MODEL_OPERATOR_CODES)
                if (code := op.string(_OPCODE_CUSTOM_CODE))}
    except _MALFORMED as exc:
        raise ModelError(f"{path} is a truncated or corrupt TFLite file ({exc})") from exc


def is_edgetpu_model(path: str) -> bool:
    """Whether the model was compiled by the Edge TPU compiler."""
    return EDGETPU_CUSTOM_OP in custom_ops(path)


def io_tensors(path: str) -> tuple[tuple[TFLiteTensor, ...], tuple[TFLiteTensor, ...]]:
    """The main subgraph's (inputs, outputs)."""
    root = _read_root(path)
    subgraphs = root.tables(_MODEL_SUBGRAPHS)
    if not subgraphs:
        raise ModelError(f"{path} is a TFLite file with no subgraph")
    graph = subgraphs[0]
    tensors = graph.tables(_SUBGRAPH_TENSORS)
    try:
        return (tuple(_tensor(tensors[i]) for i in graph.vector(_SUBGRAPH_INPUTS, "i")),
                tuple(_tensor(tensors[i]) for i in graph.vector(_SUBGRAPH_OUTPUTS, "i")))
    except _MALFORMED as exc:
        raise ModelError(f"{path} is a truncated or corrupt TFLite file ({exc})") from exc


def _tensor(table: _Table) -> TFLiteTensor:
    quant = table.table(_TENSOR_QUANTIZATION)
    scales = quant.vector(_QUANT_SCALE, "f") if quant else ()
    zero_points = quant.vector(_QUANT_ZERO_POINT, "q") if quant else ()
    per_tensor = len(scales) == 1 and scales[0] != 0
    dtype = _DTYPES.get(table.scalar(_TENSOR_TYPE, "b", 0))
    signature = table.vector(_TENSOR_SHAPE_SIGNATURE, "i")
    return TFLiteTensor(
        name=table.string(_TENSOR_NAME) or "",
        shape=table.vector(_TENSOR_SHAPE, "i"),
        shape_signature=signature or None,
        dtype=np.dtype(dtype) if dtype else None,
        scale=float(scales[0]) if per_tensor else None,
        zero_point=(int(zero_points[0]) if zero_points else 0) if per_tensor else None,
    )


def _read_root(path: str) -> _Table:
    try:
        with open(path, "rb") as f:
            buf = f.read()
    except OSError as exc:
        raise ModelError(f"cannot read model {path}: {exc}") from exc
    if len(buf) < 8 or buf[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(
            f"{path} is not a TFLite model (no '{TFLITE_IDENTIFIER.decode()}' FlatBuffer identifier)"
        )
    try:
        return _Table(buf, _u32(buf, 0))
    except _MALFORMED as exc:
        raise ModelError(f"{path} is a truncated or corrupt TFLite file ({exc})") from exc


def _u32(buf: bytes, pos: int) -> int:
    return struct.unpack_from("<I", buf, pos)[0]


class _Table:
    """A FlatBuffers table: fields found through its vtable, absent ones give defaults."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_size = struct.unpack_from("<H", buf, self.vtable)[0]

    def _offset(self, field: int) -> int:
        at = 4 + 2 * field
        return struct.unpack_from("<H", self.buf, self.vtable + at)[0] if at < self.vtable_size else 0

    def _target(self, field: int) -> int | None:
        """Where an offset field (table, vector, string) points, or None if absent."""
        off = self._offset(field)
        if not off:
            return None
        at = self.pos + off
        return at + _u32(self.buf, at)

    def scalar(self, field: int, fmt: str, default):
        off = self._offset(field)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0] if off else default

    def string(self, field: int) -> str | None:
        at = self._target(field)
        if at is None:
            return None
        return self.buf[at + 4: at + 4 + _u32(self.buf, at)].decode("utf-8")

    def vector(self, field: int, fmt: str) -> tuple:
        at = self._target(field)
        if at is None:
            return ()
        return struct.unpack_from(f"<{_u32(self.buf, at)}{fmt}", self.buf, at + 4)

    def table(self, field: int) -> _Table | None:
        at = self._target(field)
        return None if at is None else _Table(self.buf, at)

    def tables(self, field: int) -> list[_Table]:
        at = self._target(field)
        if at is None:
            return []
        slots = (at + 4 + 4 * k for k in range(_u32(self.buf, at)))
        return [_Table(self.buf, slot + _u32(self.buf, slot)) for slot in slots]
