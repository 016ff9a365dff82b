"""Text normalisation applied the same way to corpora on import and to what a user types.

The rule, in order:

1. Unicode NFC (composed accents: ``e`` + U+0301 becomes ``é``).
2. Every space character (Unicode category Zs: U+00A0 no-break space, U+202F narrow
   no-break space, U+2009 thin space, ...), tab and line break becomes an ordinary space:
   French typography puts narrow no-break spaces before ``! ? : ;`` (``Cours\u202f!``).
3. Format characters (category Cf: zero-width spaces and joiners U+200B-U+200D, the byte
   order mark U+FEFF, the soft hyphen U+00AD, bidirectional overrides such as U+202E) are
   removed: they are invisible, and as tokens they would become words nobody can see.
   Other control characters (category Cc) are removed too.
4. The typographic apostrophe U+2019 (and U+2018, U+02BC) becomes ``'``: Tatoeba's French
   mixes ``l’homme`` and ``l'homme``, and a user types either.
5. Runs of spaces become one; the ends are stripped.

:func:`normalize_text` returns the text; :func:`normalization_changes` says what it changed,
for a response that tells the user.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'"}


def _char_class(ch: str) -> str:
    """'space', 'drop', 'apostrophe' or 'keep' for one (NFC) character."""
    if ch in _APOSTROPHES:
        return "apostrophe"
    if ch == " ":
        return "keep"
    cat = unicodedata.category(ch)
    if cat == "Zs" or ch in "\t\n\r\x0b\x0c\u2028\u2029\x85":
        return "space"
    if cat in ("Cf", "Cc"):
        return "drop"
    return "keep"


def normalize_text(text: str) -> str:
    """The normalised form of ``text`` (see the module's rule)."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        kind = _char_class(ch)
        if kind == "keep":
            out.append(ch)
        elif kind == "space":
            out.append(" ")
        elif kind == "apostrophe":
            out.append("'")
    return " ".join("".join(out).split())


def normalization_changes(text: str) -> dict[str, int]:
    """How many characters of each kind :func:`normalize_text` changed in ``text``:
    ``{"removed_invisible": n, "spaces": n, "apostrophes": n}``, zero counts left out."""
    counts: Counter[str] = Counter()
    for ch in unicodedata.normalize("NFC", text):
        kind = _char_class(ch)
        if kind == "drop":
            counts["removed_invisible"] += 1
        elif kind == "space" and ch not in "\t\n\r":
            counts["spaces"] += 1
        elif kind == "apostrophe":
            counts["apostrophes"] += 1
    return dict(counts)
