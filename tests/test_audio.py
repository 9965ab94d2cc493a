"""The audio front end against float64 references written here: WAV decoding of files
written with the standard library, resampling, the mel filterbank and the log-mel."""

import math
import wave

import numpy as np
import pytest
import torch

from gankernels import audio

# --------------------------------------------------------------------------- WAV files


def _write(path, ints: np.ndarray, width: int, rate: int):
    """Write integer samples (frames, channels) with the wave module, bytes built here."""
    frames, channels = ints.shape
    if width == 1:
        data = (ints + 128).astype(np.uint8).tobytes()
    elif width == 3:
        u = ints.astype(np.int64) & 0xFFFFFF
        data = (
            np.stack([u & 0xFF, (u >> 8) & 0xFF, (u >> 16) & 0xFF], -1).astype(np.uint8).tobytes()
        )
    else:
        data = ints.astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_read_wav_bit_depths(tmp_path, width):
    rng = np.random.default_rng(width)
    top = 1 << (8 * width - 1)
    ints = rng.integers(-top, top, size=(301, 1))
    ints[:2, 0] = [-top, top - 1]  # the extremes
    path = tmp_path / f"x{width}.wav"
    _write(path, ints, width, 11025)
    x, rate = audio.read_wav(path, log=None)
    assert rate == 11025 and x.dtype == torch.float32 and x.shape == (301,)
    np.testing.assert_allclose(x.numpy(), ints[:, 0] / top, rtol=0, atol=1e-7)
    assert x.min() == -1.0 and x.max() <= 1.0


def test_read_wav_stereo_mixes_down_and_says_so(tmp_path):
    rng = np.random.default_rng(0)
    ints = rng.integers(-30000, 30000, size=(257, 2))
    path = tmp_path / "stereo.wav"
    _write(path, ints, 2, 44100)
    said = []
    x, rate = audio.read_wav(path, log=said.append)
    assert rate == 44100 and x.shape == (257,)
    np.testing.assert_allclose(x.numpy(), ints.mean(1) / 32768, atol=1e-7)
    assert len(said) == 1 and "2 channels mixed down to mono" in said[0]


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_write_wav_round_trip(tmp_path, width):
    x = torch.rand(2, 100, generator=torch.Generator().manual_seed(0)) * 2 - 1
    audio.write_wav(tmp_path / "y.wav", x, 22050, sample_width=width)
    y, rate = audio.read_wav(tmp_path / "y.wav", log=None)
    assert rate == 22050
    step = 2.0 ** (1 - 8 * width)  # one quantisation step
    torch.testing.assert_close(y, x.mean(0), atol=step, rtol=0)


def _one_line_naming(err, name):
    text = str(err.value)
    assert "\n" not in text and str(name) in text, text


def test_read_wav_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        audio.read_wav(tmp_path / "missing.wav")
    _one_line_naming(err, tmp_path / "missing.wav")
    with pytest.raises(IsADirectoryError) as err:
        audio.read_wav(tmp_path)
    _one_line_naming(err, tmp_path)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(ValueError, match="is empty") as err:
        audio.read_wav(tmp_path / "empty.wav")
    _one_line_naming(err, tmp_path / "empty.wav")
    (tmp_path / "text.wav").write_text("hello, not a sound")
    with pytest.raises(ValueError, match="not a WAV file") as err:
        audio.read_wav(tmp_path / "text.wav")
    _one_line_naming(err, tmp_path / "text.wav")
    # a RIFF/WAVE header cut short, and 32-bit float samples (format tag 3)
    _write(tmp_path / "good.wav", np.zeros((10, 1), dtype=np.int64), 2, 8000)
    (tmp_path / "cut.wav").write_bytes((tmp_path / "good.wav").read_bytes()[:20])
    with pytest.raises(ValueError, match="not a readable PCM WAV") as err:
        audio.read_wav(tmp_path / "cut.wav")
    _one_line_naming(err, tmp_path / "cut.wav")
    raw = bytearray((tmp_path / "good.wav").read_bytes())
    raw[20:22] = (3).to_bytes(2, "little")
    (tmp_path / "float.wav").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="integer PCM") as err:
        audio.read_wav(tmp_path / "float.wav")
    _one_line_naming(err, tmp_path / "float.wav")
    _write(tmp_path / "none.wav", np.zeros((0, 1), dtype=np.int64), 2, 8000)
    with pytest.raises(ValueError, match="no samples"):
        audio.read_wav(tmp_path / "none.wav")


# --------------------------------------------------------------------------- resampling


def _kernel64(t, cutoff, zeros, beta):
    """The interpolation kernel in float64 numpy: Kaiser-windowed sinc, DC gain 1."""
    half = zeros / cutoff
    u = np.clip(t / half, -1, 1)
    window = np.i0(beta * np.sqrt(1 - u * u)) / np.i0(beta)
    return np.where(np.abs(t) < half, cutoff * np.sinc(cutoff * t) * window, 0.0)


