"""Words from pieces: spans, the word-level attention rule, word alignments."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.model.words import (
    WordSpan,
    check_spans,
    with_end,
    word_alignment,
    word_matrix,
)


def test_word_matrix_matches_a_hand_computed_example() -> None:
    # source pieces: ▁Can ▁you ▁he lp </s>  -> words Can(0:1) you(1:2) help(2:4) </s>(4:5)
    # target pieces: ▁Pou vez ▁vous </s>     -> words Pouvez(0:2) vous(2:3) </s>(3:4)
    m = np.array(
        [
            [0.6, 0.1, 0.1, 0.1, 0.1],
            [0.2, 0.4, 0.2, 0.0, 0.2],
            [0.0, 0.7, 0.1, 0.1, 0.1],
            [0.0, 0.0, 0.1, 0.1, 0.8],
        ]
    )
    words = word_matrix(m, [(0, 1), (1, 2), (2, 4), (4, 5)], [(0, 2), (2, 3), (3, 4)])
    expected = np.array(
        [
            # Pouvez = mean of rows 0, 1; help = pieces 2 + 3 summed
            [(0.6 + 0.2) / 2, (0.1 + 0.4) / 2, (0.2 + 0.2) / 2, (0.1 + 0.2) / 2],
            [0.0, 0.7, 0.2, 0.1],
            [0.0, 0.0, 0.2, 0.8],
        ]
    )
    np.testing.assert_allclose(words, expected)
    np.testing.assert_allclose(words.sum(axis=1), 1.0)


def test_word_matrix_of_one_piece_words_is_the_piece_matrix() -> None:
    rng = np.random.default_rng(0)
    m = rng.random((4, 6))
    m /= m.sum(axis=1, keepdims=True)
    spans_src = [(i, i + 1) for i in range(6)]
    spans_tgt = [(i, i + 1) for i in range(4)]
    np.testing.assert_allclose(word_matrix(m, spans_src, spans_tgt), m)


def test_rows_sum_to_one_for_random_spans() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        n_src, n_tgt = int(rng.integers(2, 12)), int(rng.integers(2, 9))
        m = rng.random((n_tgt, n_src))
        m /= m.sum(axis=1, keepdims=True)
        cut_src = sorted(set(rng.integers(1, n_src, size=3).tolist()))
        cut_tgt = sorted(set(rng.integers(1, n_tgt, size=2).tolist()))
        src = list(zip([0, *cut_src], [*cut_src, n_src], strict=True))
        tgt = list(zip([0, *cut_tgt], [*cut_tgt, n_tgt], strict=True))
        w = word_matrix(m, src, tgt)
        assert w.shape == (len(tgt), len(src))
        np.testing.assert_allclose(w.sum(axis=1), 1.0)


def test_spans_must_tile_the_pieces() -> None:
    check_spans([(0, 2), (2, 3)], 3)
    with pytest.raises(ValueError, match="tile"):
        check_spans([(0, 2), (3, 4)], 4)
    with pytest.raises(ValueError, match="cover 3 pieces, expected 4"):
        check_spans([(0, 2), (2, 3)], 4)
    with pytest.raises(ValueError):
        word_matrix(np.ones((2, 3)) / 3, [(0, 1), (1, 2)], [(0, 1), (1, 2)])


def test_with_end_adds_the_end_token_as_a_word() -> None:
    words = with_end(["help", "me"], [(0, 2), (2, 3)], 4, "</s>")
    assert words == [WordSpan("help", 0, 2), WordSpan("me", 2, 3), WordSpan("</s>", 3, 4)]
    assert with_end(["help"], [(0, 2)], 2, "</s>") == [WordSpan("help", 0, 2)]  # unfinished
    with pytest.raises(ValueError):
        with_end(["help"], [(0, 2)], 5, "</s>")


def test_word_alignment_argmax_over_words_without_end_token() -> None:
    m = np.array(
        [
            [0.1, 0.2, 0.3, 0.4],  # first target piece of word 0: argmax </s> column, ignored
            [0.0, 0.5, 0.5, 0.0],
            [0.9, 0.0, 0.05, 0.05],
            [0.0, 0.0, 0.0, 1.0],  # </s> row, ignored
        ]
    )
    # source words: a(0:1) bc(1:3), end at 3; target words: x(0:2) y(2:3), end at 3
    assert word_alignment(m, [(0, 1), (1, 3)], [(0, 2), (2, 3)]) == "1-0 0-1"
    assert word_alignment(None, [(0, 1)], [(0, 1)]) == ""
