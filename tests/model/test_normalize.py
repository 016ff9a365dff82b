"""Tests for attnviz.model.normalize: the one rule for imported corpora and typed text."""

from __future__ import annotations

import pytest

from attnviz.model.normalize import normalization_changes, normalize_text


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("Cours\u202f!", "Cours !"),  # narrow no-break space (French typography)
        ("Il a dit\u2009: oui", "Il a dit : oui"),  # thin space
        ("«\u00a0oui\u00a0»", "« oui »"),  # no-break space
        ("sur \u200b\u200bla musique.", "sur la musique."),  # zero-width spaces go
        ("the sink\u00ad.", "the sink."),  # soft hyphen goes
        ("l\u2019homme", "l'homme"),  # typographic apostrophe
        ("e\u0301te\u0301", "été"),  # NFC
        ("  a \t b\n", "a b"),  # runs of spaces, ends stripped
        ("\u202e\u200dx\x07", "x"),  # bidirectional override, joiner, control character
    ],
)
def test_normalize_text(typed: str, expected: str) -> None:
    assert normalize_text(typed) == expected
    assert normalize_text(expected) == expected  # idempotent


def test_normalization_changes_counts_what_changed() -> None:
    text = "Cours\u202f! Il a\u00a0dit\u2009: l\u2019homme\u200b\u00ad."
    assert normalization_changes(text) == {"spaces": 3, "apostrophes": 1, "removed_invisible": 2}
    assert normalization_changes("plain text") == {}
