"""Word alignments from attention, and how good they are (AER), as small pure functions.

Alignments are Pharaoh links ``(i, j)``: ``i`` a 0-based **source** token index, ``j`` a
0-based **target** token index, over the tokens of :func:`attnviz.model.tokenize.tokenize`
(the text form ``"0-0 1-2"`` is read and written by :func:`parse_pharaoh` and
:func:`format_pharaoh`, re-exported here from :mod:`attnviz.model.corpus.readers`).

Token positions. The model reads ``source tokens + [</s>]`` and its decoder emits
``target tokens + [</s>]``, so an attention matrix from the model has one more column
(the source end token, last) and one more row (the step that emits the end token, last)
than the sentence has tokens. Row ``t`` is the attention of the step that *emits* target
token ``t`` (whatever the decoder style computes it from). Gold alignments index the
tokenized sentences **without** the end tokens, so before comparing, the end row and the
end column are dropped: :func:`alignment_from_attention` does it by cropping to
``(target_len, source_len)``; :func:`argmax_alignment` expects an already cropped matrix.
The argmax is then taken over the real source words only, so a target word whose
attention went mostly to ``</s>`` is linked to the word it attended to most after it (every
target word gets exactly one link, as in the usual attention-as-alignment evaluation).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from attnviz.model.corpus.readers import format_pharaoh, parse_pharaoh

__all__ = [
    "AerCounts",
    "aer",
    "aer_counts",
    "alignment_from_attention",
    "argmax_alignment",
    "attention_entropy",
    "corpus_aer",
    "flip_alignment",
    "format_pharaoh",
    "head_mean",
    "parse_pharaoh",
    "row_entropy",
]

Link = tuple[int, int]


def head_mean(attention: np.ndarray) -> np.ndarray:
    """(tgt_len, heads, src_len) -> (tgt_len, src_len): the average over heads.

    Each row of the result still sums to 1 when every head's rows do. A 2-D matrix is
    returned unchanged (already one "head").
    """
    att = np.asarray(attention)
    if att.ndim == 2:
        return att
    if att.ndim != 3:
        raise ValueError(
            f"expected attention of shape (tgt_len, heads, src_len) or (tgt_len, src_len), "
            f"got shape {att.shape}"
        )
    if att.shape[1] == 0:
        raise ValueError("attention has 0 heads (a model without attention has none to average)")
    return att.mean(axis=1)  # (tgt_len, src_len)


def argmax_alignment(attention: np.ndarray) -> list[Link]:
    """One Pharaoh link ``(source_index, target_index)`` per row of a (tgt_len, src_len)
    matrix: the source position each target step attended to most (first one on ties).

    The caller drops the end-of-sentence row and column first (see the module docstring,
    or use :func:`alignment_from_attention`). Links are in target order.
    """
    att = np.asarray(attention)
    if att.ndim != 2:
        raise ValueError(f"expected a (tgt_len, src_len) matrix, got shape {att.shape}")
    if att.shape[0] == 0:
        return []
    if att.shape[1] == 0:
        raise ValueError("cannot align target rows to an empty source (src_len is 0)")
    return [(int(i), j) for j, i in enumerate(np.argmax(att, axis=1))]


def alignment_from_attention(attention: np.ndarray, source_len: int, target_len: int) -> list[Link]:
    """Argmax alignment of a model's attention over a sentence pair.

    ``attention`` is (steps, heads, src_cols) or (steps, src_cols) as the model returns it,
    with ``src_cols >= source_len`` (the source ids end with ``</s>``, usually one column
    more) and ``steps >= target_len`` (usually one row more, the step emitting ``</s>``).
    ``source_len``/``target_len`` are the token counts of the tokenized sentences, without
    end tokens; heads are averaged, the matrix cropped to (target_len, source_len), and
    each target token linked to its argmax source token. Indices are those of the gold.
    """
    att = head_mean(attention)  # (steps, src_cols)
    if source_len < 0 or target_len < 0:
        raise ValueError(f"lengths must be >= 0, got {source_len}, {target_len}")
    if att.shape[0] < target_len or att.shape[1] < source_len:
        raise ValueError(
            f"attention of shape {att.shape} (target steps, source positions) is too small "
            f"for {target_len} target and {source_len} source tokens"
        )
    return argmax_alignment(att[:target_len, :source_len])


def flip_alignment(links: Iterable[Link]) -> list[Link]:
    """Swap the sides of every link, ``i-j`` -> ``j-i`` (for the other translation direction)."""
    return [(j, i) for i, j in links]


# -- AER ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AerCounts:
    """The counts AER is made of; add them over sentences for the corpus-level score."""

    predicted: int = 0  # |A|
    sure: int = 0  # |S|
    predicted_sure: int = 0  # |A ∩ S|
    predicted_possible: int = 0  # |A ∩ P|

    def __add__(self, other: AerCounts) -> AerCounts:
        return AerCounts(
            self.predicted + other.predicted,
            self.sure + other.sure,
            self.predicted_sure + other.predicted_sure,
            self.predicted_possible + other.predicted_possible,
        )

    @property
    def aer(self) -> float:
        """1 - (|A∩S| + |A∩P|) / (|A| + |S|); 0.0 when there is nothing on either side."""
        denominator = self.predicted + self.sure
        if denominator == 0:
            return 0.0
        return 1.0 - (self.predicted_sure + self.predicted_possible) / denominator

    @property
    def precision(self) -> float | None:
        """|A∩P| / |A| (None when nothing was predicted)."""
        return self.predicted_possible / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        """|A∩S| / |S| (None when there are no sure links)."""
        return self.predicted_sure / self.sure if self.sure else None


def aer_counts(
    predicted: Iterable[Link], sure: Iterable[Link], possible: Iterable[Link] | None = None
) -> AerCounts:
    """Counts for one sentence. Links are compared as sets (duplicates count once).

    ``possible`` defaults to ``sure``; sure links are always possible (P := P ∪ S), as in
    Och & Ney (2003), where S ⊆ P by definition.
    """
    a = {(int(i), int(j)) for i, j in predicted}
    s = {(int(i), int(j)) for i, j in sure}
    p = s if possible is None else s | {(int(i), int(j)) for i, j in possible}
    return AerCounts(len(a), len(s), len(a & s), len(a & p))


def aer(
    predicted: Iterable[Link], sure: Iterable[Link], possible: Iterable[Link] | None = None
) -> float:
    """Alignment error rate of one sentence (Och & Ney 2003), in [0, 1]:

        AER = 1 - (|A∩S| + |A∩P|) / (|A| + |S|)

    A predicted, S sure and P possible gold links (P ⊇ S; P = S when ``possible`` is None,
    which makes AER = 1 - F1). 0 is perfect; 0.0 as well when both A and S are empty.
    """
    return aer_counts(predicted, sure, possible).aer


def corpus_aer(
    predicted: Iterable[Iterable[Link]],
    sure: Iterable[Iterable[Link]],
    possible: Iterable[Iterable[Link]] | None = None,
) -> float:
    """Corpus AER: the counts summed over sentences, then one AER (the standard; not the
    mean of per-sentence AERs). The iterables are parallel, one item per sentence."""
    predicted = list(predicted)
    sure = list(sure)
    possibles: Sequence[Iterable[Link] | None]
    possibles = [None] * len(sure) if possible is None else list(possible)
    if not len(predicted) == len(sure) == len(possibles):
        raise ValueError(
            f"one alignment per sentence on each side: got {len(predicted)} predicted, "
            f"{len(sure)} sure, {len(possibles)} possible"
        )
    total = AerCounts()
    for a, s, p in zip(predicted, sure, possibles, strict=True):
        total = total + aer_counts(a, s, p)
    return total.aer


# -- entropy -----------------------------------------------------------------------------


def row_entropy(matrix: np.ndarray) -> np.ndarray:
    """Entropy in nats of each distribution along the last axis (0 log 0 = 0).

    (tgt_len, src_len) -> (tgt_len,); (tgt_len, heads, src_len) -> (tgt_len, heads).
    """
    p = np.asarray(matrix, dtype=np.float64)
    if p.ndim == 0:
        raise ValueError("expected an array of distributions along the last axis")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return np.asarray(terms.sum(axis=-1))


def attention_entropy(matrix: np.ndarray) -> float:
    """Mean entropy in nats of the rows (attention distributions) of a matrix.

    0 for rows that look at one position; ``log(n)`` for rows uniform over n positions.
    Works on (tgt_len, src_len) or (tgt_len, heads, src_len) (every head's row counts).
    """
    rows = row_entropy(matrix)
    if rows.size == 0:
        raise ValueError("no attention rows to measure")
    return float(rows.mean())
