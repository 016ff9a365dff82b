import pytest

from attnviz.model.tokenize import detokenize, tokenize


@pytest.mark.parametrize(
    ("text", "lang", "tokens"),
    [
        ("L'homme va-t-il au marché?", "fr", ["L'", "homme", "va", "-t-il", "au", "marché", "?"]),
        (
            "Qu'est-ce que la femme mange?",
            "fr",
            ["Qu'", "est", "-ce", "que", "la", "femme", "mange", "?"],
        ),
        (
            "Je ne l'ai jamais vue aujourd'hui.",
            "fr",
            ["Je", "ne", "l'", "ai", "jamais", "vue", "aujourd'hui", "."],
        ),
        ("Êtes-vous là?", "fr", ["Êtes", "-vous", "là", "?"]),
        ("Michel a accepté notre art.", "fr", ["Michel", "a", "accepté", "notre", "art", "."]),
        ("He found the No.", "en", ["He", "found", "the", "No", "."]),
        ("Ma grand-mère dort.", "fr", ["Ma", "grand-mère", "dort", "."]),
        ("The man's car isn't red.", "en", ["The", "man", "'s", "car", "isn", "'t", "red", "."]),
        (
            "Where did the woman eat an apple?",
            "en",
            ["Where", "did", "the", "woman", "eat", "an", "apple", "?"],
        ),
    ],
)
def test_tokenize(text: str, lang: str, tokens: list[str]) -> None:
    assert tokenize(text, lang) == tokens


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("L'homme va-t-il au marché ?", "fr"),
        ("Qu'est-ce que la femme mange ?", "fr"),
        ("La femme mange-t-elle une pomme rouge ?", "fr"),
        ("Je ne l'ai jamais vue aujourd'hui.", "fr"),
        ("The man's car isn't red, is it?", "en"),
        ('Two "quoted" words.', "en"),
    ],
)
def test_round_trip(text: str, lang: str) -> None:
    assert detokenize(tokenize(text, lang), lang) == text


def test_lowercase() -> None:
    assert tokenize("La Femme DORT.", "fr", lowercase=True) == ["la", "femme", "dort", "."]


def test_unknown_language_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid: en, fr"):
        tokenize("hallo", "de")
