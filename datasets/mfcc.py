"""The MLCommons Tiny keyword-spotting MFCC front end, in NumPy.

This reproduces the reference's TensorFlow graph (``get_dataset.py`` of the
MLCommons Tiny KWS benchmark, test-time path) step by step, in float32 where
TensorFlow computes in float32, vectorised over a batch of clips:

1. take 1 s (16000 samples): zero-pad shorter clips, cut longer ones;
2. divide by the clip's largest sample value ``max(x)`` (not ``max(|x|)``);
3. frames of 480 samples every 320 (49 frames), periodic Hann window,
   512-point real FFT, magnitude (257 bins);
4. 40 mel bands from 20 to 4000 Hz, HTK mel scale, weights exactly as
   ``tf.signal.linear_to_mel_weight_matrix`` builds them (DC bin zero);
5. ``log(mel + 1e-6)``;
6. DCT-II without normalisation times ``1/sqrt(2 * 40)``, as
   ``tf.signal.mfccs_from_log_mel_spectrograms``; keep the first 10.

Result: float32 (batch, 49, 10). The reference test path has no clamp to
[-1, 1] (that happens only when mixing background noise during training), so
samples below ``-max(x)`` keep values below -1 here too.

Silence (``max(x) == 0``): the reference divides by zero and produces NaN
features, which is no defined input. Here such a clip is left undivided, so an
all-zero clip gives the features of digital silence (``log(1e-6)`` in every
band). A clip whose largest sample is negative is divided by that negative
value, exactly as the reference does.
"""

from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
FRAME_LENGTH = 480
FRAME_STEP = 320
FFT_LENGTH = 512
NUM_FRAMES = 1 + (CLIP_SAMPLES - FRAME_LENGTH) // FRAME_STEP  # 49
NUM_SPECTROGRAM_BINS = FFT_LENGTH // 2 + 1  # 257
NUM_MEL_BINS = 40
LOWER_EDGE_HZ = 20.0
UPPER_EDGE_HZ = 4000.0
LOG_OFFSET = 1e-6
NUM_COEFFICIENTS = 10
FEATURE_SHAPE = (NUM_FRAMES, NUM_COEFFICIENTS)

#: everything above, for cache keys and result records
PARAMETERS = {
    "sample_rate": SAMPLE_RATE, "clip_samples": CLIP_SAMPLES, "frame_length": FRAME_LENGTH,
    "frame_step": FRAME_STEP, "fft_length": FFT_LENGTH, "window": "hann_periodic",
    "num_mel_bins": NUM_MEL_BINS, "lower_edge_hz": LOWER_EDGE_HZ, "upper_edge_hz": UPPER_EDGE_HZ,
    "mel_scale": "htk", "log_offset": LOG_OFFSET, "dct": "tf_mfcc", "num_coefficients": NUM_COEFFICIENTS,
    "normalise": "max",
}

_F32 = np.float32


def mfcc(clips) -> np.ndarray:
    """MFCC features of one clip (1-D) or a batch: float32 ``(49, 10)`` / ``(batch, 49, 10)``.

    ``clips`` is an int16 (or float) array ``(samples,)`` or ``(batch, samples)``,
    or a list of 1-D arrays of any lengths.
    """
    single = isinstance(clips, np.ndarray) and clips.ndim == 1
    features = mfcc_from_signal(normalised_signal([clips] if single else clips))
    return features[0] if single else features


def normalised_signal(clips, length: int = CLIP_SAMPLES) -> np.ndarray:
    """Clips as float32 ``(batch, length)``: cut to ``length``, divided by ``max(x)``, zero-padded.

    As in the reference, the peak is taken over the clip's own samples (before
    padding); a clip whose peak is 0 is not divided (see the module docstring).
    """
    if isinstance(clips, np.ndarray) and clips.ndim == 2:
        clips = clips[:, :length].astype(_F32)
        rows = [clips] if len(clips) else []
    else:
        rows = [np.asarray(c, _F32).reshape(1, -1)[:, :length] for c in clips]
    out = np.zeros((len(clips), length), _F32)
    start = 0
    for block in rows:
        if block.shape[1]:
            peak = block.max(axis=1, keepdims=True)
            peak[peak == 0] = 1
            out[start:start + len(block), :block.shape[1]] = block / peak
        start += len(block)
    return out


