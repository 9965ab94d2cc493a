"""Where each training sample's condition vector comes from: a caption of its image
(text) or a spoken clip of its digit (sound), through an encoder.

A source holds the encoder's inputs for the whole data set as one table on the device
(frozen sentence embeddings, token ids, log-mel spectrograms or clip embeddings) and picks
rows of it per sample: a matching one (this image's caption, a clip of this digit) or a
mismatched one (a caption of another class, a clip of another digit) for the
matching-aware discriminator of GAN-CLS. A frozen encoder maps rows to vectors without
gradients; a trainable one is attached to D (`D.cond_encoder`), so that D's loss (which
must tell matching from mismatched conditions) trains it and D's optimiser, checkpoint and
gradient averaging carry it; G sees its output detached.

Class labels are not a source: the models embed them themselves (learned tables).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

CONDITIONS = ("label", "text", "sound")


class ConditionSource:
    kind = ""

    def __init__(self, encoder: nn.Module, table: torch.Tensor):
        self.encoder, self.table = encoder, table
        self.trainable = bool(getattr(encoder, "trainable", False))
        if not self.trainable:
            encoder.requires_grad_(False).eval()

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def rows(self, key: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Rows of `table` that match each sample (key: the batch's indices or labels)."""
        raise NotImplementedError

    def wrong_rows(self, key: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Rows that do not match each sample (another class)."""
        raise NotImplementedError

    def embed(self, rows: torch.Tensor, encoder: nn.Module | None = None, generator=None):
        """(B, dim) condition vectors of `rows`; `encoder` is the trained copy (D's) for a
        trainable source."""
        encoder = self.encoder if encoder is None else encoder
        inputs = self.table[rows.to(self.table.device)]
        if self.trainable:
            return encoder(inputs, generator)
        with torch.no_grad():
            return encoder(inputs)

    def config(self) -> dict:
        """What rebuilds the encoder for `gankernels generate`."""
        return {"kind": self.kind, "encoder": self.encoder.config()}

    def score(self, G: nn.Module, n: int, device, seed: int = 0, encoder=None) -> dict:
        """G's scores on n held-out conditions (the condition's fidelity, FID, precision /
        recall)."""
        raise NotImplementedError

    def evaluator(self, task):
        """The training loop's scorer: `score` with D's trained encoder, if any."""
        n = task.config.eval_n
        encoder = getattr(task.D, "cond_encoder", None)
        return lambda G: self.score(G, n, task.device, task.config.seed, encoder)


class TextSource(ConditionSource):
    """Captions of a `CaptionDataset` (fashion-mnist:captions, emoji:captions): a random
    caption of each image; mismatched: a caption of an image of another class."""

    kind = "text"

    def __init__(self, data, encoder_kind: str = "auto", device=None, log=print):
        from .text import make_text_encoder

        if not hasattr(data, "sample_text_ids"):
            raise ValueError(
                f"condition 'text' needs a captioned data set (fashion-mnist:captions, "
                f"emoji:captions), got {data.name!r}"
            )
        encoder = make_text_encoder(encoder_kind, data.texts, log=log).to(device)
        table = encoder.prepare(data.texts, device=device, log=log)
        super().__init__(encoder, table)
        self.data = data
        self._test = None
        self.grid_texts: list[str] = []

    def held_out(self):
        """The test split: its captions use phrasings the training split never does."""
        if self._test is None:
            from ..data import load_dataset

            self._test = load_dataset(self.data.name, "test", image_size=self.data.image_size)
        return self._test

    def grid_conditions(self) -> torch.Tensor:
        """One held-out caption per class (of the first test image of that class)."""
        test = self.held_out()
        firsts = [int(torch.nonzero(test.labels == k)[0]) for k in test.labels.unique().tolist()]
        rows = test.sample_text_ids(torch.tensor(firsts), torch.Generator().manual_seed(0))
        self.grid_texts = [test.texts[r] for r in rows.tolist()]
        return self.vectors(self.grid_texts)

    def score(self, G: nn.Module, n: int, device, seed: int = 0, encoder=None) -> dict:
        """G's samples for n held-out captions (one per test image, cycling) against the
        test images. Fashion-MNIST, on our classifier's features and logits:
        "text_fidelity" (share classified as the caption's class), "fid", "precision" /
        "recall". Emoji, on Inception features (the largest block that the test images
        outnumber): "text_fidelity" (share whose nearest test emoji has the caption's
        category), "fid", "precision" / "recall"."""
        from .. import metrics
        from ..metrics.generators import sample_conditioned

        test = self.held_out()
        g = torch.Generator().manual_seed(seed)
        index = torch.arange(n) % len(test)
        rows = test.sample_text_ids(index, g)
        vectors = self.vectors([test.texts[r] for r in rows.tolist()], encoder)
        fashion = self.data.name.startswith("fashion-mnist")
        if fashion:
            extractor = metrics.make_extractor("fashion", device=device)
        else:
            dims = metrics.largest_fid_dims(len(test))
            extractor = metrics.InceptionFeatures(device=device, dims=dims)
        samples = sample_conditioned(G, vectors, seed=seed)
        fake = metrics.extract(extractor, samples, progress=False, total=n)
        real = metrics.extract(extractor, test.images[:n], progress=False)
        labels = test.labels[index]
        if fashion:
            fidelity = metrics.text_fidelity(fake["logits"], labels)
        else:
            fidelity = metrics.nearest_label_fidelity(
                fake["features"], labels, real["features"], test.labels[: len(real["features"])]
            )
        return {"text_fidelity": fidelity, **_quality(real, fake)}

    def rows(self, key, generator):
        return self.data.sample_text_ids(key.cpu(), generator)

    def wrong_rows(self, key, generator):
        return self.data.mismatched_text_ids(key.cpu(), generator)

    def vectors(self, texts: Sequence[str], encoder: nn.Module | None = None) -> torch.Tensor:
        """Condition vectors of new texts (held-out captions, `generate --text`)."""
        encoder = self.encoder if encoder is None else encoder
        with torch.no_grad():
            was = encoder.training
            encoder.eval()
            out = encoder.encode(list(texts), device=self.table.device)
            encoder.train(was)
        return out


class SoundSource(ConditionSource):
    """Spoken digits for an image set labelled 0..9 (MNIST): each image gets a random
    clip of its digit from the synthetic training voices (espeak-ng, flite); mismatched:
    a clip of another digit. Held out for the grid and the scores: real recorded voices,
    never trained on. encoder_kind: "pretrained" (the spoken-digit classifier's frozen
    embedding), "finetune" (that encoder, trained on by D) or "scratch" (a fresh one,
    trained jointly by D alone)."""

    kind = "sound"

    def __init__(self, data, encoder_kind: str = "pretrained", device=None, log=print):
        from ..data.speech import DigitClipSampler, load_spoken_digits
        from .sound import make_sound_encoder

        labels = getattr(data, "labels", None)
        if labels is None or data.num_classes != 10:
            raise ValueError(
                f"condition 'sound' speaks digits: it needs images labelled 0..9 (mnist, "
                f"digits), got {data.name!r}"
            )
        clips = load_spoken_digits("train", log=log)
        encoder = make_sound_encoder(encoder_kind, device=device, log=log)
        table = encoder.prepare(clips.clips, device=device, log=log)
        super().__init__(encoder, table)
        self.data, self.sampler = data, DigitClipSampler(clips)
        self._test = None

    def rows(self, key, generator):
        return self.sampler.sample(key.cpu(), generator)

    def wrong_rows(self, key, generator):
        return self.sampler.sample_other(key.cpu(), generator)

    def held_out(self):
        """The real recorded voices (one clip per digit and speaker)."""
        if self._test is None:
            from ..data.speech import load_spoken_digits

            self._test = load_spoken_digits("test")
        return self._test

    def clip_vectors(self, clips: torch.Tensor, encoder: nn.Module | None = None) -> torch.Tensor:
        encoder = self.encoder if encoder is None else encoder
        was = encoder.training
        encoder.eval()
        with torch.no_grad():
            out = encoder.encode_clips(clips, device=self.table.device)
        encoder.train(was)
        return out

    def grid_conditions(self) -> torch.Tensor:
        """The real voices' clips, in digit order: one grid row per spoken digit."""
        test = self.held_out()
        order = torch.argsort(test.labels, stable=True)
        return self.clip_vectors(test.clips[order])

    def score(self, G: nn.Module, n: int, device, seed: int = 0, encoder=None) -> dict:
        """n images from the real voices' clips (cycling), read by the digit classifier:
        "sound_agreement" (share classified as the spoken digit), "fid", "precision" /
        "recall" against the MNIST test images on its features."""
        from .. import metrics
        from ..data import load_dataset
        from ..metrics.generators import sample_conditioned

        test = self.held_out()
        index = torch.arange(n) % len(test.labels)
        vectors = self.clip_vectors(test.clips, encoder)[index]
        classifier = metrics.make_extractor("digits", device=device)
        fake = metrics.extract(
            classifier, sample_conditioned(G, vectors, seed=seed), progress=False, total=n
        )
        real_images = load_dataset("mnist", "test", image_size=self.data.image_size).images[:n]
        real = metrics.extract(classifier, real_images, progress=False)
        agreement = metrics.text_fidelity(fake["logits"], test.labels[index])
        return {"sound_agreement": agreement, **_quality(real, fake)}


def _quality(real: dict, fake: dict) -> dict:
    """FID and precision / recall of extracted fake features against real ones."""
    from .. import metrics

    precision, recall = metrics.precision_recall(real["features"], fake["features"])
    return {
        "fid": metrics.fid(fake["features"], real["features"]),
        "precision": precision,
        "recall": recall,
    }


__all__ = ["CONDITIONS", "ConditionSource", "TextSource", "SoundSource"]
