"""Checks of a request against the settings' limits and against the chosen model's input.

The request schemas check what can be checked alone (types, ranges of the contract,
text). What depends on the model (its vocabulary, the number of source tokens of each
text) or on the settings (limits lowered by the operator) is checked here, before the
request joins a batch, so one bad request cannot fail the batch it would have joined.
Every problem is an :class:`InputProblem`: a 422 with the field and what to change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from attnviz.app.settings import Settings
from attnviz.model.decoding import DecodeOptions
from attnviz.model.translator import SourceText, Translator
from attnviz.model.vocab import UNK_ID

LANGUAGE_NAMES: Mapping[str, str] = MappingProxyType({"en": "English", "fr": "French"})


class InputProblem(ValueError):
    """A request that does not fit the model or the limits; ``loc`` names the field."""

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = ["body", *loc]
        self.message = message

    def detail(self) -> list[dict[str, object]]:
        return [{"loc": self.loc, "msg": self.message, "type": "value_error"}]


def _language(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def check_limits(
    settings: Settings,
    *,
    texts: Sequence[tuple[Sequence[str | int], str]] = (),
    batch: int | None = None,
    beam_size: int | None = None,
    max_length: int | None = None,
    top_k: int | None = None,
) -> None:
    """The settings' limits (they can be lower than the contract's)."""
    for loc, text in texts:
        if len(text) > settings.max_text_chars:
            raise InputProblem(
                loc,
                f"the text has {len(text)} characters, more than this service's limit of "
                f"{settings.max_text_chars}: shorten it or split it into sentences",
            )
    if batch is not None and batch > settings.max_batch_texts:
        raise InputProblem(
            ["texts"],
            f"{batch} texts, more than this service's limit of {settings.max_batch_texts} "
            "per request: send them in several requests",
        )
    if beam_size is not None and beam_size > settings.max_beam_size:
        raise InputProblem(
            ["beam_size"],
            f"beam_size {beam_size} is above this service's limit of {settings.max_beam_size}",
        )
    if max_length is not None and max_length > settings.max_length:
        raise InputProblem(
            ["max_length"],
            f"max_length {max_length} is above this service's limit of {settings.max_length}",
        )
    if top_k is not None and top_k > settings.max_top_k:
        raise InputProblem(
            ["top_k"], f"top_k {top_k} is above this service's limit of {settings.max_top_k}"
        )


Source = SourceText


def read_source(translator: Translator, name: str, text: str, loc: Sequence[str | int]) -> Source:
    """The text's pieces, ids and words; InputProblem when the model knows none of them."""
    try:
        source = translator.source(text)
    except ValueError:
        raise InputProblem(loc, "the text has no words once tokenized: send some words") from None
    tokens, ids = source.tokens[:-1], source.ids
    if all(i == UNK_ID for i in ids[:-1]):
        shown = ", ".join(repr(t) for t in tokens[:5]) + (", ..." if len(tokens) > 5 else "")
        raise InputProblem(
            loc,
            f"model {name!r} knows none of these words ({shown}): it translates "
            f"{_language(translator.source_lang)} to {_language(translator.target_lang)}, so "
            f"send {_language(translator.source_lang)} text, or choose another model "
            "(GET /api/models)",
        )
    return source


def masked_word_pieces(
    words: Sequence[int] | None, sources: Sequence[Source], batch: bool
) -> list[int]:
    """The piece positions of ``masked_words`` (every piece of each word); the same in every
    text of a batch, or InputProblem."""
    if not words:
        return []
    expanded: list[int] | None = None
    for n, source in enumerate(sources):
        where = f" of texts[{n}]" if batch else ""
        for i, k in enumerate(words):
            if k > len(source.words):
                raise InputProblem(
                    ["masked_words", i],
                    f"masked_words word {k} is out of range: the source words{where} are "
                    f"numbered 0..{len(source.words)} (the end token </s> is "
                    f"{len(source.words)}); use the indices of source_words",
                )
        pieces = source.word_pieces(words)
        if expanded is not None and pieces != expanded:
            raise InputProblem(
                ["masked_words"],
                "masked_words covers different pieces in different texts of this batch: "
                "send those texts one by one, or mask pieces with masked_source",
            )
        expanded = pieces
    return expanded or []


