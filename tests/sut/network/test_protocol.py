import numpy as np
import pytest

from sut.network import protocol

BOOT = b"\x01" * protocol.BOOT_ID_BYTES


def test_request_round_trip():
    data = protocol.encode_request([0, 5, 59])
    assert len(data) == 12 + 3 * 4
    assert protocol.decode_request(data, 60).tolist() == [0, 5, 59]


@pytest.mark.parametrize("data, message", [
    (b"", "shorter than its 12-byte header"),
    (b"XXXX" + protocol.encode_request([1])[4:], "magic bytes"),
    (protocol.encode_request([1])[:4] + b"\x09\x00" + protocol.encode_request([1])[6:], "protocol version 9"),
    (protocol.encode_request([1, 2])[:-1], "should be 20 for 2 samples"),
    (protocol.encode_request([1, 2]) + b"\0\0\0\0", "should be 20 for 2 samples"),
    (protocol.encode_request([60]), "sample index 60 is out of range: this node holds 60 samples"),
    (protocol.encode_request([1])[:8] + b"\0\0\0\0", "holds 0 samples"),
    (protocol.encode_request([1])[:8] + b"\xff\xff\xff\xff", "holds 4294967295 samples"),
])
def test_request_is_validated(data, message):
    with pytest.raises(protocol.MessageError, match=message):
        protocol.decode_request(data, 60)


def test_request_size_is_bounded():
    with pytest.raises(protocol.MessageError, match="1 to 65536"):
        protocol.encode_request(range(protocol.MAX_SAMPLES + 1))
    with pytest.raises(protocol.MessageError, match="1 to"):
        protocol.encode_request([])
    assert len(protocol.encode_request(range(protocol.MAX_SAMPLES))) <= protocol.MAX_REQUEST_BYTES


def test_response_round_trip_keeps_float32_rows():
    rows = np.array([[3.0], [7.0]], np.float32)
    data = protocol.encode_response(BOOT, rows)
    got = protocol.decode_response(data, 2, 1, BOOT)
    assert got.dtype == np.float32 and got.tolist() == [[3.0], [7.0]]


@pytest.mark.parametrize("change, message", [
    (lambda d: d[:-1], "should be"),
    (lambda d: b"junk" + d[4:], "not a version-1 MLER"),
    (lambda d: d[:8] + b"\x02" * 8 + d[16:], "another boot of the node"),
    (lambda d: b"garbage", "shorter than its 24-byte header"),
])
def test_response_is_validated(change, message):
    data = change(protocol.encode_response(BOOT, np.zeros((2, 1), np.float32)))
    with pytest.raises(protocol.MessageError, match=message):
        protocol.decode_response(data, 2, 1, BOOT)


def test_response_with_other_shape_is_refused():
    data = protocol.encode_response(BOOT, np.zeros((3, 1), np.float32))
    with pytest.raises(protocol.MessageError, match="3 rows of 1 values; 2 rows of 1 were expected"):
        protocol.decode_response(data, 2, 1, BOOT)
