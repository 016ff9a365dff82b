"""Attention for people: from pieces (what the model reads and writes) to words.

A subword model attends from target pieces to source pieces. People read words, so every
matrix is also given over words, with one rule (as inseq documents its own):

- **source pieces are summed**: the weight a target piece puts on a source word is the sum
  of the weights it puts on that word's pieces (attention is a distribution over source
  positions, so the word gets the probability mass of its pieces);
- **target pieces are averaged**: a target word's row is the mean of its pieces' rows (each
  piece is one decoder step; the word looked where its steps looked, on average).

So every word-level row still sums to 1. The end token ``</s>`` is a word of its own on both
sides (its column and, when the output finished, its row). For a word-level model (the lab
corpus) every word is one piece and the word matrix is the piece matrix.

Spans are half-open ``(start, end)`` ranges of piece positions; the spans of one side cover
every piece exactly once, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from attnviz.model.alignment import argmax_alignment, format_pharaoh

Span = tuple[int, int]


@dataclass(frozen=True)
class WordSpan:
    """One word and the pieces it covers (``pieces[start:end]``)."""

    word: str
    start: int
    end: int

    def to_dict(self) -> dict[str, object]:
        return {"word": self.word, "start": self.start, "end": self.end}


def check_spans(spans: Sequence[Span], n_pieces: int) -> None:
    """ValueError unless ``spans`` cover ``0..n_pieces`` once, in order, none empty."""
    at = 0
    for start, end in spans:
        if start != at or end <= start:
            raise ValueError(f"word spans {list(spans)} do not tile {n_pieces} pieces in order")
        at = end
    if at != n_pieces:
        raise ValueError(f"word spans {list(spans)} cover {at} pieces, expected {n_pieces}")


def with_end(
    words: Sequence[str], spans: Sequence[Span], n_pieces: int, end_token: str
) -> list[WordSpan]:
    """The words with spans, plus the end token as a last word when the pieces have one
    more position than the words cover (``n_pieces`` counts it)."""
    out = [WordSpan(w, a, b) for w, (a, b) in zip(words, spans, strict=True)]
    covered = spans[-1][1] if spans else 0
    if n_pieces == covered + 1:
        out.append(WordSpan(end_token, covered, covered + 1))
    elif n_pieces != covered:
        raise ValueError(f"{len(words)} words cover {covered} pieces, not {n_pieces}")
    return out


def sum_columns(matrix: np.ndarray, spans: Sequence[Span]) -> np.ndarray:
    """(rows, pieces) -> (rows, words): each word's column is the sum of its pieces'."""
    starts = np.asarray([a for a, _ in spans], dtype=np.int64)
    return np.add.reduceat(matrix, starts, axis=-1) if len(starts) else matrix[..., :0]


def mean_rows(matrix: np.ndarray, spans: Sequence[Span]) -> np.ndarray:
    """(pieces, cols) -> (words, cols): each word's row is the mean of its pieces' rows."""
    if not spans:
        return matrix[:0]
    starts = np.asarray([a for a, _ in spans], dtype=np.int64)
    sizes = np.asarray([b - a for a, b in spans], dtype=matrix.dtype)
    return np.add.reduceat(matrix, starts, axis=-2) / sizes[:, None]


def word_matrix(
    matrix: np.ndarray, source_spans: Sequence[Span], target_spans: Sequence[Span]
) -> np.ndarray:
    """A (target pieces, source pieces) attention matrix over words: (target words, source
    words), source pieces summed, target pieces averaged (rows keep summing to 1)."""
    m = np.asarray(matrix, dtype=np.float64)
    check_spans(source_spans, m.shape[-1])
    check_spans(target_spans, m.shape[-2])
    return mean_rows(sum_columns(m, source_spans), target_spans)


def word_alignment(
    matrix: np.ndarray | None, source_spans: Sequence[Span], target_spans: Sequence[Span]
) -> str:
    """Pharaoh links between words (0-based source word - target word), from the argmax of
    each target word's row of the word matrix. ``source_spans`` and ``target_spans`` are the
    words without the end token; the matrix may have the end token's row and column (they
    are left out)."""
    if matrix is None or not source_spans or not target_spans:
        return ""
    n_src = source_spans[-1][1]
    n_tgt = target_spans[-1][1]
    m = np.asarray(matrix, dtype=np.float64)[:n_tgt, :n_src]
    return format_pharaoh(argmax_alignment(word_matrix(m, source_spans, target_spans)))
