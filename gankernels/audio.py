"""Audio front end: WAV files in, fixed-length clips and log-mel spectrograms out.

Our own code on the standard library's `wave`, numpy and torch (no torchaudio):

    x, rate = read_wav("clip.wav")                 # float32 mono in [-1, 1], its rate
    clip = prepare_clip(x, rate)                   # 16 kHz, trimmed, -20 dBFS, 1 s
    clip = load_clip("clip.wav")                   # the two lines above in one call
    mel = LogMel()(clip[None])                     # (1, 40, 101) log-mel in dB

- `read_wav`: PCM WAV with 8-bit (unsigned), 16-, 24- or 32-bit (signed) samples, any
  rate, any number of channels (mixed down to mono, said in the log).
- `resample`: band-limited interpolation with a Kaiser-windowed sinc, evaluated
  polyphase (one weight row per output phase), so any pair of integer rates works with a
  cost of about 2 * zeros / cutoff multiply-adds per output sample.
- `trim_silence`, `normalize_loudness`, `fix_length`: the clip conditioning.
- `mel_filterbank`, `log_mel_spectrogram`, `LogMel`: `torch.stft` power spectra through
  a triangular mel filterbank, HTK or Slaney mel scale, in dB.

Everything here is deterministic: no random state is read.
"""

from __future__ import annotations

import functools
import io
import math
import os
import struct
import wave
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16000  # the rate every clip is brought to
CLIP_SECONDS = 1.0  # the length every clip is brought to
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)
TARGET_DBFS = -20.0  # RMS loudness of a conditioned clip
SAMPLE_WIDTHS = (1, 2, 3, 4)  # bytes per PCM sample that `read_wav` decodes

# Front-end defaults for 16 kHz speech: 25 ms Hann windows every 10 ms, 40 mel bands.
N_FFT = 512
WIN_LENGTH = 400
HOP_LENGTH = 160
N_MELS = 40


# --------------------------------------------------------------------------- WAV files


def _describe(path) -> str:
    return repr(str(path))


