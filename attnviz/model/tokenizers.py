"""Tokenizers: text -> pieces (what the model reads and writes) and words (what people read).

Two kinds, named in a model folder's card (``"tokenizer": {"kind": ...}``):

- ``moses``: the lab corpus's word-level tokenizer (sacremoses, :mod:`attnviz.model.tokenize`).
  A piece is a word: every word spans exactly one piece.
- ``sentencepiece``: subword pieces for real text (one SentencePiece model per language,
  ``sentencepiece.<lang>.model`` in the model folder, with byte fallback so that no text has
  an unknown piece). Text is first normalised (:func:`attnviz.model.normalize.normalize_text`)
  and split on whitespace into *words*; each word is cut into pieces on its own (SentencePiece
  never lets a piece cross a space, so this is the same cut as for the whole sentence), so
  the span of pieces of every word is exact.

Words and spans: ``spans[k] = (start, end)`` is the half-open range of pieces of word ``k``.
The spans cover every piece once, in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from attnviz.model.normalize import normalize_text
from attnviz.model.tokenize import detokenize, tokenize
from attnviz.model.vocab import BOS, EOS, PAD, UNK, Vocab

KINDS = ("moses", "sentencepiece")
WORD_START = "\u2581"  # SentencePiece's "▁": this piece begins a word


class TokenizerError(ValueError):
    """A tokenizer file or setting is unusable; the message names the file."""


@dataclass(frozen=True)
class Segmented:
    """A text cut into pieces, with the words they make up."""

    pieces: list[str]
    words: list[str]
    spans: list[tuple[int, int]]  # words[k] is pieces[spans[k][0]:spans[k][1]]


class Tokenizer(Protocol):
    """What the model code needs of a tokenizer (one language)."""

    kind: str
    lang: str

    def segment(self, text: str) -> Segmented:
        """Pieces, words and spans of a text as typed."""
        ...

    def detokenize(self, pieces: Sequence[str]) -> str:
        """The text the pieces spell."""
        ...

    def group(self, pieces: Sequence[str]) -> tuple[list[str], list[tuple[int, int]]]:
        """Words and spans of pieces the model wrote (no special tokens among them)."""
        ...


def identity_spans(n: int) -> list[tuple[int, int]]:
    return [(i, i + 1) for i in range(n)]


class MosesTokenizer:
    """The lab models' word tokenizer: one piece per word."""

    kind = "moses"

    def __init__(self, lang: str, lowercase: bool = False) -> None:
        self.lang = lang
        self.lowercase = lowercase

    def segment(self, text: str) -> Segmented:
        tokens = self.tokenize(text)
        return Segmented(tokens, list(tokens), identity_spans(len(tokens)))

    def tokenize(self, text: str) -> list[str]:
        """Moses tokens of the normalised text (invisible format characters never become
        words; see :mod:`attnviz.model.normalize`)."""
        return tokenize(normalize_text(text), self.lang, lowercase=self.lowercase)

    def detokenize(self, pieces: Sequence[str]) -> str:
        return detokenize(list(pieces), self.lang)

    def group(self, pieces: Sequence[str]) -> tuple[list[str], list[tuple[int, int]]]:
        return list(pieces), identity_spans(len(pieces))


