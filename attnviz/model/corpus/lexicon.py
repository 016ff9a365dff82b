"""The bilingual lexicon: reviewed TSV files of English-French lemma pairs.

See ``lexicon/README.md`` for the columns. Loading validates every value, so a typo in
the data is an error naming the file and line, not a silent odd sentence.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

LEXICON_DIR = Path(__file__).parent / "lexicon"

NOUN_CLASSES = frozenset(
    "person animal food drink place vehicle object abstract event body plant clothing "
    "instrument document".split()
)
FRAMES = frozenset({"intr", "tr", "ditr", "prep"})
TENSES = frozenset({"past", "present", "future", "*"})


class LexiconError(ValueError):
    """A lexicon file has a bad line; the message names the file and the line."""


@dataclass(frozen=True)
class Noun:
    en: str
    fr: str
    gender: str  # French gender: "m" | "f"
    countable: bool
    cls: str
    loc: tuple[str, str] | None = None  # (en_prep, fr_prep) for places: ("in", "dans")


@dataclass(frozen=True)
class Verb:
    en: str
    fr: str
    frame: str  # intr | tr | ditr | prep
    subj: frozenset[str]
    obj: frozenset[str]
    en_prep: str = ""
    fr_prep: str = ""


@dataclass(frozen=True)
class Adjective:
    en: str
    fr: str
    pre: bool  # French position: before the noun
    classes: frozenset[str]


@dataclass(frozen=True)
class Adverb:
    en: str
    fr: str
    kind: str  # time | manner | frequency
    tense: str  # past | present | future | *


@dataclass(frozen=True)
class Preposition:
    en: str
    fr: str
    kind: str  # place | time
    classes: frozenset[str]


@dataclass(frozen=True)
class Name:
    en: str
    fr: str
    gender: str
    kind: str  # person | city


@dataclass(frozen=True)
class Number:
    en: str
    fr: str
    value: int


@dataclass(frozen=True)
class Lexicon:
    nouns: tuple[Noun, ...]
    verbs: tuple[Verb, ...]
    adjectives: tuple[Adjective, ...]
    adverbs: tuple[Adverb, ...]
    prepositions: tuple[Preposition, ...]
    names: tuple[Name, ...]
    numbers: tuple[Number, ...]
    _by_class: dict[str, tuple[Noun, ...]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for cls in NOUN_CLASSES:
            self._by_class[cls] = tuple(n for n in self.nouns if n.cls == cls)

    def nouns_of(self, classes: frozenset[str]) -> tuple[Noun, ...]:
        """Nouns whose class is in ``classes`` (``*`` means any)."""
        if "*" in classes:
            return self.nouns
        return tuple(n for c in sorted(classes) for n in self._by_class.get(c, ()))

    def __len__(self) -> int:
        return sum(
            len(x)
            for x in (
                self.nouns,
                self.verbs,
                self.adjectives,
                self.adverbs,
                self.prepositions,
                self.names,
                self.numbers,
            )
        )


def _rows(path: Path, columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    with path.open(encoding="utf-8", newline="") as f:
        lines = [(i, line) for i, line in enumerate(f, 1) if line.strip() and line[0] != "#"]
    if not lines:
        raise LexiconError(f"{path}: empty file")
    header = lines[0][1].rstrip("\n").split("\t")
    if header != columns:
        raise LexiconError(f"{path}:{lines[0][0]}: header {header} != expected {columns}")
    for lineno, line in lines[1:]:
        cells = next(csv.reader([line.rstrip("\n")], delimiter="\t", quoting=csv.QUOTE_NONE))
        cells += [""] * (len(columns) - len(cells))
        if len(cells) != len(columns):
            raise LexiconError(f"{path}:{lineno}: {len(cells)} cells, expected {len(columns)}")
        row = dict(zip(columns, (c.strip() for c in cells), strict=True))
        if not row["en"] or not row["fr"]:
            raise LexiconError(f"{path}:{lineno}: empty English or French lemma")
        yield lineno, row


def _choice(path: Path, lineno: int, name: str, value: str, valid: frozenset[str]) -> str:
    if value not in valid:
        raise LexiconError(f"{path}:{lineno}: {name}={value!r}, expected one of {sorted(valid)}")
    return value


def _classes(path: Path, lineno: int, value: str) -> frozenset[str]:
    items = frozenset(v.strip() for v in value.split(",") if v.strip())
    if not items:
        raise LexiconError(f"{path}:{lineno}: empty class list")
    for item in items:
        _choice(path, lineno, "class", item, NOUN_CLASSES | {"*"})
    return items


def load_lexicon(directory: Path = LEXICON_DIR) -> Lexicon:
    """Read and validate every lexicon file in ``directory``."""
    d = directory
    nouns = []
    for n, r in _rows(d / "nouns.tsv", ["en", "fr", "gender", "count", "class", "loc"]):
        loc = None
        if r["loc"]:
            if ":" not in r["loc"]:
                raise LexiconError(f"{d / 'nouns.tsv'}:{n}: loc must be en_prep:fr_prep")
            en_p, fr_p = r["loc"].split(":", 1)
            loc = (en_p, fr_p)
        nouns.append(
            Noun(
                r["en"],
                r["fr"],
                _choice(d / "nouns.tsv", n, "gender", r["gender"], frozenset("mf")),
                _choice(d / "nouns.tsv", n, "count", r["count"], frozenset("cu")) == "c",
                _choice(d / "nouns.tsv", n, "class", r["class"], NOUN_CLASSES),
                loc,
            )
        )
    verbs = []
    cols = ["en", "fr", "frame", "subj", "obj", "en_prep", "fr_prep"]
    for n, r in _rows(d / "verbs.tsv", cols):
        frame = _choice(d / "verbs.tsv", n, "frame", r["frame"], FRAMES)
        obj = _classes(d / "verbs.tsv", n, r["obj"]) if frame != "intr" else frozenset()
        verbs.append(
            Verb(
                r["en"],
                r["fr"],
                frame,
                _classes(d / "verbs.tsv", n, r["subj"]),
                obj,
                r["en_prep"],
                r["fr_prep"],
            )
        )
    adjectives = [
        Adjective(
            r["en"],
            r["fr"],
            _choice(d / "adjectives.tsv", n, "position", r["position"], frozenset({"pre", "post"}))
            == "pre",
            _classes(d / "adjectives.tsv", n, r["classes"]),
        )
        for n, r in _rows(d / "adjectives.tsv", ["en", "fr", "position", "classes"])
    ]
    kinds = frozenset({"time", "manner", "frequency"})
    adverbs = [
        Adverb(
            r["en"],
            r["fr"],
            _choice(d / "adverbs.tsv", n, "kind", r["kind"], kinds),
            _choice(d / "adverbs.tsv", n, "tense", r["tense"], TENSES),
        )
        for n, r in _rows(d / "adverbs.tsv", ["en", "fr", "kind", "tense"])
    ]
    preps = [
        Preposition(
            r["en"],
            r["fr"],
            _choice(d / "prepositions.tsv", n, "kind", r["kind"], frozenset({"place", "time"})),
            _classes(d / "prepositions.tsv", n, r["classes"]),
        )
        for n, r in _rows(d / "prepositions.tsv", ["en", "fr", "kind", "classes"])
    ]
    names = [
        Name(
            r["en"],
            r["fr"],
            _choice(d / "names.tsv", n, "gender", r["gender"], frozenset("mf")),
            _choice(d / "names.tsv", n, "kind", r["kind"], frozenset({"person", "city"})),
        )
        for n, r in _rows(d / "names.tsv", ["en", "fr", "gender", "kind"])
    ]
    numbers = []
    for n, r in _rows(d / "numbers.tsv", ["en", "fr", "value"]):
        if not r["value"].isdigit():
            raise LexiconError(f"{d / 'numbers.tsv'}:{n}: value must be a whole number")
        numbers.append(Number(r["en"], r["fr"], int(r["value"])))
    return Lexicon(
        tuple(nouns),
        tuple(verbs),
        tuple(adjectives),
        tuple(adverbs),
        tuple(preps),
        tuple(names),
        tuple(numbers),
    )


@cache
def default_lexicon() -> Lexicon:
    """The project's lexicon, loaded once."""
    return load_lexicon(LEXICON_DIR)