def check_masked(
    masked: Sequence[int] | None,
    sources: Sequence[Source],
    batch: bool,
    words: Sequence[int] | None = None,
) -> tuple[int, ...] | None:
    """``masked_source`` (and the pieces of ``masked_words``) fit every text: positions in
    range, at least one left free."""
    from_words = masked_word_pieces(words, sources, batch)
    if not masked and not from_words:
        return None
    masked = list(masked or [])
    unique = tuple(sorted(set(masked) | set(from_words)))
    for n, source in enumerate(sources):
        where = f" of texts[{n}]" if batch else ""
        last = source.positions - 1
        for i, position in enumerate(masked):
            if position > last:
                raise InputProblem(
                    ["masked_source", i],
                    f"masked_source position {position} is out of range: the source tokens"
                    f"{where} are numbered 0..{last} (the end token </s> is {last}); use "
                    "the indices of source_tokens",
                )
        if len(unique) >= source.positions:
            raise InputProblem(
                ["masked_words" if from_words and not masked else "masked_source"],
                f"masked_source masks all {source.positions} source positions{where}: leave "
                "at least one free for the decoder to attend to",
            )
    return unique


def check_prefix(
    translator: Translator,
    name: str,
    prefix: str | None,
    max_length: int | None,
    sources: Sequence[Source],
) -> None:
    """The forced prefix is made of words the model can write, and leaves room."""
    if prefix is None:
        return
    tokens = translator.loaded.tgt_tokenizer.segment(prefix).pieces
    if not tokens:
        return
    unknown = _unknown_target_pieces(translator, tokens)
    if unknown:
        raise InputProblem(
            ["forced_prefix"],
            f"forced_prefix has words model {name!r} cannot write "
            f"({', '.join(repr(t) for t in unknown[:5])}): it must be "
            f"{_language(translator.target_lang)} words of the model's vocabulary",
        )
    options = DecodeOptions(max_length=max_length)
    for n, source in enumerate(sources):
        limit = options.max_length_for(source.positions)
        if len(tokens) >= limit:
            which = "max_length" if max_length is not None else "the default length limit"
            raise InputProblem(
                ["forced_prefix"],
                f"forced_prefix has {len(tokens)} tokens but {which} is {limit}"
                + (f" for texts[{n}]" if len(sources) > 1 else "")
                + ": raise max_length or shorten the prefix (one token must stay free)",
            )


def _unknown_target_pieces(translator: Translator, pieces: Sequence[str]) -> list[str]:
    """The pieces outside the target vocabulary, each once, in order (a subword model has
    none: byte fallback spells any text with its pieces)."""
    return list(dict.fromkeys(t for t in pieces if t not in translator.tgt_vocab))


def check_target(translator: Translator, name: str, target: str) -> None:
    """The translation to align is made of words the model knows: a word outside its
    vocabulary would be read as ``<unk>``, and its probability would be that of ``<unk>``
    (as ``forced_prefix``, refused with the words named)."""
    tokens = translator.loaded.tgt_tokenizer.segment(target).pieces
    unknown = _unknown_target_pieces(translator, tokens)
    if unknown:
        shown = ", ".join(repr(t) for t in unknown[:10]) + (", ..." if len(unknown) > 10 else "")
        raise InputProblem(
            ["target"],
            f"target has {len(unknown)} word(s) model {name!r} does not know ({shown}): "
            f"it would read them as <unk>, so their probabilities would say nothing: send "
            f"{_language(translator.target_lang)} words of the model's vocabulary, or choose "
            "another model (GET /api/models)",
        )
