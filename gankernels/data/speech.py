"""Spoken digits "zero" .. "nine": synthetic speech to train on, real voices to test on.

    train = load_spoken_digits("train")    # synthetic, 9480 clips, made once and cached
    test = load_spoken_digits("test")      # recorded human voices, never trained on
    train.clips, train.labels, train.sources       # (N, 16000) float32, (N,), (N,)
    sampler = DigitClipSampler(train)
    clip_index = sampler.sample(image_labels)      # a random clip of each image's digit
    wrong_index = sampler.sample_other(image_labels)   # a clip of another digit

Every clip is 1 s at 16 kHz, silence trimmed, -20 dBFS RMS, centred in zeros (see
`gankernels.audio.prepare_clip`). Splits:
- "train" (9480 clips): Debian package espeak-ng (program GPL-3.0-or-later; the speech
  it makes is ours to use) speaks each digit word in its eight English accents
  (`ESPEAK_VOICES`), each with every voice variant it ships (`+m1` .. `+f5`, `+klatt`,
  `+whisper`, ...: 101 in 1.51), at a speed (90..200 words per minute) and pitch drawn
  per clip from a seeded generator: 8080 clips. Where Debian package flite (CMU Flite,
  BSD-style licence) is installed, its voices kal, kal16 (diphone), awb and rms
  (statistical voices built from recordings of two speakers) add 1400 clips at five
  durations and seven pitches; without it "train" is espeak-ng's alone, said in the log.
- "valid" (350 clips): flite's slt voice (a woman's, built from recordings of a third
  speaker) at the same durations and pitches: a voice never trained on, of a second
  synthesiser; it needs flite.
- "test" (10 clips): recordings of a real person. Debian package
  asterisk-core-sounds-en-wav (Allison Smith's prompts for the Asterisk PBX,
  CC-BY-SA-3.0): `digits/0.wav` .. `9.wav`, 8 kHz, one clip per digit. No other Debian
  package was found to hold recordings of English digit words said one at a time: the
  other asterisk-core-sounds-* sets are Spanish, French, Italian and Russian;
  pocketsphinx-testdata holds a few digits only inside connected phrases ("five five",
  "four queen of clubs") and TIDIGITS features, not audio; festival, flite and espeak-ng
  voices are synthetic.

The synthesisers run as parallel subprocesses; each one's clips are cached as one int16
array file under `speech_dir()`, written atomically, and made again when the recipe or
the program's version changes. A missing package raises `SpeechNotInstalled` with the
apt-get command that installs it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import audio
from ..images import atomic_write
from . import DatasetNotInstalled

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "valid", "test")

# espeak-ng's English accents (its gmw/ voices; the mb/ ones need mbrola, not packaged).
ESPEAK_VOICES = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
# Speeds (words per minute; espeak-ng's default is 175) and pitches (0..99, default 50)
# drawn per clip. Digits said one at a time by people are slow: the recorded ones last
# as long as espeak-ng's at about 105 wpm. From 90 wpm up a digit word fits in one second.
ESPEAK_SPEEDS = (90, 200)
ESPEAK_PITCHES = (10, 90)
ESPEAK_SEED = 0
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
FLITE_TRAIN_VOICES = ("kal", "kal16", "awb", "rms")  # "train" adds these to espeak-ng's
FLITE_VALID_VOICES = ("slt",)  # held out: the "valid" split
FLITE_STRETCHES = (0.9, 1.1, 1.3, 1.5, 1.7)  # duration_stretch: > 1 is slower
FLITE_PITCHES = (None, 90.0, 120.0, 150.0, 180.0, 210.0, 240.0)  # int_f0_target_mean, Hz
# (None: the voice's own)
ASTERISK_ROOT = Path("/usr/share/asterisk/sounds")
# Folders of recorded voices in asterisk sound packages that hold digits/0.wav .. 9.wav
# (en_US_f_Allison is the en-wav package's; the "en" and "en_US" links point to it).
ASTERISK_VOICES = ("en_US_f_Allison",)

INSTALL_COMMANDS = {
    "espeak-ng": "apt-get update && apt-get install -y espeak-ng",
    "flite": "apt-get update && apt-get install -y flite",
    "asterisk-core-sounds-en-wav": (
        "apt-get update && apt-get install -y asterisk-core-sounds-en-wav"
    ),
}
OUT_FILE = "{out}"  # in a synthesiser's argv: the temporary file it writes
# Bumped when the recipe's code changes the clips it makes.
CACHE_VERSION = 3


class SpeechNotInstalled(DatasetNotInstalled):
    """A Debian package the speech data need is missing; the message says how to install
    it (a DatasetNotInstalled, so command lines report it in one line)."""

    def __init__(self, package: str, detail: str):
        self.name = package
        self.install_command = INSTALL_COMMANDS[package]
        RuntimeError.__init__(
            self,
            f"spoken digits need the Debian package {package} ({detail}); install it with: "
            f"{self.install_command}",
        )


def speech_dir() -> Path:
    """$GANKERNELS_DATA/speech (default ~/.cache/gankernels/data/speech), read at each call."""
    root = os.environ.get("GANKERNELS_DATA")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "gankernels" / "data"
    return base / "speech"


# --------------------------------------------------------------------------- the data set


@dataclass
class SpeechClips:
    """Fixed-length clips of spoken digits.

    clips: float32 (N, samples) at `sample_rate`; labels: int64 (N,) digits 0..9;
    sources: int64 (N,) indices into `source_names` (engine:voice, e.g.
    "espeak-ng:en-gb+m3", "asterisk:en_US_f_Allison"); split: "train", "valid" or "test"."""

    clips: torch.Tensor
    labels: torch.Tensor
    sources: torch.Tensor
    source_names: tuple[str, ...]
    sample_rate: int
    split: str

    def __post_init__(self):
        n = self.clips.shape[0]
        if self.clips.dim() != 2 or self.labels.shape != (n,) or self.sources.shape != (n,):
            shapes = [tuple(t.shape) for t in (self.clips, self.labels, self.sources)]
            raise ValueError(
                f"clips must be (N, samples) with labels and sources (N,), got shapes {shapes}"
            )

    def __len__(self) -> int:
        return self.clips.shape[0]

    def __getitem__(self, i):
        return self.clips[i], self.labels[i]

    def subset(self, index) -> SpeechClips:
        index = torch.as_tensor(index)
        return SpeechClips(
            self.clips[index],
            self.labels[index],
            self.sources[index],
            self.source_names,
            self.sample_rate,
            self.split,
        )

    def counts(self) -> list[int]:
        """How many clips each digit has."""
        return torch.bincount(self.labels, minlength=10).tolist()

    def save(self, path: str | os.PathLike) -> None:
        """Write the clips (as 16-bit PCM) and their fields to one .npz file, atomically:
        a way to carry a split to a machine without the synthesisers or packages."""
        arrays = {
            "audio": np.round(self.clips.clamp(-1, 1 - 2**-15).cpu().numpy() * 32768).astype(
                np.int16
            ),
            "labels": self.labels.cpu().numpy(),
            "sources": self.sources.cpu().numpy(),
            "source_names": np.array(self.source_names),
            "sample_rate": np.array(self.sample_rate),
            "split": np.array(self.split),
        }
        atomic_write(path, lambda f: np.savez(f, **arrays))

    @staticmethod
    def load(path: str | os.PathLike) -> SpeechClips:
        """Read a file written by `save`."""
        with np.load(path) as f:
            data = _as_clips([{k: f[k] for k in f.files}], str(f["split"]))
            data.sample_rate = int(f["sample_rate"])
        return data

    def to(self, device) -> SpeechClips:
        return SpeechClips(
            self.clips.to(device),
            self.labels.to(device),
            self.sources.to(device),
            self.source_names,
            self.sample_rate,
            self.split,
        )


class DigitClipSampler:
    """Draws, for each digit label, a clip index of that digit uniformly at random, on
    the device of the labels (the training loop pairs each image with a spoken clip of its
    digit this way). Every digit must have at least one clip."""

    def __init__(self, data: SpeechClips):
        labels = data.labels.cpu()
        per_digit = [torch.nonzero(labels == d).flatten() for d in range(10)]
        missing = [d for d, idx in enumerate(per_digit) if idx.numel() == 0]
        if missing:
            raise ValueError(f"the {data.split} clips have no clip of digit(s) {missing}")
        self.counts = torch.tensor([idx.numel() for idx in per_digit])
        self.table = torch.zeros(10, int(self.counts.max()), dtype=torch.int64)
        for d, idx in enumerate(per_digit):
            self.table[d, : idx.numel()] = idx

    def sample(
        self, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """int64 clip indices, one per label, each a clip of that label's digit."""
        labels = torch.as_tensor(labels)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > 9):
            raise ValueError(
                f"labels must be digits 0..9, got values {labels.min()}..{labels.max()}"
            )
        device = labels.device if generator is None else generator.device
        u = torch.rand(labels.shape, generator=generator, device=device).to(labels.device)
        counts, table = self.counts.to(labels.device), self.table.to(labels.device)
        pick = (u * counts[labels]).long().clamp_max(counts[labels] - 1)
        return table[labels, pick]

    def sample_other(
        self, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """int64 clip indices, one per label, each a clip of another digit (uniform over
        the nine others): the mismatched condition of a matching-aware discriminator."""
        labels = torch.as_tensor(labels)
        device = labels.device if generator is None else generator.device
        step = torch.randint(1, 10, labels.shape, generator=generator, device=device)
        return self.sample((labels + step.to(labels.device)) % 10, generator)


def pair_clips(image_labels, data: SpeechClips, seed: int = 0) -> torch.Tensor:
    """A fixed pairing: for each image label a clip index of the same digit, drawn from a
    seeded generator (the same seed gives the same pairing)."""
    generator = torch.Generator().manual_seed(seed)
    return DigitClipSampler(data).sample(torch.as_tensor(image_labels).cpu(), generator)


def load_spoken_digits(
    split: str = "train", log: Callable[[str], None] | None = print, workers: int | None = None
) -> SpeechClips:
    """The clips of a split (see the module docstring); "train" and "valid" are
    synthesised and cached on first use (a few minutes), "test" is read from the
    recordings' package."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    if split == "test":
        return load_recorded_digits(log=log)
    if split == "valid":
        return _as_clips([_flite_arrays(FLITE_VALID_VOICES, log, workers)], "valid")
    parts = [_cached("espeak", _espeak_recipe(), log, workers)]
    if shutil.which("flite") is None:
        if log is not None:
            log(
                "flite is not installed: training clips from espeak-ng only (add it with "
                f"{INSTALL_COMMANDS['flite']})"
            )
    else:
        parts.append(_flite_arrays(FLITE_TRAIN_VOICES, log, workers))
    return _as_clips(parts, "train")


def train_sources() -> tuple[str, ...]:
    """The synthesisers the "train" split draws on here: espeak-ng, and flite when it is
    installed."""
    return ("espeak-ng", "flite") if shutil.which("flite") else ("espeak-ng",)


def _flite_arrays(voices: Sequence[str], log, workers: int | None) -> dict[str, np.ndarray]:
    """The cached flite clips of some of its voices (all five are made together)."""
    arrays = _cached("flite", _flite_recipe(), log, workers)
    names = [str(n) for n in arrays["source_names"]]
    keep = [names.index(f"flite:{v}") for v in voices]
    rows = np.isin(arrays["sources"], keep)
    renumber = np.full(len(names), -1)
    renumber[keep] = np.arange(len(keep))
    return {
        "audio": arrays["audio"][rows],
        "labels": arrays["labels"][rows],
        "sources": renumber[arrays["sources"][rows]],
        "source_names": np.array([f"flite:{v}" for v in voices]),
    }


def _as_clips(parts: Sequence[dict], split: str) -> SpeechClips:
    """int16 arrays of one or more caches -> one float32 SpeechClips (converted once)."""
    offsets = np.cumsum([0] + [len(p["source_names"]) for p in parts[:-1]])
    pcm = np.concatenate([p["audio"] for p in parts]) if len(parts) > 1 else parts[0]["audio"]
    clips = torch.from_numpy(pcm).to(torch.float32).div_(32768.0)
    return SpeechClips(
        clips,
        torch.from_numpy(np.concatenate([p["labels"] for p in parts])),
        torch.from_numpy(
            np.concatenate([p["sources"] + o for p, o in zip(parts, offsets, strict=True)])
        ),
        tuple(str(n) for p in parts for n in p["source_names"]),
        audio.SAMPLE_RATE,
        split,
    )


def concat_clips(parts: Sequence[SpeechClips], split: str) -> SpeechClips:
    """One SpeechClips from several (source ids renumbered, names concatenated)."""
    offsets = np.cumsum([0] + [len(p.source_names) for p in parts[:-1]])
    return SpeechClips(
        torch.cat([p.clips for p in parts]),
        torch.cat([p.labels for p in parts]),
        torch.cat([p.sources + int(o) for p, o in zip(parts, offsets, strict=True)]),
        tuple(n for p in parts for n in p.source_names),
        parts[0].sample_rate,
        split,
    )


def load_recorded_digits(
    root: str | os.PathLike = ASTERISK_ROOT,
    voices: Sequence[str] = ASTERISK_VOICES,
    log: Callable[[str], None] | None = print,
) -> SpeechClips:
    """Real voices: <root>/<voice>/digits/<d>.wav for each voice folder that exists."""
    root = Path(root)
    found = [v for v in voices if (root / v / "digits").is_dir()]
    if not found:
        raise SpeechNotInstalled(
            "asterisk-core-sounds-en-wav", f"no {root}/<voice>/digits folder for {list(voices)}"
        )
    clips, labels, sources = [], [], []
    for s, voice in enumerate(found):
        for d in range(10):
            path = root / voice / "digits" / f"{d}.wav"
            if not path.exists():
                continue
            clips.append(audio.load_clip(path, log=None))
            labels.append(d)
            sources.append(s)
    return SpeechClips(
        torch.stack(clips),
        torch.tensor(labels),
        torch.tensor(sources),
        tuple(f"asterisk:{v}" for v in found),
        audio.SAMPLE_RATE,
        "test",
    )


# --------------------------------------------------------------------------- synthesis


@dataclass(frozen=True)
class _Recipe:
    program: str
    source_names: tuple[str, ...]
    jobs: tuple[tuple[int, int, tuple[str, ...]], ...]  # (digit, source, argv)

    def key(self, version: str) -> str:
        text = json.dumps(
            [CACHE_VERSION, version, audio.SAMPLE_RATE, audio.CLIP_SECONDS, self.jobs]
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _require(program: str, package: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise SpeechNotInstalled(package, f"the program {program} is not on PATH")
    return path


def recipe_id(engine: str) -> str:
    """A short hash of the constants that define the clips of a synthesiser ("espeak-ng"
    or "flite"), not of the installed program, so that it can be computed where the
    synthesiser is missing: the key of caches derived from those clips, such as the
    spoken-digit classifier's weights."""
    if engine == "espeak-ng":
        recipe = [ESPEAK_VOICES, ESPEAK_SPEEDS, ESPEAK_PITCHES, ESPEAK_SEED]
    elif engine == "flite":
        recipe = [FLITE_VOICES, FLITE_TRAIN_VOICES, FLITE_STRETCHES, FLITE_PITCHES]
    else:
        raise ValueError(f"engine must be 'espeak-ng' or 'flite', got {engine!r}")
    text = json.dumps([CACHE_VERSION, engine, recipe, DIGIT_WORDS])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def espeak_variants() -> list[str]:
    """The voice variants the installed espeak-ng ships (`espeak-ng --voices=variant`)."""
    out = subprocess.run(
        [_require("espeak-ng", "espeak-ng"), "--voices=variant"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    # columns: Pty Language Age/Gender VoiceName File [Other languages]; File is !v/<name>
    names = [line.split()[4].split("/")[-1] for line in out[1:] if len(line.split()) >= 5]
    return sorted(set(names))


def _espeak_recipe() -> _Recipe:
    program = "espeak-ng"
    _require(program, "espeak-ng")
    rng = np.random.default_rng(ESPEAK_SEED)
    names, jobs = [], []
    for voice in ESPEAK_VOICES:
        for variant in espeak_variants():
            source = len(names)
            names.append(f"espeak-ng:{voice}+{variant}")
            for d, word in enumerate(DIGIT_WORDS):
                speed = int(rng.integers(ESPEAK_SPEEDS[0], ESPEAK_SPEEDS[1] + 1))
                pitch = int(rng.integers(ESPEAK_PITCHES[0], ESPEAK_PITCHES[1] + 1))
                argv = (program, "-v", f"{voice}+{variant}", "-s", str(speed), "-p", str(pitch))
                jobs.append((d, source, (*argv, "--stdout", word)))
    return _Recipe("espeak-ng", tuple(names), tuple(jobs))


def _flite_recipe() -> _Recipe:
    program = "flite"
    _require(program, "flite")
    names, jobs = [], []
    for voice in FLITE_VOICES:
        source = len(names)
        names.append(f"flite:{voice}")
        for stretch in FLITE_STRETCHES:
            for pitch in FLITE_PITCHES:
                extra = ("--setf", f"duration_stretch={stretch}")
                if pitch is not None:
                    extra += ("--setf", f"int_f0_target_mean={pitch}")
                for d, word in enumerate(DIGIT_WORDS):
                    argv = (program, "-voice", voice, *extra, "-t", word, "-o", OUT_FILE)
                    jobs.append((d, source, argv))
    return _Recipe("flite", tuple(names), tuple(jobs))


def _program_version(program: str) -> str:
    out = subprocess.run([program, "--version"], capture_output=True, text=True)
    return " ".join((out.stdout + out.stderr).split())


def _synthesise(argv: Sequence[str]) -> bytes:
    """Run a synthesiser; its WAV comes on stdout, or in a temporary file where argv
    names OUT_FILE (flite cannot write to a pipe)."""
    with tempfile.TemporaryDirectory(prefix="gankernels-speech-") as tmp:
        out = os.path.join(tmp, "out.wav")
        to_file = OUT_FILE in argv
        argv = [out if a == OUT_FILE else a for a in argv]
        done = subprocess.run(argv, capture_output=True)
        if not to_file:
            data = done.stdout
        else:
            data = Path(out).read_bytes() if os.path.exists(out) else b""
    if done.returncode != 0 or not data:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{' '.join(argv)} failed: {err[-1] if err else done.returncode}")
    return data


def _condition(waves: list[torch.Tensor], rate: int, log) -> torch.Tensor:
    """Synthesised waves (any lengths, one rate) -> (N, CLIP_SAMPLES) conditioned clips,
    resampled in batches of padded equal-length rows."""
    out = torch.empty(len(waves), audio.CLIP_SAMPLES)
    cut = 0
    for s in range(0, len(waves), 64):
        group = waves[s : s + 64]
        longest = max(w.numel() for w in group)
        batch = torch.stack([torch.nn.functional.pad(w, (0, longest - w.numel())) for w in group])
        if rate != audio.SAMPLE_RATE:
            batch = audio.resample(batch, rate, audio.SAMPLE_RATE)
        for i, (w, row) in enumerate(zip(group, batch, strict=True)):
            n = -(-w.numel() * audio.SAMPLE_RATE // rate)
            speech = audio.trim_silence(row[:n], audio.SAMPLE_RATE)
            cut += speech.numel() > audio.CLIP_SAMPLES
            out[s + i] = audio.fix_length(audio.normalize_loudness(speech), audio.CLIP_SAMPLES)
    if cut and log is not None:
        log(f"{cut} clips longer than {audio.CLIP_SECONDS:g} s were cut to their middle")
    return out


def _build(recipe: _Recipe, log, workers: int | None) -> dict[str, np.ndarray]:
    workers = workers or max(2, os.cpu_count() or 2)
    if log is not None:
        log(
            f"synthesising {len(recipe.jobs)} spoken digits with {recipe.program} "
            f"({len(recipe.source_names)} voices, {workers} processes at a time)"
        )
    with ThreadPoolExecutor(workers) as pool:
        outputs = list(pool.map(_synthesise, [argv for _, _, argv in recipe.jobs]))
    decoded = [
        audio.decode_wav(data, name=" ".join(argv), log=None)
        for data, (_, _, argv) in zip(outputs, recipe.jobs, strict=True)
    ]
    audio_i16 = np.zeros((len(decoded), audio.CLIP_SAMPLES), dtype=np.int16)
    for rate in sorted({r for _, r in decoded}):  # flite's voices differ in rate
        which = [i for i, (_, r) in enumerate(decoded) if r == rate]
        block = _condition([decoded[i][0] for i in which], rate, log)
        audio_i16[which] = np.round(block.clamp(-1, 1 - 2**-15).numpy() * 32768).astype(np.int16)
    return {
        "audio": audio_i16,
        "labels": np.array([d for d, _, _ in recipe.jobs], dtype=np.int64),
        "sources": np.array([s for _, s, _ in recipe.jobs], dtype=np.int64),
        "source_names": np.array(recipe.source_names),
    }


def _cached(kind: str, recipe: _Recipe, log, workers: int | None) -> dict[str, np.ndarray]:
    """The arrays of a recipe's clips (audio int16 (N, samples), labels, sources,
    source_names), from the cache file or made and stored there."""
    version = _program_version(recipe.jobs[0][2][0])
    path = speech_dir() / f"{kind}-digits-{recipe.key(version)}.npz"
    if path.exists():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in ("audio", "labels", "sources", "source_names")}
        except (OSError, ValueError, KeyError):  # a torn or foreign file: make it again
            pass
    arrays = _build(recipe, log, workers)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    if log is not None:
        log(f"cached {len(arrays['labels'])} clips in {path}")
    return arrays


if __name__ == "__main__":  # python -m gankernels.data.speech: make the caches now
    for split in SPLITS:
        try:
            d = load_spoken_digits(split)
            print(f"{split}: {len(d)} clips, per digit {d.counts()}, {len(d.source_names)} voices")
        except SpeechNotInstalled as err:
            print(f"{split}: {err}")