class SentencePieceTokenizer:
    """Subword pieces from a trained SentencePiece model (``model_proto`` bytes)."""

    kind = "sentencepiece"

    def __init__(self, lang: str, model_proto: bytes, *, source: str = "sentencepiece model"):
        import sentencepiece as spm

        self.lang = lang
        self.source = source
        self.sha256 = hashlib.sha256(model_proto).hexdigest()
        self._proto = model_proto
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except (RuntimeError, OSError, TypeError) as e:
            raise TokenizerError(f"{source}: not a readable SentencePiece model ({e})") from e

    @classmethod
    def load(cls, lang: str, path: Path) -> SentencePieceTokenizer:
        try:
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise TokenizerError(f"{path}: missing (the card names this tokenizer file)") from e
        except OSError as e:
            raise TokenizerError(f"{path}: cannot read ({e.strerror})") from e
        return cls(lang, data, source=str(path))

    @property
    def model_proto(self) -> bytes:
        return self._proto

    @cached_property
    def pieces_list(self) -> list[str]:
        """Every piece in id order: the vocabulary (its first four are attnviz's specials)."""
        return [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]

    def vocab(self) -> Vocab:
        return Vocab(self.pieces_list)

    def segment(self, text: str) -> Segmented:
        words = normalize_text(text).split(" ")
        if words == [""]:
            return Segmented([], [], [])
        per_word: list[list[str]] = self._sp.encode(words, out_type=str)
        pieces: list[str] = []
        spans: list[tuple[int, int]] = []
        for word_pieces in per_word:
            spans.append((len(pieces), len(pieces) + len(word_pieces)))
            pieces.extend(word_pieces)
        return Segmented(pieces, words, spans)

    def tokenize(self, text: str) -> list[str]:
        return self.segment(text).pieces

    def detokenize(self, pieces: Sequence[str]) -> str:
        text: str = self._sp.decode_pieces([p for p in pieces if p not in _SPECIALS])
        return text

    def group(self, pieces: Sequence[str]) -> tuple[list[str], list[tuple[int, int]]]:
        """Words of output pieces: a word starts at each piece that begins with "▁". A group
        that spells nothing (a lone "▁" the model wrote) joins the word before it (or after
        it, first in the sentence), so the words are the translation's words."""
        spans: list[tuple[int, int]] = []
        start = 0
        for i, piece in enumerate(pieces):
            if i > start and piece.startswith(WORD_START):
                spans.append((start, i))
                start = i
        if len(pieces) > start:
            spans.append((start, len(pieces)))
        words: list[str] = []
        merged: list[tuple[int, int]] = []
        pending: int | None = None  # start of empty groups waiting for a word to join
        for a, b in spans:
            text = self.detokenize(pieces[a:b]).strip()
            if not text:
                if merged:
                    merged[-1] = (merged[-1][0], b)
                elif pending is None:
                    pending = a
                continue
            if pending is not None:
                a, pending = pending, None
            merged.append((a, b))
            words.append(text)
        if pending is not None:  # nothing but empty groups: one word of what they are
            merged.append((pending, len(pieces)))
            words.append("".join(pieces[pending:]))
        return words, merged


_SPECIALS = frozenset({PAD, UNK, BOS, EOS})


def piece_file(lang: str) -> str:
    """The file name of a language's SentencePiece model inside a model folder."""
    return f"sentencepiece.{lang}.model"


def train_sentencepiece(
    texts: Iterable[str],
    lang: str,
    *,
    vocab_size: int,
    model_type: str = "unigram",
    seed_sentences: int = 2_000_000,
) -> SentencePieceTokenizer:
    """Train a SentencePiece model on (normalised) ``texts``: attnviz's four specials at ids
    0..3, byte fallback and full character coverage (no text ever has an unknown piece),
    no normalisation of its own (the text is normalised before). Deterministic for the same
    texts and options."""
    import io

    import sentencepiece as spm

    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"unknown SentencePiece model type {model_type!r}; valid: bpe, unigram")
    lines = [normalize_text(t) for t in texts]
    lines = [t for t in lines if t]
    if not lines:
        raise ValueError("no text to train a SentencePiece model on")
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_writer=buffer,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=1.0,
            byte_fallback=True,
            normalization_rule_name="identity",
            remove_extra_whitespaces=True,
            split_digits=True,
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            pad_piece=PAD,
            unk_piece=UNK,
            bos_piece=BOS,
            eos_piece=EOS,
            input_sentence_size=seed_sentences,
            shuffle_input_sentence=False,
            num_threads=1,
            minloglevel=2,
            hard_vocab_limit=False,
        )
    except RuntimeError as e:
        raise ValueError(f"SentencePiece training for {lang!r} failed: {e}") from e
    return SentencePieceTokenizer(lang, buffer.getvalue(), source=f"trained {lang} model")


def tokenizer_settings(kind: str, **settings: Any) -> dict[str, Any]:
    """The card's ``tokenizer`` entry; ValueError listing the valid kinds."""
    if kind not in KINDS:
        raise ValueError(f"unknown tokenizer {kind!r}; valid: {', '.join(KINDS)}")
    return {"kind": kind, **settings}
