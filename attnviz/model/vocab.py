"""Vocabulary: a frozen two-way mapping between tokens and integer ids.

The four special tokens always hold ids 0..3, in this order::

    0 <pad>   padding (never a real token; masked out of attention)
    1 <unk>   any token not in the vocabulary
    2 <s>     beginning of sentence (decoder start)
    3 </s>    end of sentence

A vocabulary is built once from tokenized sentences (:meth:`Vocab.build`) and is immutable
afterwards, so one object can be shared by every request. It is stored as JSON (in a file
with :meth:`Vocab.save`, or inside a checkpoint card with :meth:`Vocab.to_dict`)::

    {"format": "attnviz-vocab", "version": 1, "tokens": ["<pad>", "<unk>", "<s>", "</s>", ...]}

where a token's id is its index in ``tokens``.
"""

from __future__ import annotations

import json
import operator
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, NoReturn

PAD: Final = "<pad>"
UNK: Final = "<unk>"
BOS: Final = "<s>"
EOS: Final = "</s>"

PAD_ID: Final = 0
UNK_ID: Final = 1
BOS_ID: Final = 2
EOS_ID: Final = 3

SPECIAL_TOKENS: Final[tuple[str, ...]] = (PAD, UNK, BOS, EOS)

FORMAT: Final = "attnviz-vocab"
VERSION: Final = 1


class VocabError(ValueError):
    """A vocabulary (file or dict) is malformed; the message names the source and the problem."""