def _resample64(x, orig, new, zeros=24, rolloff=0.945, beta=8.6):
    """y[n] = sum over every input sample k of x[k] h(n orig / new - k), as a matrix."""
    n_out = -(-len(x) * new // orig)
    t = np.arange(n_out)[:, None] * orig / new - np.arange(len(x))[None]
    return _kernel64(t, rolloff * min(1.0, new / orig), zeros, beta) @ x


@pytest.mark.parametrize(
    "orig,new",
    [(22050, 16000), (8000, 16000), (16000, 8000), (44100, 16000), (11025, 16000), (7, 3)],
)
def test_resample_matches_float64_reference(orig, new):
    rng = np.random.default_rng(orig + new)
    x = rng.standard_normal((2, 3, 397))
    want = np.stack([[_resample64(row, orig, new) for row in rows] for rows in x])
    got = audio.resample(torch.from_numpy(x), orig, new)
    assert got.shape == want.shape and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
    got32 = audio.resample(torch.from_numpy(x).float(), orig, new)
    np.testing.assert_allclose(got32.numpy(), want, rtol=0, atol=2e-5)


@pytest.mark.parametrize("orig,new", [(22050, 16000), (8000, 16000), (48000, 16000)])
def test_resample_pure_tones(orig, new):
    t = torch.arange(orig // 2, dtype=torch.float64) / orig
    nyquist = min(orig, new) / 2
    margin = new // 20  # the edges see the zeros outside the signal
    for freq, passes in ((1000.0, True), (0.8 * nyquist, True), (1.06 * nyquist, False)):
        if freq >= orig / 2:
            continue
        y = audio.resample(torch.sin(2 * math.pi * freq * t), orig, new)[margin:-margin]
        n = torch.arange(margin, margin + y.numel(), dtype=torch.float64)
        if passes:
            ideal = torch.sin(2 * math.pi * freq * n / new)
            assert (y - ideal).abs().max() < 1e-4, freq
        else:
            assert y.abs().max() < 1e-3, freq  # about -80 dB


def test_resample_shapes_and_errors():
    x = torch.randn(5, 1000)
    assert torch.equal(audio.resample(x, 16000, 16000), x)
    assert audio.resample(x, 16000, 8000).shape == (5, 500)
    assert audio.resample(x, 8000, 16000).shape == (5, 2000)
    assert audio.resample(torch.randn(7), 3, 2).shape == (5,)
    with pytest.raises(ValueError, match="new_rate"):
        audio.resample(x, 16000, 0)
    with pytest.raises(ValueError, match="orig_rate"):
        audio.resample(x, 16000.0, 8000)
    with pytest.raises(TypeError, match="floating-point"):
        audio.resample(torch.ones(10, dtype=torch.int64), 2, 1)


# --------------------------------------------------------------------------- conditioning


def test_trim_normalise_fix_length():
    rate = 16000
    tone = 0.3 * torch.sin(2 * math.pi * 440 * torch.arange(4000) / rate)
    x = torch.cat([torch.zeros(6000), tone, torch.zeros(5000)]) + 1e-5 * torch.randn(15000)
    trimmed = audio.trim_silence(x, rate)
    assert 4000 <= trimmed.numel() <= 4000 + 2 * 320  # the tone, give or take a frame
    y = audio.normalize_loudness(trimmed)
    rms_db = 20 * math.log10(y.pow(2).mean().sqrt().item())
    assert abs(rms_db - audio.TARGET_DBFS) < 1e-3
    loud = audio.normalize_loudness(torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), -3.0, peak=0.5)
    assert loud.abs().max().item() == pytest.approx(0.5)  # the peak limit wins
    assert torch.equal(audio.normalize_loudness(torch.zeros(8)), torch.zeros(8))
    assert torch.equal(
        audio.fix_length(torch.arange(5.0), 9), torch.tensor([0, 0, 0, 1, 2, 3, 4, 0, 0.0])
    )
    assert torch.equal(audio.fix_length(torch.arange(9.0), 5), torch.arange(2.0, 7.0))
    assert torch.equal(audio.fix_length(torch.arange(9.0), 5, align="start"), torch.arange(5.0))


def test_load_clip_any_wav(tmp_path):
    rng = np.random.default_rng(1)
    t = np.arange(30000) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 300 * t) * (1 << 23)).astype(np.int64)
    ints = np.stack([tone, rng.integers(-1000, 1000, tone.size)], 1)
    _write(tmp_path / "clip.wav", ints, 3, 44100)
    said = []
    clip = audio.load_clip(tmp_path / "clip.wav", log=said.append)
    assert clip.shape == (audio.CLIP_SAMPLES,) and clip.dtype == torch.float32
    assert any("mono" in s for s in said) and any("44100 Hz to 16000 Hz" in s for s in said)
    assert torch.equal(clip, audio.load_clip(tmp_path / "clip.wav", log=None))  # deterministic