def read_wav(path: str | os.PathLike, log: Callable[[str], None] | None = print):
    """Read a PCM WAV file -> (float32 tensor (samples,) in [-1, 1], sample rate).

    8-bit samples are unsigned (offset 128), 16/24/32-bit ones signed little-endian, as
    the RIFF/WAVE format defines them. Several channels are averaged to one, and `log`
    (print by default; None for quiet) says so. Errors are one line naming the file:
    FileNotFoundError (missing), IsADirectoryError, ValueError (empty, not a WAV file,
    not PCM, no samples)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"sound file {_describe(path)} does not exist")
    if p.is_dir():
        raise IsADirectoryError(f"sound file {_describe(path)} is a folder, not a WAV file")
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise OSError(f"sound file {_describe(path)} cannot be read ({err.strerror})") from None
    return decode_wav(raw, name=str(path), log=log)


def decode_wav(data: bytes, name: str = "<bytes>", log: Callable[[str], None] | None = print):
    """`read_wav` on the bytes of a WAV file (`name` is used in messages)."""
    if len(data) == 0:
        raise ValueError(f"sound file {name!r} is empty")
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(
            f"sound file {name!r} is not a WAV file (expected a RIFF/WAVE header, "
            f"found {data[:4]!r})"
        )
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            # Streamed WAVs (a writer that did not know the length) carry a placeholder
            # frame count: read what is there.
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError, struct.error) as err:
        raise ValueError(
            f"sound file {name!r} is not a readable PCM WAV file ({err or 'truncated header'}); "
            "8-, 16-, 24- and 32-bit integer PCM can be read"
        ) from None
    if width not in SAMPLE_WIDTHS:
        raise ValueError(
            f"sound file {name!r} has {8 * width}-bit samples; expected 8, 16, 24 or 32"
        )
    if rate <= 0:
        raise ValueError(f"sound file {name!r} has sample rate {rate}; expected a positive rate")
    usable = len(frames) // (width * channels) * width * channels  # whole frames only
    if usable == 0:
        raise ValueError(f"sound file {name!r} has no samples")
    x = _pcm_to_float(frames[:usable], width).reshape(-1, channels)
    if channels > 1:
        if log is not None:
            log(f"sound file {name}: {channels} channels mixed down to mono")
        x = x.mean(axis=1, dtype=np.float64)
    return torch.from_numpy(np.ascontiguousarray(x.reshape(-1), dtype=np.float32)), rate


def _pcm_to_float(frames: bytes, width: int) -> np.ndarray:
    """Interleaved PCM bytes -> float64 samples in [-1, 1)."""
    raw = np.frombuffer(frames, dtype=np.uint8)
    if width == 1:  # unsigned, silence at 128
        return (raw.astype(np.float64) - 128.0) / 128.0
    if width == 2:
        return raw.view("<i2").astype(np.float64) / 32768.0
    if width == 3:  # little-endian 24-bit: sign-extend the top byte
        b = raw.reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float64) / float(1 << 23)
    return raw.view("<i4").astype(np.float64) / float(1 << 31)


def write_wav(
    path_or_file: str | os.PathLike | IO[bytes], x, sample_rate: int, sample_width: int = 2
) -> None:
    """Write samples in [-1, 1] (clipped), shape (samples,) or (channels, samples), as
    integer PCM with `sample_width` bytes per sample."""
    if sample_width not in SAMPLE_WIDTHS:
        raise ValueError(f"sample_width must be one of {SAMPLE_WIDTHS}, got {sample_width!r}")
    a = torch.as_tensor(x).detach().cpu().double().numpy()
    a = a[None] if a.ndim == 1 else a
    if a.ndim != 2:
        raise ValueError(f"x must have shape (samples,) or (channels, samples), got {a.shape}")
    a = np.ascontiguousarray(np.clip(a.T, -1.0, 1.0))  # (samples, channels): interleaved
    if sample_width == 1:
        data = np.clip(np.round(a * 128.0 + 128.0), 0, 255).astype(np.uint8).tobytes()
    else:
        top = float(1 << (8 * sample_width - 1))
        q = np.clip(np.round(a * top), -top, top - 1).astype(np.int64)
        data = (
            q.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :sample_width].tobytes()
            if sample_width != 2
            else q.astype("<i2").tobytes()
        )
    target = str(path_or_file) if isinstance(path_or_file, (str, os.PathLike)) else path_or_file
    with wave.open(target, "wb") as w:
        w.setnchannels(a.shape[1])
        w.setsampwidth(sample_width)
        w.setframerate(int(sample_rate))
        w.writeframes(data)


# --------------------------------------------------------------------------- resampling


def _check_rate(name: str, rate) -> int:
    if isinstance(rate, bool) or not isinstance(rate, (int, np.integer)) or rate <= 0:
        raise ValueError(f"{name} must be a positive integer number of Hz, got {rate!r}")
    return int(rate)


def sinc_kernel(t: torch.Tensor, cutoff: float, zeros: int, beta: float) -> torch.Tensor:
    """The interpolation kernel at offsets `t` (in input samples): a low-pass sinc with
    `cutoff` (a fraction of the input Nyquist rate), DC gain 1, under a Kaiser window
    that spans `zeros` zero crossings of the sinc on each side."""
    half_width = zeros / cutoff
    u = (t / half_width).clamp(-1.0, 1.0)
    window = torch.special.i0(beta * torch.sqrt(1.0 - u * u)) / torch.special.i0(
        torch.tensor(beta, dtype=t.dtype)
    )
    return torch.where(t.abs() < half_width, cutoff * torch.sinc(cutoff * t) * window, 0.0)


@functools.lru_cache(maxsize=16)
def _phase_table(M: int, L: int, zeros: int, rolloff: float, beta: float) -> torch.Tensor:
    """(L, 2W) float64 kernel weights: row p holds h(p / L - j) for taps j = -W+1 .. W."""
    cutoff = rolloff * min(1.0, L / M)
    taps_half = math.ceil(zeros / cutoff)
    offsets = torch.arange(-taps_half + 1, taps_half + 1, dtype=torch.float64)
    phases = torch.arange(L, dtype=torch.float64)[:, None] / L
    return sinc_kernel(phases - offsets, cutoff, zeros, beta)


def resample(
    x: torch.Tensor,
    orig_rate: int,
    new_rate: int,
    zeros: int = 24,
    rolloff: float = 0.945,
    beta: float = 8.6,
) -> torch.Tensor:
    """Resample the last dimension of `x` from `orig_rate` to `new_rate` Hz.

    y[n] = sum_k x[k] h(n * orig / new - k), h = `sinc_kernel` with cutoff `rolloff` times
    the lower of the two Nyquist rates; samples outside the signal count as zeros. The
    output has ceil(len * new / orig) samples. With the defaults the passband is flat to
    1e-4 up to 0.8 of the lower Nyquist rate (-1 dB at 0.9, -6 dB at 0.945) and the
    stopband, from 1.05 times the lower Nyquist rate up, is attenuated by about 80 dB.
    The ratio is reduced to L/M, the kernel tabulated once per output phase (L rows) in
    float64, and each output sample gathers its input window."""
    orig_rate = _check_rate("orig_rate", orig_rate)
    new_rate = _check_rate("new_rate", new_rate)
    if not torch.is_tensor(x) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {type(x).__name__}")
    if orig_rate == new_rate:
        return x.clone()
    g = math.gcd(orig_rate, new_rate)
    M, L = orig_rate // g, new_rate // g  # output n sits at input time n * M / L
    table = _phase_table(M, L, zeros, float(rolloff), float(beta)).to(x.device, x.dtype)
    taps_half = table.shape[1] // 2

    length = x.shape[-1]
    n_out = (length * L + M - 1) // M
    flat = x.reshape(-1, length)
    # windows[:, j] = the 2W input samples from j - W + 1 to j + W (zeros outside)
    windows = torch.nn.functional.pad(flat, (taps_half - 1, taps_half)).unfold(-1, 2 * taps_half, 1)
    n = torch.arange(n_out, device=x.device, dtype=torch.int64)
    base = (n * M) // L  # the input sample at or before each output time
    phase = (n * M) % L
    out = flat.new_empty(flat.shape[0], n_out)
    step = max(1, (1 << 22) // max(1, flat.shape[0] * 2 * taps_half))  # bound the gather
    for s in range(0, n_out, step):
        sl = slice(s, s + step)
        out[:, sl] = torch.einsum("bnk,nk->bn", windows[:, base[sl]], table[phase[sl]])
    return out.reshape(*x.shape[:-1], n_out)


# --------------------------------------------------------------------------- conditioning


def frame_energy_db(x: torch.Tensor, frame: int, hop: int) -> torch.Tensor:
    """Mean power of frames of the last dimension, in dB (floored at -200 dB)."""
    if x.shape[-1] < frame:
        x = torch.nn.functional.pad(x, (0, frame - x.shape[-1]))
    frames = x.unfold(-1, frame, hop)
    return 10.0 * torch.log10(frames.pow(2).mean(-1).clamp_min(1e-20))


def trim_silence(
    x: torch.Tensor, sample_rate: int, top_db: float = 40.0, frame_ms: float = 20.0
) -> torch.Tensor:
    """The span of a 1-D clip from the first to the last frame whose energy is within
    `top_db` of the loudest frame (frames of `frame_ms`, half overlapping). A silent clip
    is returned whole."""
    if x.dim() != 1:
        raise ValueError(f"trim_silence expects a 1-D clip, got shape {tuple(x.shape)}")
    frame = max(2, int(round(sample_rate * frame_ms / 1000)))
    hop = frame // 2
    energy = frame_energy_db(x, frame, hop)
    if energy.max() <= -199.0:
        return x
    loud = torch.nonzero(energy > energy.max() - top_db).flatten()
    start = int(loud[0]) * hop
    end = min(x.shape[-1], int(loud[-1]) * hop + frame)
    return x[start:end]


def normalize_loudness(
    x: torch.Tensor, target_dbfs: float = TARGET_DBFS, peak: float = 0.99
) -> torch.Tensor:
    """Scale each clip (last dimension) to an RMS of `target_dbfs` dB full scale, but no
    further than keeps its peak at or below `peak`. Silent clips stay silent."""
    rms = x.pow(2).mean(-1, keepdim=True).sqrt()
    top = x.abs().amax(-1, keepdim=True)
    gain = (10.0 ** (target_dbfs / 20.0)) / rms.clamp_min(1e-8)
    gain = torch.minimum(gain, peak / top.clamp_min(1e-8))
    return torch.where(rms > 0, x * gain, x)


def fix_length(x: torch.Tensor, length: int, align: str = "center") -> torch.Tensor:
    """Pad with zeros or crop the last dimension to `length` samples, keeping the middle
    (align="center") or the start (align="start")."""
    if align not in ("center", "start"):
        raise ValueError(f"align must be 'center' or 'start', got {align!r}")
    have = x.shape[-1]
    if have == length:
        return x
    if have > length:
        start = (have - length) // 2 if align == "center" else 0
        return x[..., start : start + length]
    left = (length - have) // 2 if align == "center" else 0
    return torch.nn.functional.pad(x, (left, length - have - left))


def prepare_clip(
    x: torch.Tensor,
    rate: int,
    sample_rate: int = SAMPLE_RATE,
    seconds: float = CLIP_SECONDS,
    top_db: float = 40.0,
    target_dbfs: float = TARGET_DBFS,
    name: str = "clip",
    log: Callable[[str], None] | None = print,
) -> torch.Tensor:
    """A mono clip at any rate -> float32 (sample_rate * seconds,) at `sample_rate`:
    resampled, silence trimmed, loudness normalised, centred in zeros (or its middle
    kept when the speech is longer, said in the log)."""
    if x.dim() != 1 or x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D clip, got shape {tuple(x.shape)}")
    x = x.to(torch.float32)
    if rate != sample_rate:
        if log is not None:
            log(f"{name}: resampled from {rate} Hz to {sample_rate} Hz")
        x = resample(x, rate, sample_rate)
    x = trim_silence(x, sample_rate, top_db)
    length = int(round(sample_rate * seconds))
    if x.shape[-1] > length and log is not None:
        log(f"{name}: {x.shape[-1] / sample_rate:.2f} s of sound, cut to its middle {seconds:g} s")
    return fix_length(normalize_loudness(x, target_dbfs), length)


def load_clip(
    path: str | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    seconds: float = CLIP_SECONDS,
    log: Callable[[str], None] | None = print,
) -> torch.Tensor:
    """`read_wav` then `prepare_clip`: any PCM WAV -> float32 (sample_rate * seconds,)."""
    x, rate = read_wav(path, log=log)
    return prepare_clip(x, rate, sample_rate, seconds, name=f"sound file {path}", log=log)


# --------------------------------------------------------------------------- mel spectra


def hz_to_mel(f, scale: str = "slaney"):
    """Hz -> mel. "htk": 2595 log10(1 + f / 700). "slaney": linear (3 bands per 200 Hz)
    below 1 kHz, logarithmic above (27 bands per factor 6.4), as in Slaney's Auditory
    Toolbox."""
    f = torch.as_tensor(f, dtype=torch.float64)
    if scale == "htk":
        return 2595.0 * torch.log10(1.0 + f / 700.0)
    if scale != "slaney":
        raise ValueError(f"scale must be 'htk' or 'slaney', got {scale!r}")
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(
        f >= min_log_hz,
        min_log_mel + torch.log(f.clamp_min(min_log_hz) / min_log_hz) / logstep,
        f / f_sp,
    )


def mel_to_hz(m, scale: str = "slaney"):
    """The inverse of `hz_to_mel`."""
    m = torch.as_tensor(m, dtype=torch.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    if scale != "slaney":
        raise ValueError(f"scale must be 'htk' or 'slaney', got {scale!r}")
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return torch.where(
        m >= min_log_mel, min_log_hz * torch.exp(logstep * (m - min_log_mel)), f_sp * m
    )


def mel_filterbank(
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    n_mels: int = N_MELS,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: str = "slaney",
    norm: str | None = "slaney",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters on the rfft bins: filter i rises from
    mel point i to i + 1 and falls to i + 2, the n_mels + 2 points equally spaced in mel
    from f_min to f_max (default: Nyquist). norm="slaney" divides each by its width in
    Hz / 2 (equal area); None keeps peak 1. Built in float64, returned in `dtype`."""
    sample_rate = _check_rate("sample_rate", sample_rate)
    f_max = sample_rate / 2 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, f_max={f_max}, "
            f"sample_rate={sample_rate}"
        )
    if norm not in (None, "slaney"):
        raise ValueError(f"norm must be 'slaney' or None, got {norm!r}")
    bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft
    mels = torch.linspace(
        float(hz_to_mel(f_min, scale)),
        float(hz_to_mel(f_max, scale)),
        n_mels + 2,
        dtype=torch.float64,
    )
    points = mel_to_hz(mels, scale)  # (n_mels + 2,) Hz
    lower, centre, upper = points[:-2, None], points[1:-1, None], points[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    fb = torch.clamp(torch.minimum(rising, falling), min=0.0)
    if norm == "slaney":
        fb = fb * (2.0 / (upper - lower))
    return fb.to(dtype)


def log_mel_spectrogram(
    x: torch.Tensor,
    sample_rate: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    win_length: int = WIN_LENGTH,
    hop_length: int = HOP_LENGTH,
    n_mels: int = N_MELS,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: str = "slaney",
    norm: str | None = "slaney",
    top_db: float | None = 80.0,
) -> torch.Tensor:
    """(..., samples) -> (..., n_mels, frames) log-mel power in dB.

    Periodic Hann windows of `win_length` centred in `n_fft`, frames every `hop_length`
    samples, the signal padded by n_fft // 2 zeros each side (frames = samples //
    hop_length + 1); power |STFT|^2 through `mel_filterbank`; 10 log10(max(mel, 1e-10));
    values more than `top_db` below each clip's maximum are raised to that floor."""
    return LogMel(
        sample_rate,
        n_fft,
        win_length,
        hop_length,
        n_mels,
        f_min,
        f_max,
        scale,
        norm,
        top_db,
        x.dtype,
    ).to(x.device)(x)


class LogMel(nn.Module):
    """`log_mel_spectrogram` as a module whose window and filterbank are buffers in
    `dtype` (they follow .to(device, dtype)); no parameters."""

    def __init__(
        self,
        sample_rate: int = SAMPLE_RATE,
        n_fft: int = N_FFT,
        win_length: int = WIN_LENGTH,
        hop_length: int = HOP_LENGTH,
        n_mels: int = N_MELS,
        f_min: float = 0.0,
        f_max: float | None = None,
        scale: str = "slaney",
        norm: str | None = "slaney",
        top_db: float | None = 80.0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if not 0 < win_length <= n_fft or hop_length <= 0:
            raise ValueError(
                f"need 0 < win_length <= n_fft and hop_length > 0, got n_fft={n_fft}, "
                f"win_length={win_length}, hop_length={hop_length}"
            )
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.top_db = top_db
        # built in float64, kept in `dtype`
        window = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
        self.register_buffer("window", window.to(dtype))
        self.register_buffer(
            "filterbank",
            mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max, scale, norm, dtype),
        )

    def frames(self, samples: int) -> int:
        return samples // self.hop_length + 1

    def power(self, x: torch.Tensor) -> torch.Tensor:
        """(..., samples) -> (..., n_mels, frames) mel power (linear)."""
        if not x.is_floating_point() or x.dim() < 1:
            raise ValueError(
                f"expected floating-point audio (..., samples), got {x.dtype} {tuple(x.shape)}"
            )
        lead, length = x.shape[:-1], x.shape[-1]
        spec = torch.stft(
            x.reshape(-1, length),
            self.n_fft,
            self.hop_length,
            self.win_length,
            window=self.window.to(x.dtype),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        mel = torch.matmul(self.filterbank.to(x.dtype), spec.real.square() + spec.imag.square())
        return mel.reshape(*lead, *mel.shape[-2:])

    def to_db(self, power: torch.Tensor) -> torch.Tensor:
        """Mel power -> dB, floored at 1e-10 and at `top_db` below each clip's maximum."""
        db = 10.0 * torch.log10(power.clamp_min(1e-10))
        if self.top_db is not None:
            db = torch.maximum(db, db.amax(dim=(-2, -1), keepdim=True) - self.top_db)
        return db

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_db(self.power(x))
