"""Tests for attnviz.model.vocab."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from attnviz.model.vocab import (
    BOS,
    BOS_ID,
    EOS,
    EOS_ID,
    PAD,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK,
    UNK_ID,
    Vocab,
    VocabError,
)

SENTENCES = [
    ["le", "chat", "dort", "."],
    ["le", "chien", "dort", "."],
    ["la", "souris", "mange", "."],
    ["le", "chat", "mange", "la", "souris", "."],
]


@pytest.fixture
def vocab() -> Vocab:
    return Vocab.build(SENTENCES)


def test_special_tokens_hold_ids_0_to_3(vocab: Vocab) -> None:
    assert (PAD_ID, UNK_ID, BOS_ID, EOS_ID) == (0, 1, 2, 3)
    assert SPECIAL_TOKENS == (PAD, UNK, BOS, EOS) == ("<pad>", "<unk>", "<s>", "</s>")
    for i, tok in enumerate(SPECIAL_TOKENS):
        assert vocab.token(i) == tok
        assert vocab.id(tok) == i


def test_build_orders_by_frequency_then_alphabetically(vocab: Vocab) -> None:
    # "." x4, "le" x3, then count 2 alphabetically: chat dort la mange souris; then chien.
    assert vocab.tokens[4:] == (
        ".",
        "le",
        "chat",
        "dort",
        "la",
        "mange",
        "souris",
        "chien",
    )
    assert len(vocab) == 4 + 8


def test_build_is_deterministic_whatever_the_sentence_order() -> None:
    a = Vocab.build(SENTENCES)
    b = Vocab.build(list(reversed(SENTENCES)))
    c = Vocab.build([list(reversed(s)) for s in SENTENCES])
    assert a == b == c
    assert a.tokens == b.tokens == c.tokens


def test_min_freq_cuts_rare_tokens() -> None:
    v = Vocab.build(SENTENCES, min_freq=2)
    assert "chien" not in v  # seen once
    assert "chat" in v
    assert v.tokens[4:] == (".", "le", "chat", "dort", "la", "mange", "souris")
    v3 = Vocab.build(SENTENCES, min_freq=3)
    assert v3.tokens[4:] == (".", "le")


def test_max_size_counts_the_special_tokens() -> None:
    v = Vocab.build(SENTENCES, max_size=6)
    assert len(v) == 6
    assert v.tokens == (*SPECIAL_TOKENS, ".", "le")
    assert len(Vocab.build(SENTENCES, max_size=4)) == 4
    assert len(Vocab.build(SENTENCES, max_size=1000)) == 12


def test_build_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="min_freq"):
        Vocab.build(SENTENCES, min_freq=0)
    with pytest.raises(ValueError, match="max_size"):
        Vocab.build(SENTENCES, max_size=3)
    with pytest.raises(TypeError, match="tokenize"):
        Vocab.build(["le chat dort"])


def test_special_tokens_in_the_corpus_are_not_duplicated() -> None:
    v = Vocab.build([["<s>", "a", "</s>", "<unk>", "<pad>"]])
    assert v.tokens == (*SPECIAL_TOKENS, "a")


def test_encode_adds_eos_by_default_and_bos_on_request(vocab: Vocab) -> None:
    ids = vocab.encode(["le", "chat"])
    assert ids == [vocab.id("le"), vocab.id("chat"), EOS_ID]
    assert vocab.encode(["le"], add_bos=True) == [BOS_ID, vocab.id("le"), EOS_ID]
    assert vocab.encode(["le"], add_eos=False) == [vocab.id("le")]
    assert vocab.encode([], add_eos=False) == []


def test_unknown_tokens_encode_as_unk(vocab: Vocab) -> None:
    assert "girafe" not in vocab
    assert vocab.id("girafe") == UNK_ID
    assert vocab.encode(["le", "girafe", "dort"]) == [
        vocab.id("le"),
        UNK_ID,
        vocab.id("dort"),
        EOS_ID,
    ]
    assert vocab.decode(vocab.encode(["le", "girafe"])) == ["le", UNK]


def test_encode_decode_round_trip(vocab: Vocab) -> None:
    for sentence in SENTENCES:
        ids = vocab.encode(sentence, add_bos=True)
        assert vocab.decode(ids) == sentence
        assert vocab.decode(ids, strip_special=False) == [BOS, *sentence, EOS]


def test_decode_stops_at_eos_and_drops_pad_and_bos(vocab: Vocab) -> None:
    le, chat = vocab.id("le"), vocab.id("chat")
    ids = [BOS_ID, le, PAD_ID, chat, EOS_ID, le, PAD_ID]
    assert vocab.decode(ids) == ["le", "chat"]
    assert vocab.decode(ids, strip_special=False) == [BOS, "le", PAD, "chat", EOS, "le", PAD]


def test_decode_accepts_torch_and_numpy_integers(vocab: Vocab) -> None:
    torch = pytest.importorskip("torch")
    t = torch.tensor(vocab.encode(["le", "chat"]))
    assert vocab.decode(t) == ["le", "chat"]
    assert vocab.decode(t.numpy()) == ["le", "chat"]
    with pytest.raises(TypeError):
        vocab.decode([1.0])  # type: ignore[list-item]


def test_token_out_of_range(vocab: Vocab) -> None:
    with pytest.raises(IndexError, match="out of range"):
        vocab.token(len(vocab))
    with pytest.raises(IndexError, match="out of range"):
        vocab.token(-1)
    with pytest.raises(IndexError):
        vocab.decode([len(vocab)])


def test_contains_and_iter(vocab: Vocab) -> None:
    assert "chat" in vocab
    assert EOS in vocab
    assert 5 not in vocab
    assert list(vocab) == list(vocab.tokens)


def test_vocab_is_immutable_and_hashable(vocab: Vocab) -> None:
    with pytest.raises(AttributeError):
        vocab._tokens = ()
    with pytest.raises(AttributeError):
        vocab.extra = 1
    assert isinstance(vocab.tokens, tuple)
    with pytest.raises(TypeError):
        vocab._index["x"] = 99  # type: ignore[index]
    assert hash(vocab) == hash(Vocab.build(SENTENCES))
    assert pickle.loads(pickle.dumps(vocab)) == vocab


def test_constructor_validates_tokens() -> None:
    with pytest.raises(VocabError, match="special tokens"):
        Vocab(["a", "b"])
    with pytest.raises(VocabError, match="twice"):
        Vocab([*SPECIAL_TOKENS, "a", "a"])
    with pytest.raises(VocabError, match="empty"):
        Vocab([*SPECIAL_TOKENS, ""])


def test_dict_round_trip(vocab: Vocab) -> None:
    d = vocab.to_dict()
    assert d == {"format": "attnviz-vocab", "version": 1, "tokens": list(vocab.tokens)}
    assert Vocab.from_dict(json.loads(json.dumps(d))) == vocab


def test_json_file_round_trip(tmp_path: Path) -> None:
    v = Vocab.build([["élève", "l’école", "naïf", "🙂"], ["élève"]])
    path = tmp_path / "vocab.json"
    v.save(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "attnviz-vocab"
    assert data["version"] == 1
    assert data["tokens"][:4] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert "élève" in path.read_text(encoding="utf-8")  # written as UTF-8, not \\u escapes
    loaded = Vocab.load(path)
    assert loaded == v
    assert loaded.encode(["élève", "🙂"]) == v.encode(["élève", "🙂"])
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temp file left


def _write(tmp_path: Path, content: str | bytes, name: str = "vocab.json") -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def _doc(**overrides: object) -> str:
    doc: dict[str, object] = {
        "format": "attnviz-vocab",
        "version": 1,
        "tokens": [*SPECIAL_TOKENS, "a"],
    }
    doc.update(overrides)
    return json.dumps(doc)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"format": "attnviz-vocab", "version": 1, "tokens": [', "not valid JSON"),
        (b"\xff\xfe bad", "not UTF-8"),
        ("[1, 2, 3]", "expected a JSON object"),
        (_doc(format="something-else"), "format is 'something-else'"),
        (_doc(format=None), "format is None"),
        (_doc(version=2), "unsupported version 2"),
        (_doc(version="1"), "unsupported version '1'"),
        (_doc(tokens="<pad> <unk>"), "'tokens' must be a list"),
        (_doc(tokens=["<unk>", "<pad>", "<s>", "</s>", "a"]), "special tokens"),
        (_doc(tokens=["a", "b", "c", "d"]), "special tokens"),
        (_doc(tokens=[*SPECIAL_TOKENS[:3]]), "special tokens"),
        (_doc(tokens=[*SPECIAL_TOKENS, 7]), "token 4 is 7"),
        (_doc(tokens=[*SPECIAL_TOKENS, "a", "a"]), "'a' appears twice"),
    ],
)
def test_load_errors_name_the_file_and_the_problem(
    tmp_path: Path, content: str | bytes, problem: str
) -> None:
    path = _write(tmp_path, content, name="my-vocab.json")
    with pytest.raises(VocabError) as info:
        Vocab.load(path)
    message = str(info.value)
    assert str(path) in message
    assert problem in message
    assert isinstance(info.value, ValueError)


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(VocabError, match="not found") as info:
        Vocab.load(path)
    assert str(path) in str(info.value)


def test_load_tolerates_a_bom(tmp_path: Path) -> None:
    path = _write(tmp_path, b"\xef\xbb\xbf" + _doc().encode())
    assert Vocab.load(path).tokens == (*SPECIAL_TOKENS, "a")


def test_from_dict_names_its_source() -> None:
    with pytest.raises(VocabError, match=r"card\.json"):
        Vocab.from_dict({"format": "x"}, source="card.json")
