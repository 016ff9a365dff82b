"""SentencePiece tokenizers on real text: no unknown piece, exact round trips, word spans,
and the model folder's tokenizer files checked on load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from attnviz.model.checkpoint import CheckpointError, load_checkpoint
from attnviz.model.corpus.importers import read_tatoeba, split_tatoeba
from attnviz.model.normalize import normalize_text
from attnviz.model.tokenizers import (
    MosesTokenizer,
    SentencePieceTokenizer,
    piece_file,
    train_sentencepiece,
)
from attnviz.model.vocab import UNK
from tests.app.support import shared_data

TYPED = [
    "Can you help me, please?",
    "We forgot our umbrellas at the restaurant last night.",
    "Où est la bibliothèque ? Je l’ai cherchée partout !",
    "Zoë's naïve café — Ça coûte 12,50 € ; « très » cher.",
    "Ærøskøbing, Łódź and São Paulo are far from Reykjavík.",
    "I love you 😀, Привет, 你好, مرحبا.",
]


@pytest.fixture(scope="module")
def tatoeba() -> dict[str, list[tuple[str, str]]]:
    pairs = read_tatoeba(shared_data("tatoeba-en-fr") / "fra.txt.gz")
    splits, _ = split_tatoeba(pairs, seed=1)
    return splits


@pytest.fixture(scope="module")
def pieces(tatoeba: dict[str, list[tuple[str, str]]]) -> tuple[SentencePieceTokenizer, ...]:
    train = tatoeba["train"][::8]  # every 8th pair: seconds to train, every character seen
    en = train_sentencepiece([e for e, _ in train], "en", vocab_size=2000)
    fr = train_sentencepiece([f for _, f in train], "fr", vocab_size=2000)
    return en, fr


def test_every_test_sentence_round_trips(
    tatoeba: dict[str, list[tuple[str, str]]], pieces: tuple[SentencePieceTokenizer, ...]
) -> None:
    en, fr = pieces
    test = tatoeba["test"]
    assert len(test) >= 2500
    for tok, side in ((en, 0), (fr, 1)):
        vocab = tok.vocab()
        for pair in test:
            text = pair[side]
            seg = tok.segment(text)
            assert tok.detokenize(seg.pieces) == text  # imported text is normalised already
            assert UNK not in seg.pieces
            assert all(p in vocab for p in seg.pieces)


def test_no_unknown_piece_for_typed_text(pieces: tuple[SentencePieceTokenizer, ...]) -> None:
    for tok in pieces:
        vocab = tok.vocab()
        for text in TYPED:
            seg = tok.segment(text)
            ids = vocab.encode(seg.pieces, add_eos=False)
            assert 1 not in ids, (text, seg.pieces)  # UNK_ID
            assert tok.detokenize(seg.pieces) == normalize_text(text)


def test_word_spans_cover_every_piece_once(pieces: tuple[SentencePieceTokenizer, ...]) -> None:
    en, _ = pieces
    for text in TYPED:
        seg = en.segment(text)
        assert seg.words == normalize_text(text).split(" ")
        covered = [i for a, b in seg.spans for i in range(a, b)]
        assert covered == list(range(len(seg.pieces)))
        for word, (a, b) in zip(seg.words, seg.spans, strict=True):
            assert en.detokenize(seg.pieces[a:b]) == word
        # grouping the pieces back (as for a model's output) finds the same words
        assert en.group(seg.pieces) == (seg.words, seg.spans)


def test_normalisation_of_french_typography(pieces: tuple[SentencePieceTokenizer, ...]) -> None:
    _, fr = pieces
    typed = "Cours\u202f! Il a\u00a0dit\u2009: «\u202foui\u202f»\u200b, l\u2019homme."
    seg = fr.segment(typed)
    assert seg.words == ["Cours", "!", "Il", "a", "dit", ":", "«", "oui", "»,", "l'homme."]


def test_moses_words_are_its_tokens() -> None:
    seg = MosesTokenizer("en").segment("The cat\u200b sleeps.")
    assert seg.pieces == ["The", "cat", "sleeps", "."]
    assert seg.words == seg.pieces
    assert seg.spans == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_checkpoint_refuses_a_changed_tokenizer_file(tiny_subword: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_subword, folder)
    loaded = load_checkpoint(folder)
    assert loaded.tokenizer_kind == "sentencepiece"
    card = json.loads((folder / "card.json").read_text())
    assert card["tokenizer"]["source"]["file"] == piece_file("en")
    path = folder / piece_file("fr")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"sentencepiece\.fr\.model"):
        load_checkpoint(folder)
    path.unlink()
    with pytest.raises(CheckpointError, match=r"sentencepiece\.fr\.model: missing"):
        load_checkpoint(folder)


def test_tiny_subword_model_learned(tiny_subword: Path) -> None:
    """Trained for seconds, its loss is already far below a uniform guess over pieces."""
    import math

    card = json.loads((tiny_subword / "card.json").read_text())
    pieces = card["tokenizer"]["target"]["pieces"]
    assert card["curve"][-1]["loss"] < math.log(pieces) - 1.5
    assert card["tokenizer_settings"]["kind"] == "sentencepiece"
    assert card["data"]["corpus"]["corpus"] == "tatoeba"