def mfcc_from_signal(signal: np.ndarray) -> np.ndarray:
    """Normalised float32 signal ``(batch, 16000)`` -> MFCCs ``(batch, 49, 10)``."""
    frames = signal[:, _frame_indices()]  # (batch, 49, 480); sliding_window_view needs NumPy 1.20
    # NumPy 1.x computes every FFT in float64 (2.x keeps float32): round back to float32 here
    spectrum = np.abs(np.fft.rfft(frames * hann_window(), n=FFT_LENGTH, axis=-1)).astype(_F32, copy=False)
    mel = spectrum @ mel_weight_matrix()
    log_mel = np.log(mel + _F32(LOG_OFFSET))
    return log_mel @ dct_matrix()


@functools.lru_cache(maxsize=None)
def _frame_indices() -> np.ndarray:
    """Sample indices of every frame: (49, 480)."""
    return np.arange(NUM_FRAMES)[:, None] * FRAME_STEP + np.arange(FRAME_LENGTH)[None, :]


@functools.lru_cache(maxsize=None)
def hann_window(length: int = FRAME_LENGTH) -> np.ndarray:
    """Periodic Hann window as ``tf.signal.hann_window`` computes it, in float32."""
    n = np.arange(length, dtype=_F32)
    window = _F32(0.5) - _F32(0.5) * np.cos(_F32(2 * np.pi) * n / _F32(length))
    window.flags.writeable = False
    return window


def hertz_to_mel(hertz):
    """HTK mel scale: ``1127 ln(1 + f / 700)`` (float32 in, float32 out)."""
    return _F32(1127.0) * np.log(_F32(1.0) + np.asarray(hertz, _F32) / _F32(700.0))


def tf_linspace(start, stop, num: int) -> np.ndarray:
    """``tf.linspace`` in float32: ``start + i * ((stop - start) / (num - 1))``, last = ``stop``."""
    start, stop = _F32(start), _F32(stop)
    delta = (stop - start) / _F32(num - 1)
    out = start + delta * np.arange(num, dtype=_F32)
    out[-1] = stop
    return out


@functools.lru_cache(maxsize=None)
def mel_weight_matrix() -> np.ndarray:
    """``tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, 20, 4000)``: float32 (257, 40)."""
    linear_hz = tf_linspace(0.0, SAMPLE_RATE / 2.0, NUM_SPECTROGRAM_BINS)[1:]  # HTK drops the DC bin
    bins_mel = hertz_to_mel(linear_hz)[:, None]
    edges = tf_linspace(hertz_to_mel(LOWER_EDGE_HZ), hertz_to_mel(UPPER_EDGE_HZ), NUM_MEL_BINS + 2)
    lower, center, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    lower_slopes = (bins_mel - lower) / (center - lower)
    upper_slopes = (upper - bins_mel) / (upper - center)
    weights = np.maximum(_F32(0), np.minimum(lower_slopes, upper_slopes))
    out = np.concatenate([np.zeros((1, NUM_MEL_BINS), _F32), weights]).astype(_F32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=None)
def dct_matrix() -> np.ndarray:
    """DCT-II (``2 sum x_n cos(pi k (2n+1) / 2N)``) times ``1/sqrt(2N)``, first 10 columns: (40, 10)."""
    n = np.arange(NUM_MEL_BINS)[:, None]
    k = np.arange(NUM_COEFFICIENTS)[None, :]
    basis = 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * NUM_MEL_BINS))
    out = (basis / np.sqrt(2.0 * NUM_MEL_BINS)).astype(_F32)
    out.flags.writeable = False
    return out
