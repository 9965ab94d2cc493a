"""The sound condition: a small CNN on log-mel spectrograms that maps a spoken clip to an
embedding, and its first use, a spoken-digit classifier.

    clf = load_sound_classifier()          # trained once on synthetic speech, cached
    logits = clf(clips)                    # clips: float (B, 16000) at 16 kHz -> (B, 10)
    emb = clf.embed(clips)                 # (B, 128), the frozen encoder's embedding
    enc = make_sound_encoder("pretrained") # a condition encoder (text encoders' interface):
    table = enc.prepare(train.clips)       #   once per data set
    vectors = enc(table[rows])             #   (B, enc.dim) per step
    enc = make_sound_encoder("finetune")   # trainable, from the pretrained weights
    enc = make_sound_encoder("scratch")    # trainable, from random weights
    v = encode_wav(enc, "seven.wav")       # (1, dim) from any PCM WAV

The classifier learns from synthetic speech only (`load_spoken_digits("train")`) and is
measured on recordings of a real voice (`load_spoken_digits("test")`). What carries it
over: telephone-band features (mel bands from 60 Hz to 3.8 kHz: the recordings are
8 kHz), per-clip standardisation of the log-mel, slow as well as fast synthetic speech
(people say digits one at a time slowly), a second synthesiser's voices beside
espeak-ng's, and augmenting every batch (`SpeechAugment`): coloured noise, time shift
and stretch, formant shift (a warp of the mel axis), a random channel (smooth EQ and a
random low-pass), and masks over time and frequency. Weights are cached under
$GANKERNELS_CACHE (default ~/.cache/gankernels) in sound/; the file is portable (copy it
to a machine without the synthesisers)."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import audio
from ..images import atomic_write

# Bumped when the code below changes what a cached classifier would be.
CACHE_VERSION = 1


@dataclass(frozen=True)
class SoundEncoderConfig:
    """The encoder's shape and its front end (log-mel bands between f_min and f_max)."""

    dim: int = 128  # embedding size
    width: int = 16  # channels of the first conv block (then 2x, 4x, 4x)
    n_mels: int = 40
    f_min: float = 60.0
    f_max: float = 3800.0
    sample_rate: int = audio.SAMPLE_RATE


def cache_dir() -> Path:
    root = os.environ.get("GANKERNELS_CACHE") or Path.home() / ".cache" / "gankernels"
    return Path(root) / "sound"


