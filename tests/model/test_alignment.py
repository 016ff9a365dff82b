"""Tests for attnviz.model.alignment: AER worked by hand, argmax rows, end tokens, entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attnviz.model import alignment
from attnviz.model.alignment import (
    AerCounts,
    aer,
    aer_counts,
    alignment_from_attention,
    argmax_alignment,
    attention_entropy,
    corpus_aer,
    flip_alignment,
    head_mean,
    row_entropy,
)
from attnviz.model.corpus import readers

# -- AER -------------------------------------------------------------------------------


def test_aer_perfect_is_zero() -> None:
    gold = [(0, 0), (1, 2), (2, 1)]
    assert aer(gold, gold) == 0.0
    assert aer(list(reversed(gold)), gold) == 0.0  # order does not matter


def test_aer_disjoint_is_one() -> None:
    assert aer([(0, 1), (1, 0)], [(0, 0), (1, 1)]) == 1.0


def test_aer_partial_by_hand() -> None:
    # A = {0-0, 1-1, 2-1}, S = P = {0-0, 1-1, 2-2}: |A∩S| = |A∩P| = 2, |A| = |S| = 3
    # AER = 1 - (2 + 2) / (3 + 3) = 1/3
    assert aer([(0, 0), (1, 1), (2, 1)], [(0, 0), (1, 1), (2, 2)]) == pytest.approx(1 / 3)


def test_aer_with_possible_links_by_hand() -> None:
    sure = [(0, 0), (1, 1)]
    possible = [(0, 0), (1, 1), (2, 1)]  # S ⊂ P
    predicted = [(0, 0), (2, 1), (2, 2)]
    # |A∩S| = 1 (0-0), |A∩P| = 2 (0-0, 2-1), |A| = 3, |S| = 2: AER = 1 - 3/5
    assert aer(predicted, sure, possible) == pytest.approx(0.4)
    # a possible link is not required: predicting only the sure links is perfect
    assert aer(sure, sure, possible) == 0.0
    # sure links always count as possible, even when left out of ``possible``
    assert aer(predicted, sure, [(2, 1)]) == pytest.approx(0.4)
    counts = aer_counts(predicted, sure, possible)
    assert counts == AerCounts(predicted=3, sure=2, predicted_sure=1, predicted_possible=2)
    assert counts.precision == pytest.approx(2 / 3)
    assert counts.recall == pytest.approx(1 / 2)


def test_aer_without_possible_is_one_minus_f1() -> None:
    predicted, sure = [(0, 0), (1, 1), (3, 2), (4, 4)], [(0, 0), (1, 1), (2, 2)]
    counts = aer_counts(predicted, sure)
    p, r = counts.precision, counts.recall
    assert p is not None and r is not None
    assert aer(predicted, sure) == pytest.approx(1 - 2 * p * r / (p + r))


def test_aer_empty_cases() -> None:
    assert aer([], []) == 0.0
    assert aer([(0, 0)], []) == 1.0
    assert aer([], [(0, 0)]) == 1.0
    assert AerCounts().precision is None and AerCounts().recall is None


def test_aer_duplicates_count_once() -> None:
    assert aer([(0, 0), (0, 0)], [(0, 0)]) == 0.0


def test_corpus_aer_sums_counts_not_mean_of_sentences() -> None:
    predicted = [[(0, 0)], [(0, 0), (1, 1), (2, 2)]]
    sure = [[(0, 0)], [(0, 1), (1, 0), (2, 2)]]
    per_sentence = [aer(a, s) for a, s in zip(predicted, sure, strict=True)]
    assert per_sentence == pytest.approx([0.0, 2 / 3])
    # summed: |A| = 4, |S| = 4, |A∩S| = 2 -> 1 - 4/8 = 0.5 (the mean would be 1/3)
    assert corpus_aer(predicted, sure) == pytest.approx(0.5)
    assert corpus_aer(predicted, sure, sure) == pytest.approx(0.5)
    total = aer_counts(predicted[0], sure[0]) + aer_counts(predicted[1], sure[1])
    assert total.aer == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one alignment per sentence"):
        corpus_aer(predicted, sure[:1])


# -- argmax alignment and token positions ----------------------------------------------


def test_argmax_alignment_one_link_per_row_source_target_order() -> None:
    att = np.array(
        [
            [0.1, 0.7, 0.2],  # target 0 looks at source 1
            [0.6, 0.2, 0.2],  # target 1 -> source 0
            [0.1, 0.1, 0.8],  # target 2 -> source 2
            [0.4, 0.4, 0.2],  # tie: the first position wins
        ]
    )
    assert argmax_alignment(att) == [(1, 0), (0, 1), (2, 2), (0, 3)]
    assert readers.format_pharaoh(argmax_alignment(att)) == "1-0 0-1 2-2 0-3"
    assert argmax_alignment(np.zeros((0, 3))) == []
    with pytest.raises(ValueError, match="tgt_len, src_len"):
        argmax_alignment(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="empty source"):
        argmax_alignment(np.zeros((2, 0)))


def test_head_mean() -> None:
    att = np.zeros((2, 2, 3))
    att[:, 0, 0] = 1.0  # head 0 looks at source 0
    att[:, 1, 2] = 1.0  # head 1 looks at source 2
    mean = head_mean(att)
    assert mean.shape == (2, 3)
    np.testing.assert_allclose(mean, [[0.5, 0.0, 0.5], [0.5, 0.0, 0.5]])
    np.testing.assert_allclose(mean.sum(axis=1), 1.0)
    assert head_mean(mean) is mean
    with pytest.raises(ValueError, match="0 heads"):
        head_mean(np.zeros((2, 0, 3)))


def test_end_tokens_are_dropped_before_comparing_with_gold() -> None:
    """The model's matrix has a last column for the source </s> and a last row for the
    step emitting the target </s>; the gold indexes tokens without them."""
    source = ["the", "cat", "sleeps"]  # model ids: the cat sleeps </s>
    target = ["le", "chat", "dort"]  # decoder emits: le chat dort </s>
    att = np.array(
        [
            [0.8, 0.1, 0.0, 0.1],  # le -> the
            [0.1, 0.5, 0.0, 0.4],  # chat -> cat
            [0.0, 0.1, 0.3, 0.6],  # dort looks at </s> most, then at "sleeps"
            [0.0, 0.0, 0.1, 0.9],  # the </s> step: not a target word, dropped
        ]
    )[:, None, :]  # (tgt_len + 1, heads = 1, src_len + 1)
    links = alignment_from_attention(att, len(source), len(target))
    assert links == [(0, 0), (1, 1), (2, 2)]
    assert aer(links, readers.parse_pharaoh("0-0 1-1 2-2")) == 0.0
    # without dropping the end column, "dort" would be linked to a position that is no word
    assert argmax_alignment(att[:-1, 0, :])[2] == (3, 2)
    # the matrix must cover the sentence
    with pytest.raises(ValueError, match="too small"):
        alignment_from_attention(att, 5, 3)
    with pytest.raises(ValueError, match="too small"):
        alignment_from_attention(att, 3, 5)


def test_a_perfect_model_gets_aer_zero() -> None:
    """Attention that puts each target word on its gold source word scores AER 0."""
    gold = readers.parse_pharaoh("0-0 1-2 2-1 3-3")  # one link per target word
    src_len, tgt_len = 4, 4
    att = np.full((tgt_len + 1, 2, src_len + 1), 0.01)
    for i, j in gold:
        att[j, :, i] = 1.0
    att[tgt_len, :, src_len] = 1.0
    att /= att.sum(axis=-1, keepdims=True)
    links = alignment_from_attention(att, src_len, tgt_len)
    assert aer(links, gold) == 0.0
    assert corpus_aer([links, links], [gold, gold]) == 0.0


def test_flip_alignment() -> None:
    assert flip_alignment([(0, 1), (2, 0)]) == [(1, 0), (0, 2)]
    assert aer(flip_alignment([(0, 1)]), [(1, 0)]) == 0.0


def test_pharaoh_helpers_are_the_readers_ones() -> None:
    assert alignment.parse_pharaoh is readers.parse_pharaoh
    assert alignment.format_pharaoh is readers.format_pharaoh


# -- entropy ---------------------------------------------------------------------------


def test_entropy_uniform_row_is_log_n() -> None:
    for n in (1, 2, 5, 17):
        assert attention_entropy(np.full((3, n), 1.0 / n)) == pytest.approx(math.log(n))


def test_entropy_one_hot_is_zero_and_mean_over_rows() -> None:
    att = np.array([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    np.testing.assert_allclose(row_entropy(att), [0.0, math.log(4)])
    assert attention_entropy(att) == pytest.approx(math.log(4) / 2)
    heads = np.stack([att, att[::-1]], axis=1)  # (tgt_len, heads, src_len)
    assert row_entropy(heads).shape == (2, 2)
    assert attention_entropy(heads) == pytest.approx(math.log(4) / 2)
    with pytest.raises(ValueError, match="no attention rows"):
        attention_entropy(np.zeros((0, 3)))
