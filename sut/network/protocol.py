"""The wire format between the LoadGen node and SUT nodes (gRPC, bytes in and out).

Two unary methods of one gRPC service, with no generated code (the payloads
are plain bytes, never pickle or anything else that executes code):

``Describe``: empty request; the node answers a UTF-8 JSON object saying what
it is (backend, model, dataset fingerprint, speed, host).

``Predict``: a request is a 12-byte header (magic ``MLEQ``, version, flags,
sample count) then the dataset indices as little-endian uint32. The answer is
a 24-byte header (magic ``MLER``, version, flags, the node's boot id, sample
count, response width) then the response rows as little-endian float32, one
row per index, in request order: exactly the rows a local run completes
LoadGen's samples with (``datasets.base.RESPONSE_DTYPE``).

Both sides check every field and the exact length; a bad message is an error,
never a guess.
"""

from __future__ import annotations

import struct

import numpy as np

SERVICE = "mlperf_edge.SutNode"
DESCRIBE = "/%s/Describe" % SERVICE
PREDICT = "/%s/Predict" % SERVICE
VERSION = 1

#: most samples in one Predict request
MAX_SAMPLES = 65536
#: most bytes a node accepts in one request (gRPC refuses larger ones itself)
MAX_REQUEST_BYTES = 64 * 1024 + 4 * MAX_SAMPLES
#: most floats in one response row, and most bytes of a Describe answer
MAX_WIDTH = 1 << 20
MAX_DESCRIBE_BYTES = 1 << 20
#: most bytes the LoadGen node accepts in one answer
MAX_RESPONSE_BYTES = 256 << 20

_REQUEST = struct.Struct("<4sHHI")
_RESPONSE = struct.Struct("<4sHH8sII")
INDEX_DTYPE = np.dtype("<u4")
ROW_DTYPE = np.dtype("<f4")
BOOT_ID_BYTES = 8


class MessageError(ValueError):
    """A message that does not follow this format (the text says which field)."""


def encode_request(indices) -> bytes:
    array = np.asarray(indices, dtype=np.int64)
    if not 1 <= len(array) <= MAX_SAMPLES:
        raise MessageError("a request holds 1 to %d samples, not %d" % (MAX_SAMPLES, len(array)))
    if array.min() < 0 or array.max() > 0xFFFFFFFF:
        raise MessageError("sample index out of the uint32 range")
    return _REQUEST.pack(b"MLEQ", VERSION, 0, len(array)) + array.astype(INDEX_DTYPE).tobytes()


def decode_request(data: bytes, sample_count: int) -> np.ndarray:
    """Indices (int64) from a request; MessageError unless every field is valid
    and every index is below ``sample_count``."""
    if len(data) < _REQUEST.size:
        raise MessageError("request of %d bytes is shorter than its %d-byte header" % (len(data), _REQUEST.size))
    magic, version, flags, count = _REQUEST.unpack_from(data)
    if magic != b"MLEQ":
        raise MessageError("request does not start with the magic bytes MLEQ")
    if version != VERSION:
        raise MessageError("request has protocol version %d; this node speaks %d" % (version, VERSION))
    if flags:
        raise MessageError("request has unknown flags %#x" % flags)
    if not 1 <= count <= MAX_SAMPLES:
        raise MessageError("request holds %d samples; 1 to %d are allowed" % (count, MAX_SAMPLES))
    expected = _REQUEST.size + count * INDEX_DTYPE.itemsize
    if len(data) != expected:
        raise MessageError("request of %d bytes should be %d for %d samples" % (len(data), expected, count))
    indices = np.frombuffer(data, INDEX_DTYPE, count, _REQUEST.size).astype(np.int64)
    if int(indices.max()) >= sample_count:
        raise MessageError("sample index %d is out of range: this node holds %d samples"
                           % (int(indices.max()), sample_count))
    return indices


def encode_response(boot_id: bytes, rows: np.ndarray) -> bytes:
    rows = np.ascontiguousarray(rows, dtype=ROW_DTYPE)
    if rows.ndim != 2:
        rows = rows.reshape(len(rows), -1)
    return _RESPONSE.pack(b"MLER", VERSION, 0, boot_id, rows.shape[0], rows.shape[1]) + rows.tobytes()


def decode_response(data: bytes, count: int, width: int, boot_id: bytes) -> np.ndarray:
    """(count, width) float32 rows from an answer; MessageError unless it
    answers exactly ``count`` samples with rows of ``width`` from the node
    whose boot id is ``boot_id`` (a restarted node has another one)."""
    if len(data) < _RESPONSE.size:
        raise MessageError("answer of %d bytes is shorter than its %d-byte header" % (len(data), _RESPONSE.size))
    magic, version, flags, boot, got_count, got_width = _RESPONSE.unpack_from(data)
    if magic != b"MLER" or version != VERSION or flags:
        raise MessageError("answer is not a version-%d MLER message" % VERSION)
    if boot != boot_id:
        raise MessageError("answer comes from another boot of the node (boot id %s, expected %s): "
                           "it restarted during the run" % (boot.hex(), boot_id.hex()))
    if got_count != count or got_width != width:
        raise MessageError("answer holds %d rows of %d values; %d rows of %d were expected"
                           % (got_count, got_width, count, width))
    expected = _RESPONSE.size + count * width * ROW_DTYPE.itemsize
    if len(data) != expected:
        raise MessageError("answer of %d bytes should be %d" % (len(data), expected))
    return np.frombuffer(data, ROW_DTYPE, count * width, _RESPONSE.size).reshape(count, width)
