"""datasets.wav: 16 kHz mono int16 accepted, every other kind of file refused clearly."""

from __future__ import annotations

import struct
import wave

import numpy as np
import pytest

from datasets.wav import parse_wav, read_wav
from sut.errors import DatasetError
from tests.conftest import shared_path

EXTENSIBLE_PCM_GUID = struct.pack("<H", 1) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
EXTENSIBLE_FLOAT_GUID = struct.pack("<H", 3) + EXTENSIBLE_PCM_GUID[2:]


def chunk(chunk_id: bytes, body: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) % 2 else b"")


def fmt_body(tag=1, channels=1, rate=16000, bits=16, guid=None) -> bytes:
    align = channels * bits // 8
    body = struct.pack("<HHIIHH", 0xFFFE if guid else tag, channels, rate, rate * align, align, bits)
    if guid:
        body += struct.pack("<HHI", 22, bits, 4) + guid
    return body


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


SAMPLES = (np.arange(1000, dtype=np.int16) * 7 - 3000).astype(np.int16)


def write(tmp_path, name: str, blob: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(blob)
    return str(path)


def test_reads_a_speech_commands_clip():
    path = shared_path("data", "speech-commands-mini", "yes")
    first = sorted(path.glob("*.wav"))[0]
    samples = read_wav(str(first))
    assert samples.dtype == np.int16 and samples.shape == (16000,)
    with wave.open(str(first)) as w:  # the stdlib agrees
        assert np.array_equal(samples, np.frombuffer(w.readframes(w.getnframes()), "<i2"))


def test_skips_other_chunks_and_pad_bytes(tmp_path):
    blob = riff(chunk(b"fmt ", fmt_body()), chunk(b"LIST", b"INFOISFT\x03\x00\x00\x00ab\x00"),
                chunk(b"fact", struct.pack("<I", len(SAMPLES))), chunk(b"data", SAMPLES.tobytes()),
                chunk(b"LIST", b"trailing"))
    assert np.array_equal(read_wav(write(tmp_path, "list.wav", blob)), SAMPLES)


def test_accepts_extensible_pcm(tmp_path):
    blob = riff(chunk(b"fmt ", fmt_body(guid=EXTENSIBLE_PCM_GUID)), chunk(b"data", SAMPLES.tobytes()))
    assert np.array_equal(read_wav(write(tmp_path, "ext.wav", blob)), SAMPLES)


def test_ignores_a_wrong_riff_size(tmp_path):
    blob = bytearray(riff(chunk(b"fmt ", fmt_body()), chunk(b"data", SAMPLES.tobytes())))
    blob[4:8] = struct.pack("<I", 0xFFFFFFFF)  # streaming writers leave this unset
    assert np.array_equal(read_wav(write(tmp_path, "stream.wav", bytes(blob))), SAMPLES)


@pytest.mark.parametrize("name, fmt, found", [
    ("stereo.wav", fmt_body(channels=2), "16000 Hz stereo 16-bit PCM"),
    ("cd.wav", fmt_body(rate=44100), "44100 Hz mono 16-bit PCM"),
    ("8k.wav", fmt_body(rate=8000), "8000 Hz mono 16-bit PCM"),
    ("u8.wav", fmt_body(bits=8), "16000 Hz mono 8-bit PCM"),
    ("s24.wav", fmt_body(bits=24), "16000 Hz mono 24-bit PCM"),
    ("s32.wav", fmt_body(bits=32), "16000 Hz mono 32-bit PCM"),
    ("f32.wav", fmt_body(tag=3, bits=32), "16000 Hz mono 32-bit IEEE float"),
    ("ext_f32.wav", fmt_body(bits=32, guid=EXTENSIBLE_FLOAT_GUID), "16000 Hz mono 32-bit IEEE float"),
    ("ext_s24.wav", fmt_body(bits=24, guid=EXTENSIBLE_PCM_GUID), "16000 Hz mono 24-bit PCM"),
    ("mulaw.wav", fmt_body(tag=7, bits=8), "16000 Hz mono 8-bit mu-law"),
])
def test_refuses_other_formats_naming_file_found_and_expected(tmp_path, name, fmt, found):
    path = write(tmp_path, name, riff(chunk(b"fmt ", fmt), chunk(b"data", b"\x00" * 96)))
    with pytest.raises(DatasetError) as err:
        read_wav(path)
    message = str(err.value)
    assert path in message and found in message
    assert "expected 16000 Hz mono 16-bit PCM" in message and "sox" in message


def test_stdlib_written_44k_stereo_is_refused(tmp_path):
    path = tmp_path / "stdlib.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.zeros(200, np.int16).tobytes())
    with pytest.raises(DatasetError, match="44100 Hz stereo 16-bit PCM, expected 16000 Hz mono"):
        read_wav(str(path))


def test_truncated_data_is_refused(tmp_path):
    whole = riff(chunk(b"fmt ", fmt_body()), chunk(b"data", SAMPLES.tobytes()))
    path = write(tmp_path, "cut.wav", whole[:-100])
    with pytest.raises(DatasetError, match=r"cut\.wav: truncated WAV file: the data chunk declares 2000 bytes "
                                           r"but only 1900 are present"):
        read_wav(path)


def test_odd_number_of_data_bytes_is_refused(tmp_path):
    path = write(tmp_path, "odd.wav", riff(chunk(b"fmt ", fmt_body()), chunk(b"data", b"\x01\x02\x03")))
    with pytest.raises(DatasetError, match="3 bytes, not a whole number of 16-bit samples"):
        read_wav(path)


def test_no_samples_is_refused(tmp_path):
    path = write(tmp_path, "empty_data.wav", riff(chunk(b"fmt ", fmt_body()), chunk(b"data", b"")))
    with pytest.raises(DatasetError, match="empty_data.wav: the WAV file holds no samples"):
        read_wav(path)


@pytest.mark.parametrize("blob, what", [
    (b"", "an empty file"),
    (b"hello, this is text and not audio", "a file starting with b'hello, this '"),
    (b"RIFX" + b"\x00" * 40, "a file starting with b'RIFX"),
    (b"ID3\x04" + b"\x00" * 40, "a file starting with b'ID3"),
])
def test_non_wav_files_are_refused(tmp_path, blob, what):
    path = write(tmp_path, "notwav.wav", blob)
    with pytest.raises(DatasetError) as err:
        read_wav(path)
    assert f"{path}: not a WAV file ({what}" in str(err.value)


def test_missing_chunks_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="has no 'fmt ' and 'data' chunks"):
        parse_wav(riff(), "nochunks.wav")
    with pytest.raises(DatasetError, match="has no 'data' chunk"):
        parse_wav(riff(chunk(b"fmt ", fmt_body())), "nodata.wav")
    with pytest.raises(DatasetError, match="data chunk comes before any 'fmt ' chunk"):
        parse_wav(riff(chunk(b"data", SAMPLES.tobytes()), chunk(b"fmt ", fmt_body())), "order.wav")
    with pytest.raises(DatasetError, match="'fmt ' chunk is 8 bytes"):
        parse_wav(riff(chunk(b"fmt ", fmt_body()[:8]), chunk(b"data", SAMPLES.tobytes())), "short.wav")


def test_missing_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="cannot read .*absent.wav"):
        read_wav(str(tmp_path / "absent.wav"))
