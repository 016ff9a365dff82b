"""Tokenization for English and French with sacremoses (the Moses tokenizer).

On top of Moses, French gets two fixes that matter for word alignment:

- hyphenated inversion is split off the verb: ``va-t-il`` -> ``va -t-il``,
  ``est-ce`` -> ``est -ce``, ``mange-t-elle`` -> ``mange -t-elle``, so the verb and the
  subject pronoun are separate tokens (they align to different English words);
- ``aujourd'hui`` stays one token (Moses would cut it at the apostrophe).

Elision (``l'``, ``qu'``, ``j'``) is kept as Moses does it: ``l'homme`` -> ``l' homme``.
Detokenization reverses all of it and gives the natural sentence back.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Literal

from sacremoses import MosesDetokenizer, MosesTokenizer

Lang = Literal["en", "fr"]
LANGS: tuple[Lang, ...] = ("en", "fr")

# Clitics that follow a verb after a hyphen in French inversion and imperatives.
_CLITICS = "je|tu|il|elle|on|nous|vous|ils|elles|ce|moi|toi|le|la|les|lui|leur|y|en"
_INVERSION = re.compile(rf"^(?P<verb>[^\W\d_][\w']*?)(?P<clitic>-(?:t-)?(?:{_CLITICS}))$", re.I)


def _check_lang(lang: str) -> Lang:
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; valid: {', '.join(LANGS)}")
    return lang


@cache
def _moses(lang: Lang) -> tuple[MosesTokenizer, MosesDetokenizer]:
    return MosesTokenizer(lang=lang), MosesDetokenizer(lang=lang)


def _split_inversion(token: str) -> list[str]:
    """``va-t-il`` -> [``va``, ``-t-il``]; ``êtes-vous`` -> [``êtes``, ``-vous``]."""
    m = _INVERSION.match(token)
    if m is None:
        return [token]
    return [m.group("verb"), m.group("clitic")]


def tokenize(text: str, lang: str, *, lowercase: bool = False) -> list[str]:
    """Split ``text`` into tokens; the inverse of :func:`detokenize`."""
    tok, _ = _moses(_check_lang(lang))
    tokens: list[str] = tok.tokenize(text.strip(), escape=False, aggressive_dash_splits=False)
    if lang == "fr":
        out: list[str] = []
        for t in tokens:
            if t.lower() == "hui" and out and out[-1].lower() == "aujourd'":
                out[-1] += t
            else:
                out.extend(_split_inversion(t))
        tokens = out
    # Moses keeps the period of a known abbreviation ("art.", "No.") on the word even at
    # the end of the sentence; there it is the sentence's full stop.
    last = tokens[-1] if tokens else ""
    if len(last) > 1 and last.endswith(".") and not last.endswith(".."):
        tokens[-1:] = [last[:-1], "."]
    if lowercase:
        tokens = [t.lower() for t in tokens]
    return tokens


def detokenize(tokens: list[str], lang: str) -> str:
    """Join tokens back into a natural sentence."""
    _, detok = _moses(_check_lang(lang))
    joined: list[str] = []
    for t in tokens:
        if lang == "fr" and joined and _is_clitic_suffix(t):
            joined[-1] += t
        else:
            joined.append(t)
    text: str = detok.detokenize(joined)
    return text


def _is_clitic_suffix(token: str) -> bool:
    return token.startswith("-") and _INVERSION.match("x" + token) is not None