class Vocab:
    """An immutable token <-> id mapping whose first four entries are the special tokens.

    Construct with :meth:`build` (from a corpus), :meth:`from_dict` or :meth:`load`; the
    constructor itself takes the full token list, specials included, in id order.
    """

    __slots__ = ("_index", "_tokens")

    _tokens: tuple[str, ...]
    _index: Mapping[str, int]

    def __init__(self, tokens: Iterable[str]) -> None:
        toks = tuple(tokens)
        _check_tokens(toks, fail=_raise_plain)
        object.__setattr__(self, "_tokens", toks)
        object.__setattr__(self, "_index", MappingProxyType({t: i for i, t in enumerate(toks)}))

    # -- construction -----------------------------------------------------------------

    @classmethod
    def build(
        cls,
        sentences: Iterable[Iterable[str]],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocab:
        """Build a vocabulary from tokenized sentences.

        Tokens seen fewer than ``min_freq`` times are left out (they will encode as
        ``<unk>``). The rest are ordered by frequency, most frequent first, ties broken
        alphabetically, so the same corpus always gives the same ids. ``max_size`` caps the
        total size, the four special tokens included. Special tokens occurring in the
        sentences are not counted (they already hold ids 0..3).
        """
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        if max_size is not None and max_size < len(SPECIAL_TOKENS):
            raise ValueError(
                f"max_size must be at least {len(SPECIAL_TOKENS)} (the special tokens), "
                f"got {max_size}"
            )
        counts: Counter[str] = Counter()
        for sentence in sentences:
            if isinstance(sentence, str):
                raise TypeError(
                    "Vocab.build expects an iterable of token lists, got a string "
                    f"{sentence[:40]!r}; tokenize the sentences first"
                )
            counts.update(sentence)
        for special in SPECIAL_TOKENS:
            counts.pop(special, None)
        ranked = sorted(
            (tok for tok, n in counts.items() if n >= min_freq),
            key=lambda tok: (-counts[tok], tok),
        )
        if max_size is not None:
            ranked = ranked[: max_size - len(SPECIAL_TOKENS)]
        return cls((*SPECIAL_TOKENS, *ranked))

    # -- lookups ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __iter__(self) -> Iterator[str]:
        """The tokens in id order, special tokens first."""
        return iter(self._tokens)

    @property
    def tokens(self) -> tuple[str, ...]:
        """All tokens in id order (the token with id ``i`` is ``tokens[i]``)."""
        return self._tokens

    def token(self, id: int) -> str:
        """The token with this id; IndexError if the id is out of range."""
        i = operator.index(id)
        if not 0 <= i < len(self._tokens):
            raise IndexError(f"token id {i} out of range for a vocabulary of {len(self)}")
        return self._tokens[i]

    def id(self, token: str) -> int:
        """The id of this token, ``UNK_ID`` if it is not in the vocabulary."""
        return self._index.get(token, UNK_ID)

    def encode(
        self, tokens: Iterable[str], add_bos: bool = False, add_eos: bool = True
    ) -> list[int]:
        """Token ids for ``tokens``; unknown tokens become ``UNK_ID``."""
        if isinstance(tokens, str):
            raise TypeError(f"encode expects a list of tokens, got a string {tokens[:40]!r}")
        get = self._index.get
        ids = [BOS_ID] if add_bos else []
        ids.extend(get(tok, UNK_ID) for tok in tokens)
        if add_eos:
            ids.append(EOS_ID)
        return ids

    def decode(self, ids: Iterable[int], strip_special: bool = True) -> list[str]:
        """Tokens for ``ids`` (ints, numpy or 0-d torch integers).

        With ``strip_special`` (the default) decoding stops at the first ``</s>`` and
        ``<pad>`` and ``<s>`` are dropped; ``<unk>`` is kept, since it stands for a word.
        Without it every id is decoded as is. IndexError for an id out of range.
        """
        out: list[str] = []
        for raw in ids:
            i = operator.index(raw)
            if strip_special:
                if i == EOS_ID:
                    break
                if i in (PAD_ID, BOS_ID):
                    continue
            out.append(self.token(i))
        return out

    # -- serialisation ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"format": "attnviz-vocab", "version": 1, "tokens": [...]}``."""
        return {"format": FORMAT, "version": VERSION, "tokens": list(self._tokens)}

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "vocabulary dict") -> Vocab:
        """Rebuild from :meth:`to_dict` output; VocabError (naming ``source``) if malformed."""

        def fail(problem: str) -> NoReturn:
            raise VocabError(f"{source}: {problem}")

        if not isinstance(data, Mapping):
            fail(f"expected a JSON object, got {type(data).__name__}")
        fmt = data.get("format")
        if fmt != FORMAT:
            fail(f"format is {fmt!r}, expected {FORMAT!r}")
        version = data.get("version")
        if version != VERSION or isinstance(version, bool):
            fail(f"unsupported version {version!r}, this attnviz reads version {VERSION}")
        tokens = data.get("tokens")
        if not isinstance(tokens, list):
            fail(f"'tokens' must be a list of strings, got {type(tokens).__name__}")
        _check_tokens(tokens, fail=fail)
        return cls(tokens)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the vocabulary as UTF-8 JSON (atomically: a temporary file is renamed)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        text = json.dumps(self.to_dict(), ensure_ascii=False, indent=1)
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Vocab:
        """Read a file written by :meth:`save`; VocabError naming the file if it is unusable."""
        try:
            raw = Path(path).read_bytes()
        except FileNotFoundError as e:
            raise VocabError(f"{path}: vocabulary file not found") from e
        except OSError as e:
            raise VocabError(f"{path}: cannot read vocabulary file: {e.strerror}") from e
        try:
            data = json.loads(raw.decode("utf-8-sig"))
        except UnicodeDecodeError as e:
            raise VocabError(f"{path}: not UTF-8 text (bad byte at offset {e.start})") from e
        except json.JSONDecodeError as e:
            raise VocabError(
                f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
            ) from e
        return cls.from_dict(data, source=str(path))

    # -- value semantics --------------------------------------------------------------

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(f"Vocab is immutable (cannot set {name!r})")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Vocab is immutable (cannot delete {name!r})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        preview = ", ".join(repr(t) for t in self._tokens[len(SPECIAL_TOKENS) : 8])
        more = ", ..." if len(self) > 8 else ""
        return f"Vocab(size={len(self)}, tokens=[{preview}{more}])"

    def __reduce__(self) -> tuple[type[Vocab], tuple[tuple[str, ...]]]:
        return (Vocab, (self._tokens,))


def _raise_plain(problem: str) -> NoReturn:
    raise VocabError(f"Vocab(): {problem}")


def _check_tokens(tokens: Iterable[object], *, fail: Callable[[str], NoReturn]) -> None:
    """Call ``fail(problem)`` unless tokens are unique non-empty strings led by the specials."""
    seen: set[str] = set()
    toks = list(tokens)
    head = toks[: len(SPECIAL_TOKENS)]
    if tuple(head) != SPECIAL_TOKENS:
        fail(
            f"the first tokens must be the special tokens {list(SPECIAL_TOKENS)} at ids "
            f"0..{len(SPECIAL_TOKENS) - 1}, found {head}"
        )
    for i, tok in enumerate(toks):
        if not isinstance(tok, str):
            fail(f"token {i} is {tok!r}, expected a string")
        if not tok:
            fail(f"token {i} is an empty string")
        if tok in seen:
            fail(f"token {tok!r} appears twice (again at id {i})")
        seen.add(tok)
