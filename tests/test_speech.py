"""Spoken-digit data (synthesis, caching, real recordings, pairing with image labels) and
the sound encoder / spoken-digit classifier."""

import math
import shutil

import pytest
import torch

from gankernels import audio
from gankernels.conditions import sound
from gankernels.data import speech

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
HAVE_RECORDINGS = (speech.ASTERISK_ROOT / speech.ASTERISK_VOICES[0] / "digits" / "0.wav").exists()


def _clips(n_per_digit=3, samples=800, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(10).repeat_interleave(n_per_digit)
    return speech.SpeechClips(
        torch.randn(labels.numel(), samples, generator=g),
        labels,
        torch.zeros_like(labels),
        ("test:noise",),
        audio.SAMPLE_RATE,
        "train",
    )


# --------------------------------------------------------------------------- data set


def test_speech_clips_fields_subset_save(tmp_path):
    data = _clips()
    assert len(data) == 30 and data.counts() == [3] * 10
    sub = data.subset(torch.tensor([0, 5, 29]))
    assert sub.labels.tolist() == [0, 1, 9] and sub.clips.shape == (3, 800)
    data.clips.clamp_(-1, 1)
    data.save(tmp_path / "clips.npz")
    back = speech.SpeechClips.load(tmp_path / "clips.npz")
    torch.testing.assert_close(back.clips, data.clips, atol=2**-15, rtol=0)
    assert torch.equal(back.labels, data.labels) and back.source_names == data.source_names
    assert back.split == "train" and back.sample_rate == audio.SAMPLE_RATE
    clip, label = data[4]
    assert clip.shape == (800,) and int(label) == 1
    with pytest.raises(ValueError, match="clips must be"):
        speech.SpeechClips(torch.zeros(3, 8), torch.zeros(2), torch.zeros(3), ("a",), 16000, "x")


def test_sampler_pairs_each_label_with_a_clip_of_its_digit():
    data = _clips(n_per_digit=4)
    sampler = speech.DigitClipSampler(data)
    labels = torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(1))
    idx = sampler.sample(labels, torch.Generator().manual_seed(2))
    assert torch.equal(data.labels[idx], labels)
    assert idx.unique().numel() == 40  # every clip gets drawn
    again = sampler.sample(labels, torch.Generator().manual_seed(2))
    assert torch.equal(idx, again)
    assert torch.equal(speech.pair_clips(labels, data, seed=3), speech.pair_clips(labels, data, 3))
    with pytest.raises(ValueError, match="digits 0..9"):
        sampler.sample(torch.tensor([3, 10]))
    with pytest.raises(ValueError, match=r"no clip of digit\(s\) \[9\]"):
        speech.DigitClipSampler(data.subset(torch.nonzero(data.labels < 9).flatten()))


def test_split_names_and_missing_programs(monkeypatch):
    with pytest.raises(ValueError, match="split must be one of"):
        speech.load_spoken_digits("dev")
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(speech.SpeechNotInstalled, match="apt-get install -y espeak-ng"):
        speech.load_spoken_digits("train")
    with pytest.raises(speech.SpeechNotInstalled, match="asterisk-core-sounds-en-wav"):
        speech.load_recorded_digits(root="/nonexistent")


@pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng is not installed")
def test_synthesis_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKERNELS_DATA", str(tmp_path))
    jobs = tuple(
        (d, s, ("espeak-ng", "-v", v, "-s", "170", "--stdout", speech.DIGIT_WORDS[d]))
        for s, v in enumerate(("en-us+m3", "en-gb+f2"))
        for d in (1, 7)
    )
    recipe = speech._Recipe("espeak-ng", ("espeak-ng:en-us+m3", "espeak-ng:en-gb+f2"), jobs)
    said = []
    first = speech._as_clips([speech._cached("espeak", recipe, said.append, workers=2)], "x")
    assert any("synthesising 4" in s for s in said) and any("cached 4" in s for s in said)
    assert first.clips.shape == (4, audio.CLIP_SAMPLES) and first.labels.tolist() == [1, 7, 1, 7]
    assert first.sources.tolist() == [0, 0, 1, 1] and first.source_names[1] == "espeak-ng:en-gb+f2"
    for clip in first.clips:  # speech at the target loudness (or peak-limited), in zeros
        span = torch.nonzero(clip).flatten()
        speech_part = clip[span[0] : span[-1] + 1]
        rms_db = 20 * torch.log10(speech_part.pow(2).mean().sqrt()).item()
        peak = speech_part.abs().max().item()
        assert abs(rms_db - audio.TARGET_DBFS) < 0.5 or abs(peak - 0.99) < 1e-3
        assert 0.2 * audio.CLIP_SAMPLES < speech_part.numel() < audio.CLIP_SAMPLES
    files = list((tmp_path / "speech").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary file left behind
    said.clear()
    second = speech._as_clips([speech._cached("espeak", recipe, said.append, workers=2)], "x")
    assert said == [] and torch.equal(first.clips, second.clips)  # read back, not remade
    files[0].write_bytes(b"torn")
    third = speech._as_clips([speech._cached("espeak", recipe, None, workers=1)], "x")  # remade
    assert torch.equal(first.clips, third.clips)  # espeak-ng is deterministic


@pytest.mark.skipif(not HAVE_ESPEAK, reason="espeak-ng is not installed")
def test_espeak_recipe_is_large_and_reproducible():
    a, b = speech._espeak_recipe(), speech._espeak_recipe()
    assert a == b and len(a.jobs) >= 5000
    assert {d for d, _, _ in a.jobs} == set(range(10))
    assert len(speech.espeak_variants()) >= 50


@pytest.mark.skipif(not HAVE_RECORDINGS, reason="asterisk-core-sounds-en-wav is not installed")
def test_recorded_voices():
    test = speech.load_spoken_digits("test")
    assert test.split == "test" and test.labels.tolist() == list(range(10))
    assert test.clips.shape == (10, audio.CLIP_SAMPLES) and test.source_names == (
        "asterisk:en_US_f_Allison",
    )
    assert (test.clips.abs().amax(1) > 0.1).all()


# --------------------------------------------------------------------------- the encoder


def test_encoder_shapes_any_length_and_determinism():
    torch.manual_seed(0)
    enc = sound.SoundEncoder(dim=32, width=8).eval()
    for samples in (audio.CLIP_SAMPLES, 12345, 4000):
        x = torch.randn(3, samples) * 0.1
        emb = enc(x)
        assert emb.shape == (3, 32) and torch.isfinite(emb).all()
        assert torch.equal(emb, enc(x))  # eval mode: deterministic
    # one clip's embedding does not depend on the rest of the batch in eval mode
    x = torch.randn(4, 8000)
    torch.testing.assert_close(enc(x)[1:2], enc(x[1:2]), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"\(batch, samples\)"):
        enc(torch.randn(8000))


def test_classifier_logits_embeddings_and_gradients():
    torch.manual_seed(0)
    clf = sound.SpokenDigitClassifier(sound.SoundEncoderConfig(dim=16, width=8))
    x = torch.randn(5, 8000) * 0.1
    assert clf(x).shape == (5, 10) and clf.embed(x).shape == (5, 16)
    assert clf.predict(x).shape == (5,) and clf.training  # predict restores the mode
    clf(x).logsumexp(1).sum().backward()
    assert all(p.grad is not None for p in clf.parameters())


def test_augment_is_reproducible_and_changes_the_input():
    enc = sound.SoundEncoder(dim=16, width=8)
    power = enc.power(torch.randn(6, 8000) * 0.1)
    aug = sound.SpeechAugment()
    mel = [
        aug.spectrogram(
            enc.logmel.to_db(aug.add_noise(power, enc.logmel.filterbank, g)), enc.config, g
        )
        for g in (torch.Generator().manual_seed(5), torch.Generator().manual_seed(5))
    ]
    assert mel[0].shape == power.shape and torch.isfinite(mel[0]).all()
    assert torch.equal(mel[0], mel[1])
    assert not torch.allclose(mel[0], enc.logmel.to_db(power))


def test_tiny_training_learns_tones():
    """The training loop on ten classes of tones (not speech): a few seconds, and it must
    get most of them right."""
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat(16)
    t = torch.arange(4000) / audio.SAMPLE_RATE
    freq = 200.0 * 1.3 ** labels.float()[:, None] * (1 + 0.02 * torch.randn(160, 1, generator=g))
    clips = 0.1 * torch.sin(2 * math.pi * freq * t) + 0.001 * torch.randn(160, 4000, generator=g)
    data = speech.SpeechClips(clips, labels, torch.zeros_like(labels), ("tones",), 16000, "train")
    said = []
    clf = sound.train_sound_classifier(
        data,
        {"train": data},
        sound.SoundEncoderConfig(dim=16, width=8),
        sound.TrainConfig(epochs=6, batch_size=32, lr=1e-2),
        augment=None,
        log=said.append,
    )
    assert len(said) == 6 and not clf.training
    assert clf.metrics["accuracy"]["train"] >= 0.8


def test_cached_classifier_on_real_voices():
    """The cached classifier (made by `python -m gankernels.conditions.sound`), where it
    exists, on the recorded voices."""
    try:
        clf = sound.load_sound_classifier(train_if_missing=False)
    except FileNotFoundError:
        pytest.skip("no cached spoken-digit classifier")
    assert not clf.training and not any(p.requires_grad for p in clf.parameters())
    assert clf.embed(torch.zeros(2, audio.CLIP_SAMPLES)).shape == (2, clf.encoder.dim)
    if not HAVE_RECORDINGS:
        pytest.skip("asterisk-core-sounds-en-wav is not installed")
    test = speech.load_spoken_digits("test")
    accuracy = sound.accuracy(clf, test)
    assert accuracy == pytest.approx(clf.metrics["accuracy"]["test"])
    assert accuracy >= 0.8
    frozen = sound.make_sound_encoder("pretrained", output="logits")
    assert torch.equal(frozen.prepare(test.clips).argmax(1), clf.predict(test.clips))
    assert sound.sound_encoder_from_config(frozen.config()).fingerprint == frozen.fingerprint
    tuned = sound.make_sound_encoder("finetune")
    assert tuned.trainable and all(p.requires_grad for p in tuned.parameters())
    assert all(a is not b for a, b in zip(tuned.parameters(), clf.parameters(), strict=False))


# --------------------------------------------------------------------------- conditions


@pytest.fixture
def small_classifier(monkeypatch):
    """A small untrained classifier standing in for the cached one."""
    torch.manual_seed(0)
    clf = sound.SpokenDigitClassifier().eval().requires_grad_(False)
    monkeypatch.setattr(sound, "load_sound_classifier", lambda *a, **k: clf)
    return clf


def test_pretrained_condition_encoder(small_classifier, tmp_path):
    clips = torch.randn(7, 6000) * 0.1
    for output, dim in (("embedding", 128), ("logits", 10)):
        enc = sound.make_sound_encoder("pretrained", output)
        assert not enc.trainable and enc.dim == dim and list(enc.parameters()) == []
        table = enc.prepare(clips)
        assert table.shape == (7, dim) and table.dtype == torch.float32
        assert torch.equal(enc(table[[2, 5]]), table[[2, 5]])
        torch.testing.assert_close(enc.encode_clips(clips[:3]), table[:3], atol=1e-5, rtol=1e-5)
        rebuilt = sound.sound_encoder_from_config(enc.config())
        assert torch.equal(rebuilt.prepare(clips), table)
    with pytest.raises(ValueError, match=r"rows must be \(B, 10\)"):
        enc(torch.zeros(2, 128))
    config = {**enc.config(), "fingerprint": "0" * 16}
    with pytest.raises(ValueError, match="differs from the one used in training"):
        sound.sound_encoder_from_config(config)
    with pytest.raises(ValueError, match="sound encoder must be one of"):
        sound.make_sound_encoder("bert")
    with pytest.raises(ValueError, match="kind in"):
        sound.sound_encoder_from_config({"kind": "bert"})


def test_trainable_condition_encoder(small_classifier):
    clips = torch.randn(6, 6000) * 0.1
    enc = sound.make_sound_encoder("finetune")
    assert enc.trainable and enc.training and all(p.requires_grad for p in enc.parameters())
    # starts from the pretrained encoder's weights, as its own copy
    for a, b in zip(enc.net.parameters(), small_classifier.encoder.parameters(), strict=True):
        assert torch.equal(a, b) and a is not b
    table = enc.prepare(clips)
    assert table.shape == (6, 40, 6000 // 160 + 1)
    out = enc(table[:4], torch.Generator().manual_seed(0))  # augmented in train mode
    assert out.shape == (4, 128)
    again = enc(table[:4], torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, again)  # same draws, same vectors
    out.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())
    enc.eval()
    torch.testing.assert_close(enc(table[:4]), enc.encode_clips(clips[:4]), atol=1e-5, rtol=1e-5)
    rebuilt = sound.sound_encoder_from_config(enc.config())
    rebuilt.load_state_dict(enc.state_dict())
    torch.testing.assert_close(rebuilt.eval()(table), enc(table))
    assert rebuilt.config()["kind"] == "finetune"
    scratch = sound.make_sound_encoder("scratch")
    assert scratch.trainable and scratch.config()["fingerprint"] is None


def test_encode_wav(small_classifier, tmp_path):
    enc = sound.make_sound_encoder("pretrained")
    audio.write_wav(tmp_path / "a.wav", 0.3 * torch.randn(2, 9000), 22050)
    said = []
    v = sound.encode_wav(enc, tmp_path / "a.wav", log=said.append)
    assert v.shape == (1, 128) and any("mono" in s for s in said)
    (tmp_path / "b.wav").write_text("not a sound")
    for path, error in (
        (tmp_path / "b.wav", ValueError),
        (tmp_path / "missing.wav", FileNotFoundError),
        (tmp_path, IsADirectoryError),
    ):
        with pytest.raises(error) as err:
            sound.encode_wav(enc, path)
        text = str(err.value)
        assert text.startswith("--sound: ") and "\n" not in text and str(path) in text


def test_sampler_other_digit():
    data = _clips(n_per_digit=2)
    sampler = speech.DigitClipSampler(data)
    labels = torch.arange(10).repeat(30)
    other = data.labels[sampler.sample_other(labels, torch.Generator().manual_seed(0))]
    assert (other != labels).all() and other.unique().numel() == 10


def test_rebuilding_a_pretrained_encoder_needs_the_cached_classifier(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path))
    config = {"kind": "pretrained", "output": "embedding", "fingerprint": "0" * 16}
    with pytest.raises(FileNotFoundError, match="python -m gankernels.conditions.sound"):
        sound.sound_encoder_from_config(config)
