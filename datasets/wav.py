"""Read 16 kHz mono 16-bit PCM WAV files, and refuse everything else clearly.

The keyword-spotting front end is defined on 16 kHz mono int16 audio. A file
in any other format is refused with a :class:`~sut.errors.DatasetError` that
names the file, what it holds and what is expected, rather than converted:
resampling, down-mixing or re-quantising here would silently change the
accuracy figures. Decisions, case by case:

* 16-bit PCM, mono, 16000 Hz (format tag 1, or WAVE_FORMAT_EXTENSIBLE whose
  sub-format is PCM): accepted; the samples are returned as int16.
* other sample rates, stereo / multi-channel, 8/24/32-bit PCM, IEEE float
  (tag 3 or extensible float), A-law, mu-law, ADPCM...: error with a ``sox``
  command that converts the file.
* a data chunk shorter than its header declares (a truncated copy), or an odd
  number of data bytes: error, because part of the clip is missing.
* no samples at all: error.
* not RIFF/WAVE (including big-endian RIFX and RF64): error.

Chunks other than ``fmt `` and ``data`` (``LIST``, ``fact``, ``PEAK``...) are
skipped, with RIFF's pad byte after odd-sized chunks. The RIFF header's total
size is not trusted (writers often get it wrong); only chunk sizes are.
"""

from __future__ import annotations

import dataclasses
import struct

import numpy as np

from sut.errors import DatasetError

SAMPLE_RATE = 16000
FORMAT_PCM = 0x0001
FORMAT_IEEE_FLOAT = 0x0003
FORMAT_EXTENSIBLE = 0xFFFE
_FORMAT_NAMES = {FORMAT_PCM: "PCM", FORMAT_IEEE_FLOAT: "IEEE float", 0x0006: "A-law", 0x0007: "mu-law",
                 0x0002: "MS ADPCM", 0x0011: "IMA ADPCM", 0x0055: "MP3"}
EXPECTED = f"{SAMPLE_RATE} Hz mono 16-bit PCM"
CONVERT_HINT = "convert it, e.g. `sox in.wav -r 16000 -c 1 -b 16 -e signed-integer out.wav`"


@dataclasses.dataclass(frozen=True)
class WavFormat:
    """The ``fmt `` chunk's fields that matter here (``format_tag`` resolved through EXTENSIBLE)."""

    format_tag: int
    channels: int
    sample_rate: int
    bits_per_sample: int

    def describe(self) -> str:
        kind = _FORMAT_NAMES.get(self.format_tag, f"format tag 0x{self.format_tag:04x}")
        channels = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} channels")
        return f"{self.sample_rate} Hz {channels} {self.bits_per_sample}-bit {kind}"

    @property
    def is_expected(self) -> bool:
        return (self.format_tag, self.channels, self.sample_rate, self.bits_per_sample) == (
            FORMAT_PCM, 1, SAMPLE_RATE, 16)


def read_wav(path: str) -> np.ndarray:
    """The samples of a 16 kHz mono 16-bit PCM WAV file as a 1-D int16 array."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_wav(blob, path)


def parse_wav(blob: bytes, path: str = "<bytes>") -> np.ndarray:
    """:func:`read_wav` on a file's bytes; ``path`` is used in error messages."""
    fmt, data = _chunks(blob, path)
    if not fmt.is_expected:
        raise DatasetError(f"{path}: {fmt.describe()}, expected {EXPECTED}; {CONVERT_HINT}")
    if len(data) % 2:
        raise DatasetError(f"{path}: data chunk holds {len(data)} bytes, not a whole number of 16-bit samples")
    if not data:
        raise DatasetError(f"{path}: the WAV file holds no samples")
    return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)


def _chunks(blob: bytes, path: str) -> tuple[WavFormat, bytes]:
    """Walk the RIFF chunks; return the format and the data chunk's bytes."""
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        what = "an empty file" if not blob else f"a file starting with {blob[:12]!r}"
        raise DatasetError(f"{path}: not a WAV file ({what}), expected a RIFF/WAVE file of {EXPECTED}")
    fmt, pos = None, 12
    while pos + 8 <= len(blob):
        chunk_id, size = blob[pos:pos + 4], struct.unpack_from("<I", blob, pos + 4)[0]
        body = pos + 8
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(blob[body:body + size], path)
        elif chunk_id == b"data":
            if fmt is None:
                raise DatasetError(f"{path}: WAV data chunk comes before any 'fmt ' chunk")
            available = len(blob) - body
            if size > available:
                raise DatasetError(
                    f"{path}: truncated WAV file: the data chunk declares {size} bytes but only "
                    f"{available} are present")
            return fmt, blob[body:body + size]
        pos = body + size + (size & 1)
    missing = "'fmt ' and 'data' chunks" if fmt is None else "'data' chunk"
    raise DatasetError(f"{path}: WAV file has no {missing} (truncated or not a WAV file)")


def _parse_fmt(body: bytes, path: str) -> WavFormat:
    if len(body) < 16:
        raise DatasetError(f"{path}: WAV 'fmt ' chunk is {len(body)} bytes, shorter than the 16 it needs")
    tag, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == FORMAT_EXTENSIBLE:
        if len(body) < 40:
            raise DatasetError(f"{path}: WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk is {len(body)} bytes, expected 40")
        # The sub-format GUID starts with the ordinary format tag (PCM = 1, float = 3).
        tag = struct.unpack_from("<H", body, 24)[0]
    return WavFormat(format_tag=tag, channels=channels, sample_rate=rate, bits_per_sample=bits)