# --------------------------------------------------------------------------- mel spectra


def _mel64(f, scale):
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    return np.where(
        f < 1000, 3 * f / 200, 15 + 27 * np.log(np.maximum(f, 1e-9) / 1000) / np.log(6.4)
    )


def _hz64(m, scale):
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    return np.where(m < 15, 200 * m / 3, 1000 * np.exp((m - 15) * np.log(6.4) / 27))


def _filterbank64(rate, n_fft, n_mels, f_min, f_max, scale, norm):
    freqs = np.arange(n_fft // 2 + 1) * rate / n_fft
    edges = _hz64(np.linspace(_mel64(f_min, scale), _mel64(f_max, scale), n_mels + 2), scale)
    fb = np.zeros((n_mels, freqs.size))
    for i in range(n_mels):
        lo, mid, hi = edges[i : i + 3]
        for k, f in enumerate(freqs):
            if lo < f <= mid:
                fb[i, k] = (f - lo) / (mid - lo)
            elif mid < f < hi:
                fb[i, k] = (hi - f) / (hi - mid)
        if norm == "slaney":
            fb[i] *= 2.0 / (hi - lo)
    return fb


def test_mel_scales():
    assert float(audio.hz_to_mel(1000.0, "htk")) == pytest.approx(1000.0, abs=0.02)
    assert float(audio.hz_to_mel(1000.0, "slaney")) == pytest.approx(15.0)
    f = np.array([0.0, 50.0, 700.0, 999.0, 1000.0, 4000.0, 8000.0])
    for scale in ("htk", "slaney"):
        np.testing.assert_allclose(audio.hz_to_mel(f, scale).numpy(), _mel64(f, scale), rtol=1e-13)
        np.testing.assert_allclose(
            audio.mel_to_hz(audio.hz_to_mel(f, scale), scale).numpy(), f, atol=1e-9
        )
    with pytest.raises(ValueError, match="scale"):
        audio.hz_to_mel(1.0, "bark")


@pytest.mark.parametrize("scale", ["htk", "slaney"])
@pytest.mark.parametrize("norm", [None, "slaney"])
def test_mel_filterbank_matches_reference(scale, norm):
    got = audio.mel_filterbank(16000, 512, 40, 60.0, 3800.0, scale, norm, dtype=torch.float64)
    want = _filterbank64(16000, 512, 40, 60.0, 3800.0, scale, norm)
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)
    assert got.shape == (40, 257) and (got.sum(1) > 0).all()  # no empty band
    with pytest.raises(ValueError, match="f_max"):
        audio.mel_filterbank(16000, 512, 40, 0.0, 9000.0)


def _log_mel64(x, rate, n_fft, win, hop, n_mels, f_min, f_max, top_db):
    """Frames of a zero-padded signal under a periodic Hann window centred in n_fft,
    |rfft|^2 through the filterbank, in dB, floored at top_db below the maximum."""
    pad = n_fft // 2
    xp = np.concatenate([np.zeros(pad), x, np.zeros(pad)])
    window = np.zeros(n_fft)
    left = (n_fft - win) // 2
    window[left : left + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    frames = np.stack([xp[i : i + n_fft] * window for i in range(0, len(xp) - n_fft + 1, hop)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, bins)
    mel = _filterbank64(rate, n_fft, n_mels, f_min, f_max, "slaney", "slaney") @ power.T
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(db, db.max() - top_db)


def test_log_mel_matches_float64_reference():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3201)) * np.linspace(0, 1, 3201)
    want = np.stack([_log_mel64(row, 16000, 512, 400, 160, 40, 60.0, 3800.0, 80.0) for row in x])
    got = audio.log_mel_spectrogram(torch.from_numpy(x), f_min=60.0, f_max=3800.0)
    assert got.shape == (2, 40, 3201 // 160 + 1) == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-9)
    got32 = audio.LogMel(f_min=60.0, f_max=3800.0)(torch.from_numpy(x).float())
    np.testing.assert_allclose(got32.numpy(), want, rtol=0, atol=2e-3)  # dB
    assert torch.equal(got32, audio.LogMel(f_min=60.0, f_max=3800.0)(torch.from_numpy(x).float()))


def test_log_mel_peaks_at_the_tone():
    rate = 16000
    x = torch.sin(2 * math.pi * 1000 * torch.arange(rate) / rate)
    mel = audio.LogMel(n_mels=40)(x)
    centres = audio.mel_to_hz(torch.linspace(0, float(audio.hz_to_mel(8000.0)), 42)[1:-1])
    peak = int(mel.mean(-1).argmax())
    assert abs(centres[peak].item() - 1000) < 150