def _block(cin: int, cout: int, stride=1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SoundEncoder(nn.Module):
    """(B, samples) clips at `config.sample_rate` -> (B, config.dim) embeddings.

    Log-mel (25 ms windows every 10 ms) -> per-clip standardisation (zero mean, unit
    variance over the whole spectrogram: loudness and recording level drop out) -> four
    3x3 conv blocks (max-pooled 2x2 after the first three) -> mean and max over time ->
    a linear layer and ReLU. Clips of any length work (the pooling is over time)."""

    def __init__(self, config: SoundEncoderConfig | None = None, **overrides):
        super().__init__()
        config = config or SoundEncoderConfig()
        self.config = SoundEncoderConfig(**{**asdict(config), **overrides})
        c = self.config
        self.logmel = audio.LogMel(
            c.sample_rate, n_mels=c.n_mels, f_min=c.f_min, f_max=c.f_max, top_db=80.0
        )
        w = c.width
        self.body = nn.Sequential(
            _block(1, w, stride=(1, 2)),  # 10 ms frames are finer than words need
            nn.MaxPool2d(2),
            _block(w, 2 * w),
            nn.MaxPool2d(2),
            _block(2 * w, 4 * w),
            nn.MaxPool2d(2),
            _block(4 * w, 4 * w),
        )
        bands = c.n_mels // 8
        self.proj = nn.Linear(2 * 4 * w * bands, c.dim)

    @property
    def dim(self) -> int:
        return self.config.dim

    def power(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, n_mels, frames) mel power (linear)."""
        if clips.dim() != 2:
            raise ValueError(f"clips must have shape (batch, samples), got {tuple(clips.shape)}")
        return self.logmel.power(clips.float())

    def spectrogram(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, n_mels, frames) log-mel in dB, the encoder's input."""
        return self.logmel.to_db(self.power(clips))

    def from_spectrogram(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, frames) log-mel in dB -> (B, dim) embeddings."""
        mean = mel.mean(dim=(-2, -1), keepdim=True)
        std = mel.std(dim=(-2, -1), keepdim=True).clamp_min(1e-3)
        h = self.body(((mel - mean) / std)[:, None])  # (B, 4w, n_mels / 8, frames / 16)
        h = torch.cat([h.mean(-1), h.amax(-1)], dim=1).flatten(1)
        return F.relu(self.proj(h))

    def from_power(
        self,
        power: torch.Tensor,
        augment: SpeechAugment | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(B, n_mels, frames) mel power -> (B, dim), through `augment` when given (the
        training loop precomputes the power of its clips once and augments it here)."""
        if augment is not None:
            power = augment.add_noise(power, self.logmel.filterbank, generator)
        mel = self.logmel.to_db(power)
        if augment is not None:
            mel = augment.spectrogram(mel, self.config, generator)
        return self.from_spectrogram(mel)

    def forward(
        self,
        clips: torch.Tensor,
        augment: SpeechAugment | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(B, samples) -> (B, dim)."""
        return self.from_power(self.power(clips), augment, generator)


class SpokenDigitClassifier(nn.Module):
    """A `SoundEncoder` and a linear head over the ten digits."""

    def __init__(self, config: SoundEncoderConfig | None = None, dropout: float = 0.3):
        super().__init__()
        self.encoder = SoundEncoder(config)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.encoder.dim, 10)
        self.metrics: dict = {}  # filled by training / loading: accuracies and conditions

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> (B, dim) embeddings."""
        return self.encoder(clips)

    def forward(self, clips: torch.Tensor, augment=None, generator=None) -> torch.Tensor:
        """(B, samples) -> (B, 10) logits."""
        return self.head(self.dropout(self.encoder(clips, augment, generator)))

    @torch.no_grad()
    def predict(self, clips: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """The digit each clip says (int64 (B,)), in eval mode, batch by batch."""
        was = self.training
        self.eval()
        out = torch.cat([self(c).argmax(1) for c in clips.split(batch_size)])
        self.train(was)
        return out


# --------------------------------------------------------------------------- augmentation


def _uniform(n: int, lo: float, hi: float, generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)


@dataclass(frozen=True)
class SpeechAugment:
    """Random changes to a batch that keep the spoken word, so that a model trained on one
    synthesiser carries over to other voices and recordings. Each clip draws its own."""

    snr_db: tuple[float, float] = (0.0, 40.0)  # coloured noise (white .. brown)
    noise_prob: float = 0.8
    shift_s: float = 0.15  # time shift, either way
    stretch: tuple[float, float] = (0.8, 1.25)  # time scale of the spectrogram
    warp: tuple[float, float] = (0.85, 1.15)  # mel-axis scale: formants up or down
    eq_db: float = 6.0  # amplitude of a smooth random EQ across the bands
    lowpass_hz: tuple[float, float] = (2600.0, 4500.0)  # a random band limit, half the time
    time_masks: int = 2
    time_mask_frames: int = 12
    freq_masks: int = 2
    freq_mask_bands: int = 5

    def add_noise(self, power: torch.Tensor, filterbank: torch.Tensor, generator=None):
        """Add the mel power of noise to (B, n_mels, frames) mel power: a spectrum f^-a
        (a from 0, white, to 2, brown) through the filterbank, at an SNR (to the clip's
        mean power) drawn per clip, with gamma-distributed (shape 2) fluctuation per
        band and frame; on a random share of the clips."""
        b, m, t = power.shape
        dev, dtype = power.device, power.dtype
        f = torch.arange(filterbank.shape[1], device=dev, dtype=dtype).clamp_min(1.0)
        slope = _uniform(b, 0.0, 2.0, generator, dev).to(dtype)[:, None]
        bands = f.log()[None].mul(-slope).exp() @ filterbank.to(dtype).T  # (B, n_mels)
        bands = bands / bands.mean(-1, keepdim=True)
        snr = _uniform(b, *self.snr_db, generator, dev).to(dtype)
        on = (torch.rand(b, generator=generator, device=dev) < self.noise_prob).to(dtype)
        level = power.mean(dim=(-2, -1)) * 10.0 ** (-snr / 10.0) * on  # (B,)
        u = torch.rand(2, b, m, t, generator=generator, device=dev).clamp_min(1e-12)
        wobble = -(u[0].log() + u[1].log()) / 2
        return power + level[:, None, None] * bands[:, :, None] * wobble.to(dtype)

    def spectrogram(self, mel: torch.Tensor, config: SoundEncoderConfig, generator=None):
        """Warp (time shift, time stretch, mel-axis scale), EQ, low-pass and masks on
        (B, n_mels, frames) log-mel in dB."""
        b, m, t = mel.shape
        dev = mel.device
        floor = mel.amin(dim=(-2, -1), keepdim=True)
        # An affine resampling grid: output (x: time, y: mel) reads the input at
        # x / stretch + shift and y / warp (anchored at the lowest band).
        stretch = _uniform(b, *self.stretch, generator, dev)
        warp = _uniform(b, *self.warp, generator, dev)
        shift = _uniform(b, -1.0, 1.0, generator, dev) * (2 * self.shift_s * 100 / t)
        theta = torch.zeros(b, 2, 3, device=dev, dtype=mel.dtype)
        theta[:, 0, 0] = 1.0 / stretch
        theta[:, 0, 2] = shift
        theta[:, 1, 1] = 1.0 / warp
        theta[:, 1, 2] = 1.0 / warp - 1.0  # keeps y = -1 (the lowest band) fixed
        grid = F.affine_grid(theta, (b, 1, m, t), align_corners=False)
        # pad with the floor value: shift the floor to 0, sample with zero padding
        mel = F.grid_sample((mel - floor)[:, None], grid, align_corners=False)[:, 0] + floor
        # smooth EQ: a random cosine series over the bands, +-eq_db
        k = torch.arange(1, 4, device=dev, dtype=mel.dtype)
        pos = torch.linspace(0, math.pi, m, device=dev, dtype=mel.dtype)
        amp = _uniform(b * 3, -1.0, 1.0, generator, dev).view(b, 3) * self.eq_db / 2
        mel = mel + (amp[:, :, None] * torch.cos(k[:, None] * pos)).sum(1)[:, :, None]
        # a random band limit on half the clips: bands above it fall to the floor
        edges = audio.mel_to_hz(
            torch.linspace(
                float(audio.hz_to_mel(config.f_min)), float(audio.hz_to_mel(config.f_max)), m + 2
            )[1:-1]
        ).to(dev, mel.dtype)
        cut = _uniform(b, *self.lowpass_hz, generator, dev)
        cut = torch.where(torch.rand(b, generator=generator, device=dev) < 0.5, cut, 1e9)
        roll = ((edges[None] - cut[:, None]) / 150.0).clamp(0, 1)[:, :, None]  # ~150 Hz ramp
        mel = mel * (1 - roll) + floor * roll
        # masks filled with the clip's mean
        fill = mel.mean(dim=(-2, -1), keepdim=True)
        for size, count, axis in (
            (self.time_mask_frames, self.time_masks, 2),
            (self.freq_mask_bands, self.freq_masks, 1),
        ):
            length = mel.shape[axis]
            for _ in range(count):
                w = (torch.rand(b, generator=generator, device=dev) * (size + 1)).long()
                start = (torch.rand(b, generator=generator, device=dev) * (length - w)).long()
                pos = torch.arange(length, device=dev)[None]
                hit = (pos >= start[:, None]) & (pos < (start + w)[:, None])
                hit = hit[:, None, :] if axis == 2 else hit[:, :, None]
                mel = torch.where(hit, fill, mel)
        return mel


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.1
    ema: float | None = 0.99  # decay of the weight average that is kept; None: last weights
    seed: int = 0


@torch.no_grad()
def accuracy(model: SpokenDigitClassifier, data, batch_size: int = 256) -> float:
    """Share of clips of a `SpeechClips` whose digit the model names."""
    device = next(model.parameters()).device
    predicted = model.predict(data.clips.to(device), batch_size)
    return (predicted.cpu() == data.labels.cpu()).float().mean().item()


def train_sound_classifier(
    train,
    evaluate: dict | None = None,
    config: SoundEncoderConfig | None = None,
    train_config: TrainConfig | None = None,
    augment: SpeechAugment | None = SpeechAugment(),
    device=None,
    log: Callable[[str], None] | None = print,
) -> SpokenDigitClassifier:
    """Train a `SpokenDigitClassifier` on a `SpeechClips` (AdamW, one-cycle learning rate,
    label smoothing, `augment` on every batch) and return the exponential moving average
    of its weights (or the last weights: ema=None); `evaluate` maps names to
    `SpeechClips` whose accuracy is logged after each epoch and kept in `model.metrics`."""
    tc = train_config or TrainConfig()
    device = torch.device(device or "cpu")
    torch.manual_seed(tc.seed)
    generator = torch.Generator(device=device).manual_seed(tc.seed)
    order_gen = torch.Generator().manual_seed(tc.seed)
    model = SpokenDigitClassifier(config).to(device)
    steps_per_epoch = max(1, len(train) // tc.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, tc.lr, total_steps=tc.epochs * steps_per_epoch, pct_start=0.2
    )
    average = copy.deepcopy(model).eval() if tc.ema is not None else model
    labels = train.labels.to(device)
    with torch.no_grad():  # the STFT once: augmentation acts on mel power
        power = torch.cat([model.encoder.power(c.to(device)) for c in train.clips.split(512)])
    evaluate = evaluate or {}
    start = time.perf_counter()
    for epoch in range(tc.epochs):
        model.train()
        order = torch.randperm(len(train), generator=order_gen).to(device)
        total, correct, seen = 0.0, 0, 0
        for i in range(steps_per_epoch):
            idx = order[i * tc.batch_size : (i + 1) * tc.batch_size]
            logits = model.head(
                model.dropout(model.encoder.from_power(power[idx], augment, generator))
            )
            loss = F.cross_entropy(logits, labels[idx], label_smoothing=tc.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if average is not model:
                step = epoch * steps_per_epoch + i
                decay = min(tc.ema, (1 + step) / (10 + step))  # short runs: a short memory
                with torch.no_grad():
                    for a, p in zip(average.parameters(), model.parameters(), strict=True):
                        a.lerp_(p, 1.0 - decay)
                    for a, b in zip(average.buffers(), model.buffers(), strict=True):
                        a.copy_(b)
            total += loss.item() * idx.numel()
            correct += (logits.argmax(1) == labels[idx]).sum().item()
            seen += idx.numel()
        scores = {name: accuracy(average, data) for name, data in evaluate.items()}
        if log is not None:
            shown = "  ".join(f"{k} {v:.3f}" for k, v in scores.items())
            log(
                f"epoch {epoch + 1}/{tc.epochs}  loss {total / seen:.3f}  train (augmented) "
                f"{correct / seen:.3f}  {shown}  {time.perf_counter() - start:.0f} s"
            )
    model = average.eval()
    model.metrics = {
        "accuracy": {name: accuracy(model, data) for name, data in evaluate.items()},
        "train_clips": len(train),
        "train_seconds": round(time.perf_counter() - start, 1),
        "encoder": asdict(model.encoder.config),
        "training": asdict(tc),
    }
    return model


# --------------------------------------------------------------------------- the cache


def classifier_path(sources: tuple[str, ...]) -> Path:
    """Where the classifier trained on the clips of `sources` (synthesisers, e.g.
    ("espeak-ng", "flite")) with the default configuration is cached."""
    from ..data import speech

    text = json.dumps(
        [
            CACHE_VERSION,
            asdict(SoundEncoderConfig()),
            asdict(TrainConfig()),
            asdict(SpeechAugment()),
            [speech.recipe_id(s) for s in sources],
        ]
    )
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    return cache_dir() / f"spoken-digits-{'+'.join(sources)}-{key}.pt"


def load_sound_classifier(
    device=None,
    train_if_missing: bool = True,
    log: Callable[[str], None] | None = print,
) -> SpokenDigitClassifier:
    """The spoken-digit classifier trained on synthetic speech (espeak-ng, and flite's
    kal, kal16, awb and rms voices where flite is installed), from the cache; trained and
    cached first when missing (a few CPU minutes). Eval mode, parameters frozen.
    `.metrics["accuracy"]` holds its accuracy on held-out voices measured after training:
    "test" (recordings of a real voice) and "valid" (flite's slt voice, when installed).
    A cached file is used wherever it is found, with or without the synthesisers."""
    from ..data import speech

    for sources in (("espeak-ng", "flite"), ("espeak-ng",)):
        path = classifier_path(sources)
        if path.exists():
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
                model = SpokenDigitClassifier(SoundEncoderConfig(**saved["encoder"]))
                model.load_state_dict(saved["state_dict"])
                model.metrics = json.loads(saved["metrics"])
                return _frozen(model, device)
            except (OSError, RuntimeError, KeyError, ValueError):  # torn or foreign: retrain
                pass
    if not train_if_missing:
        raise FileNotFoundError(
            f"no cached spoken-digit classifier in {cache_dir()}; train it with: "
            "python -m gankernels.conditions.sound"
        )
    sources = speech.train_sources()
    train = speech.load_spoken_digits("train", log=log)
    evaluate = {"test": speech.load_spoken_digits("test", log=log)}
    if "flite" in sources:
        evaluate["valid"] = speech.load_spoken_digits("valid", log=log)
    if log is not None:
        log(f"training the spoken-digit classifier on {len(train)} clips ({', '.join(sources)})")
    model = train_sound_classifier(train, evaluate, log=log)
    model.metrics["sources"] = list(sources)
    saved = {
        "encoder": asdict(model.encoder.config),
        "state_dict": model.state_dict(),
        "metrics": json.dumps(model.metrics),
    }
    path = classifier_path(sources)
    atomic_write(path, lambda f: torch.save(saved, f))
    if log is not None:
        log(f"cached the spoken-digit classifier in {path}: accuracy {model.metrics['accuracy']}")
    return _frozen(model, device)


def _frozen(model: SpokenDigitClassifier, device) -> SpokenDigitClassifier:
    return model.to(device or "cpu").eval().requires_grad_(False)


def weights_fingerprint(module: nn.Module) -> str:
    """A short hash of a module's state_dict (names, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- conditions

SOUND_ENCODERS = ("pretrained", "finetune", "scratch")
SOUND_OUTPUTS = ("embedding", "logits")


class SoundConditionEncoder(nn.Module):
    """The sound condition of a conditional GAN, with the interface of the text encoders:
    `kind`, `trainable`, `dim`; `prepare(clips)` -> a table made once per data set whose
    rows `forward(rows, generator=None)` maps to (B, dim) float32 vectors;
    `encode_clips(clips)`; `config()` (rebuilt by `sound_encoder_from_config`).

    kind "pretrained": the cached spoken-digit classifier, frozen; `prepare` runs it once
    over the clips and returns its embeddings (output="embedding", 128-d) or its logits
    (output="logits", 10-d), which `forward` passes through. Its network is not a
    submodule, so it never enters a checkpoint; `config()` keeps a fingerprint of its
    weights, checked when rebuilt.
    kind "finetune" / "scratch": a trainable `SoundEncoder` (submodule `net`), started
    from the pretrained classifier's encoder or from random weights; `prepare` returns
    the clips' mel power (B, n_mels, frames) and `forward` runs the CNN on rows of it,
    with `SpeechAugment` in train mode when augment=True (drawing from `generator`)."""

    def __init__(
        self,
        kind: str = "pretrained",
        output: str = "embedding",
        augment: bool = True,
        device=None,
        log: Callable[[str], None] | None = print,
        train_if_missing: bool = True,
    ):
        super().__init__()
        if kind not in SOUND_ENCODERS:
            raise ValueError(f"sound encoder must be one of {SOUND_ENCODERS}, got {kind!r}")
        if output not in SOUND_OUTPUTS:
            raise ValueError(f"output must be one of {SOUND_OUTPUTS}, got {output!r}")
        if kind != "pretrained" and output != "embedding":
            raise ValueError(f"output={output!r} needs the pretrained encoder, got kind {kind!r}")
        self.kind, self.output, self.trainable = kind, output, kind != "pretrained"
        self.augment = SpeechAugment() if augment and self.trainable else None
        if kind == "scratch":
            self.net = SoundEncoder()
            self.fingerprint = None
        else:
            classifier = load_sound_classifier(train_if_missing=train_if_missing, log=log)
            self.fingerprint = weights_fingerprint(classifier)
            if kind == "pretrained":
                # a plain attribute, not a submodule: outside state_dict and parameters()
                self.__dict__["classifier"] = classifier
            else:
                self.net = copy.deepcopy(classifier.encoder).train().requires_grad_(True)
        self.dim = 10 if output == "logits" else SoundEncoderConfig().dim
        if device is not None:
            self.to(device)

    def _apply(self, fn, recurse=True):
        if self.kind == "pretrained":  # the frozen classifier follows .to(device)
            self.__dict__["classifier"] = self.classifier._apply(fn)
        return super()._apply(fn, recurse)

    @torch.no_grad()
    def prepare(self, clips: torch.Tensor, device=None, batch_size: int = 512, log=None):
        """The table `forward` reads rows of, for (N, samples) clips at 16 kHz, on `device`
        (default: the encoder's): embeddings / logits (pretrained), mel power (trainable)."""
        if clips.dim() != 2:
            raise ValueError(f"clips must have shape (N, samples), got {tuple(clips.shape)}")
        here = self._device()
        if log is not None and len(clips) > 1000:
            log(f"sound encoder ({self.kind}): preparing {len(clips)} clips")
        parts = []
        for chunk in clips.split(batch_size):
            chunk = chunk.to(here)
            if self.kind == "pretrained":
                h = self.classifier.embed(chunk)
                parts.append(self.classifier.head(h) if self.output == "logits" else h)
            else:
                parts.append(self.net.power(chunk))
        table = torch.cat(parts).float()
        return table.to(device) if device is not None else table

    def forward(self, rows: torch.Tensor, generator: torch.Generator | None = None):
        """(B, ...) rows of prepare() -> (B, dim)."""
        if self.kind == "pretrained":
            if rows.dim() != 2 or rows.shape[1] != self.dim:
                raise ValueError(
                    f"rows must be (B, {self.dim}) rows of prepare(), got {tuple(rows.shape)}"
                )
            return rows.float()
        augment = self.augment if self.training else None
        return self.net.from_power(rows.float(), augment, generator)

    def encode_clips(self, clips: torch.Tensor, device=None) -> torch.Tensor:
        """(N, dim) vectors of (N, samples) clips (gradients flow for a trainable encoder
        in grad mode)."""
        if self.kind == "pretrained":
            out = self.prepare(clips)
        else:
            out = self(self.net.power(clips.to(self._device())))
        return out if device is None else out.to(device)

    def config(self) -> dict:
        return {
            "kind": self.kind,
            "output": self.output,
            "augment": self.augment is not None,
            "dim": self.dim,
            "fingerprint": self.fingerprint,
        }

    def _device(self) -> torch.device:
        if self.kind == "pretrained":
            return next(self.classifier.parameters()).device
        return next(self.net.parameters()).device


def make_sound_encoder(
    kind: str = "pretrained", output: str = "embedding", device=None, log=print
) -> SoundConditionEncoder:
    """ "pretrained" (the cached spoken-digit classifier, frozen; trained and cached first
    when missing), "finetune" (a trainable copy of its encoder) or "scratch" (a trainable
    encoder from random weights)."""
    return SoundConditionEncoder(kind, output, device=device, log=log)


def sound_encoder_from_config(config: dict) -> SoundConditionEncoder:
    """Rebuild an encoder from `encoder.config()` (then load a trainable one's
    state_dict); a pretrained one must find the same cached classifier weights."""
    kind = config.get("kind") if isinstance(config, dict) else None
    if kind not in SOUND_ENCODERS:
        raise ValueError(
            f"config must be a sound encoder's config() with kind in {SOUND_ENCODERS}, "
            f"got kind {kind!r}"
        )
    encoder = SoundConditionEncoder(
        "scratch" if kind == "finetune" else kind,  # its weights come from the state_dict
        config.get("output", "embedding"),
        config.get("augment", True),
        log=None,
        train_if_missing=False,  # a retrained classifier would not match the fingerprint
    )
    encoder.kind, encoder.fingerprint = kind, config.get("fingerprint")
    if kind == "pretrained" and config.get("fingerprint") != weights_fingerprint(
        encoder.classifier
    ):
        raise ValueError(
            "the cached spoken-digit classifier differs from the one used in training "
            f"(fingerprint {weights_fingerprint(encoder.classifier)}, expected "
            f"{config.get('fingerprint')}); copy that run's {cache_dir()} files here"
        )
    return encoder


def encode_wav(
    encoder: SoundConditionEncoder, path, device=None, name: str = "--sound", log=print
) -> torch.Tensor:
    """(1, dim) condition vector of a WAV file (any PCM rate and channels: resampled and
    mixed down, said in the log); unreadable or non-WAV files give a one-line error that
    starts with `name`."""
    try:
        clip = audio.load_clip(path, log=log)
    except (ValueError, OSError) as err:
        raise type(err)(f"{name}: {err}") from None
    was = encoder.training
    encoder.eval()
    with torch.no_grad():
        out = encoder.encode_clips(clip[None], device)
    encoder.train(was)
    return out


@torch.no_grad()
def embed_clips(encoder: nn.Module, clips: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Embeddings of many clips by a `SoundEncoder` or `SpokenDigitClassifier.embed`-like
    module, in eval mode, batch by batch."""
    was = encoder.training
    encoder.eval()
    device = next(encoder.parameters()).device
    out = torch.cat([encoder(c.to(device)) for c in clips.split(batch_size)])
    encoder.train(was)
    return out


if __name__ == "__main__":  # python -m gankernels.conditions.sound: train and cache it now
    clf = load_sound_classifier()
    print(json.dumps(clf.metrics, indent=1))
