"""The reviewed bilingual lexicon: sizes, uniqueness, and agreement with pyrealb.

Every pair becomes a gold word alignment, so each lemma must be one pyrealb knows, with
the right part of speech (and, for French nouns, the right gender), and must realise
without pyrealb's ``[[unknown]]`` marker. pyrealb's lexicons are loaded once per module.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pyrealb import NP, PP, VP, A, D, N, P, S, V, getLexicon, loadEn, loadFr

from attnviz.model.corpus.lexicon import (
    LEXICON_DIR,
    NOUN_CLASSES,
    Lexicon,
    LexiconError,
    Noun,
    Verb,
    load_lexicon,
)

FILES = ("nouns", "verbs", "adjectives", "adverbs", "prepositions", "names", "numbers")

MIN_COUNTS = {
    "nouns": 300,
    "verbs": 120,
    "adjectives": 100,
    "adverbs": 20,
    "prepositions": 10,
    "names": 25,
    "numbers": 19,
}
MIN_TOTAL = 600
MIN_PER_CLASS = {"person": 40, "place": 60, "event": 25}

# Nouns, verbs, adjectives and adverbs are single words; no hyphen or apostrophe either,
# so tokenisation never splits or merges them (multi-word prepositions are checked apart).
SINGLE_WORD = re.compile(r"^[^\s'’-]+$")
FR_VOWEL_OR_H = re.compile(r"^[aeiouyhàâäéèêëîïôöùûüÿæœ]", re.IGNORECASE)

Lex = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def lex() -> Lexicon:
    return load_lexicon()


@pytest.fixture(scope="module")
def pyrealb_lex() -> dict[str, Lex]:
    """pyrealb's English and French lexicons (lemma -> {POS: info}); French left loaded."""
    loadEn()
    en = getLexicon()
    loadFr()
    fr = getLexicon()
    return {"en": en, "fr": fr}


def _entries(lex: Lexicon, name: str) -> tuple[Any, ...]:
    return getattr(lex, name)


def _has_pos(lexicon: Lex, lemma: str, pos: str) -> bool:
    return pos in lexicon.get(lemma, {})


def _clean(outputs: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """No ``[[unknown]]`` marker in any realisation and no pyrealb error message."""
    bad = [o for o in outputs if "[[" in o]
    assert not bad, bad[:10]
    err = capsys.readouterr()
    assert not err.err.strip(), err.err[:2000]
    assert not err.out.strip(), err.out[:2000]


# ---------------------------------------------------------------- sizes and uniqueness


def test_minimum_counts(lex: Lexicon) -> None:
    counts = {name: len(_entries(lex, name)) for name in FILES}
    for name, minimum in MIN_COUNTS.items():
        assert counts[name] >= minimum, (name, counts[name], minimum)
    assert len(lex) >= MIN_TOTAL, counts


def test_noun_classes_are_spread(lex: Lexicon) -> None:
    per_class = Counter(n.cls for n in lex.nouns)
    assert set(per_class) == NOUN_CLASSES, NOUN_CLASSES - set(per_class)
    for cls, minimum in MIN_PER_CLASS.items():
        assert per_class[cls] >= minimum, (cls, per_class[cls])
    assert all(per_class[cls] >= 5 for cls in NOUN_CLASSES), per_class


@pytest.mark.parametrize("name", FILES)
def test_lemmas_unique_within_file(lex: Lexicon, name: str) -> None:
    for lang in ("en", "fr"):
        counts = Counter(getattr(e, lang) for e in _entries(lex, name))
        dups = sorted(w for w, c in counts.items() if c > 1)
        assert not dups, f"{name}.tsv: duplicate {lang} lemmas {dups}"


@pytest.mark.parametrize("name", ["nouns", "verbs", "adjectives", "adverbs", "numbers"])
def test_single_word_lemmas(lex: Lexicon, name: str) -> None:
    for e in _entries(lex, name):
        assert SINGLE_WORD.match(e.en), (name, e.en)
        if name != "numbers":  # dix-sept, dix-huit, dix-neuf are single tokens
            assert SINGLE_WORD.match(e.fr), (name, e.fr)


# ---------------------------------------------------------------- nouns


def test_nouns_in_pyrealb(lex: Lexicon, pyrealb_lex: dict[str, Lex]) -> None:
    en, fr = pyrealb_lex["en"], pyrealb_lex["fr"]
    missing = [n.en for n in lex.nouns if not _has_pos(en, n.en, "N")]
    missing += [n.fr for n in lex.nouns if not _has_pos(fr, n.fr, "N")]
    assert not missing, missing


def test_noun_genders_agree_with_pyrealb(lex: Lexicon, pyrealb_lex: dict[str, Lex]) -> None:
    # pyrealb's "x" (either gender: enfant, élève, livre...) realises as masculine by
    # default, so the file must say "m" for those too.
    wrong = []
    for n in lex.nouns:
        g = pyrealb_lex["fr"].get(n.fr, {}).get("N", {}).get("g")
        if (g if g in ("m", "f") else "m") != n.gender:
            wrong.append((n.en, n.fr, n.gender, g))
    assert not wrong, wrong


def test_countable_nouns_have_an_english_plural(lex: Lexicon, pyrealb_lex: dict[str, Lex]) -> None:
    en = pyrealb_lex["en"]
    uncountable = [
        n.en for n in lex.nouns if n.countable and en.get(n.en, {}).get("N", {}).get("cnt") == "no"
    ]
    assert not uncountable, uncountable


def test_place_nouns_have_loc(lex: Lexicon, pyrealb_lex: dict[str, Lex]) -> None:
    for n in lex.nouns:
        if n.cls != "place":
            assert n.loc is None, (n.en, n.loc)
            continue
        assert n.loc is not None, n.en
        en_p, fr_p = n.loc
        assert _has_pos(pyrealb_lex["en"], en_p, "P"), (n.en, en_p)
        assert _has_pos(pyrealb_lex["fr"], fr_p, "P"), (n.en, fr_p)


def test_nouns_realise(
    lex: Lexicon, pyrealb_lex: dict[str, Lex], capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    outputs = []
    loadEn()
    for n in lex.nouns:
        outputs.append(S(NP(D("the"), N(n.en))).realize())
        if n.countable:
            outputs.append(S(NP(D("the"), N(n.en).n("p"))).realize())
    loadFr()
    for n in lex.nouns:
        outputs.append(S(NP(D("le"), N(n.fr).g(n.gender))).realize())
        if n.countable:
            outputs.append(S(NP(D("le"), N(n.fr).g(n.gender).n("p"))).realize())
    _clean(outputs, capsys)


# ---------------------------------------------------------------- verbs


def test_verbs_in_pyrealb(lex: Lexicon, pyrealb_lex: dict[str, Lex]) -> None:
    en, fr = pyrealb_lex["en"], pyrealb_lex["fr"]
    missing = [v.en for v in lex.verbs if not _has_pos(en, v.en, "V")]
    missing += [v.fr for v in lex.verbs if not _has_pos(fr, v.fr, "V")]
    missing += [v.en_prep for v in lex.verbs if v.en_prep and not _has_pos(en, v.en_prep, "P")]
    missing += [v.fr_prep for v in lex.verbs if v.fr_prep and not _has_pos(fr, v.fr_prep, "P")]
    assert not missing, missing


def test_verb_frames_are_consistent(lex: Lexicon) -> None:
    for v in lex.verbs:
        if v.frame == "intr":
            assert not v.en_prep and not v.fr_prep, v.en
        elif v.frame == "tr":
            assert not v.en_prep and not v.fr_prep and v.obj, v.en
        elif v.frame == "ditr":  # give X to Y / donner X à Y
            assert v.en_prep and v.fr_prep and v.obj, v.en
        else:  # prep: at least one language marks the object with a preposition
            assert (v.en_prep or v.fr_prep) and v.obj, v.en


def test_verb_classes_have_nouns(lex: Lexicon) -> None:
    for v in lex.verbs:
        assert lex.nouns_of(v.subj), (v.en, v.subj)
        if v.frame != "intr":
            assert lex.nouns_of(v.obj), (v.en, v.obj)


def _np(lang: str, n: Noun) -> Any:
    if lang == "en":
        return NP(D("the"), N(n.en))
    return NP(D("le"), N(n.fr).g(n.gender))


def _clause(lang: str, v: Verb, subj: Noun, obj: Noun | None, recipient: Noun) -> Any:
    """``subj v (obj)``, with the verb's prepositions, in the currently loaded language."""
    verb, prep = (V(v.en), v.en_prep) if lang == "en" else (V(v.fr), v.fr_prep)
    if v.frame == "intr" or obj is None:
        vp = VP(verb)
    elif v.frame == "tr":
        vp = VP(verb, _np(lang, obj))
    elif v.frame == "ditr":
        vp = VP(verb, _np(lang, obj), PP(P(prep), _np(lang, recipient)))
    else:
        vp = VP(verb, PP(P(prep), _np(lang, obj)) if prep else _np(lang, obj))
    return S(_np(lang, subj), vp)


def test_verbs_realise(lex: Lexicon, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    person = lex.nouns_of(frozenset({"person"}))[0]
    frames = []
    for v in lex.verbs:
        subj = lex.nouns_of(v.subj)[0]
        obj = lex.nouns_of(v.obj)[-1] if v.frame != "intr" else None
        frames.append((v, subj, obj))
    outputs = []
    for lang, tenses in (("en", ("p", "ps", "f")), ("fr", ("p", "pc", "f"))):
        (loadEn if lang == "en" else loadFr)()
        for v, subj, obj in frames:
            for t in tenses:
                outputs.append(_clause(lang, v, subj, obj, person).t(t).realize())
    _clean(outputs, capsys)


# ---------------------------------------------------------------- adjectives


def test_adjectives_in_pyrealb(lex: Lexicon, pyrealb_lex: dict[str, Lex]) -> None:
    en, fr = pyrealb_lex["en"], pyrealb_lex["fr"]
    missing = [a.en for a in lex.adjectives if not _has_pos(en, a.en, "A")]
    missing += [a.fr for a in lex.adjectives if not _has_pos(fr, a.fr, "A")]
    assert not missing, missing


def test_adjective_positions(lex: Lexicon, pyrealb_lex: dict[str, Lex]) -> None:
    # pyrealb moves a French adjective before the noun iff its lexicon says pos="pre"
    # (petit, grand...), whatever order it is given in; the file must agree, or the
    # generator's "de vieux livres" and adjective-order logic is wrong.
    wrong = [
        (a.fr, a.pre)
        for a in lex.adjectives
        if (pyrealb_lex["fr"].get(a.fr, {}).get("A", {}).get("pos") == "pre") != a.pre
    ]
    assert not wrong, wrong


def test_adjective_classes_have_nouns(lex: Lexicon) -> None:
    for a in lex.adjectives:
        assert lex.nouns_of(a.classes), (a.en, a.classes)


def test_adjectives_realise(lex: Lexicon, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    outputs = []
    loadEn()
    for a in lex.adjectives:
        outputs.append(NP(D("the"), A(a.en), N("cat")).realize())
    loadFr()
    for a in lex.adjectives:
        for noun, number in (("chat", "s"), ("chat", "p"), ("pomme", "s"), ("pomme", "p")):
            n = N(noun).n(number)
            # placed as the generator places it; pyrealb must keep that order
            out = NP(D("le"), A(a.fr), n) if a.pre else NP(D("le"), n, A(a.fr))
            text = out.realize()
            outputs.append(text)
            noun_last = text.split()[-1] in (noun, noun + "s")
            assert noun_last == a.pre, (a.fr, a.pre, text)
    _clean(outputs, capsys)


# ---------------------------------------------------------------- the small files


def test_adverbs_in_pyrealb(lex: Lexicon, pyrealb_lex: dict[str, Lex]) -> None:
    missing = [a.en for a in lex.adverbs if not _has_pos(pyrealb_lex["en"], a.en, "Adv")]
    missing += [a.fr for a in lex.adverbs if not _has_pos(pyrealb_lex["fr"], a.fr, "Adv")]
    assert not missing, missing


def test_adverb_kinds(lex: Lexicon) -> None:
    kinds = Counter(a.kind for a in lex.adverbs)
    assert all(kinds[k] >= 5 for k in ("time", "manner", "frequency")), kinds
    tenses = {a.tense for a in lex.adverbs if a.kind == "time"}
    assert {"past", "present", "future"} <= tenses, tenses


def test_prepositions_in_pyrealb(lex: Lexicon, pyrealb_lex: dict[str, Lex]) -> None:
    for p in lex.prepositions:
        for lang in ("en", "fr"):
            words = getattr(p, lang).split()
            lexicon = pyrealb_lex[lang]
            if len(words) == 1:
                assert _has_pos(lexicon, words[0], "P"), (lang, p.en, p.fr)
            else:  # in front of, à côté de: every word a pyrealb lemma
                assert all(w in lexicon for w in words), (lang, p.en, p.fr)


def test_preposition_classes(lex: Lexicon) -> None:
    kinds = Counter(p.kind for p in lex.prepositions)
    assert kinds["place"] >= 5 and kinds["time"] >= 3, kinds
    for p in lex.prepositions:
        assert lex.nouns_of(p.classes), (p.en, p.classes)
        if p.kind == "time":
            assert p.classes == frozenset({"event"}), p.en


def test_numbers_agree_with_pyrealb(lex: Lexicon, pyrealb_lex: dict[str, Lex]) -> None:
    values = [n.value for n in lex.numbers]
    assert set(range(2, 21)) <= set(values), values
    for n in lex.numbers:
        assert pyrealb_lex["en"].get(n.en, {}).get("value") == n.value, n.en
        assert pyrealb_lex["fr"].get(n.fr, {}).get("value") == n.value, n.fr


def test_names(lex: Lexicon) -> None:
    kinds = Counter(n.kind for n in lex.names)
    assert kinds["person"] >= 15 and kinds["city"] >= 10, kinds
    assert {n.gender for n in lex.names if n.kind == "person"} == {"m", "f"}
    for n in lex.names:
        # capitalised single words; French ones never elide (no d'Anne, l'Henri)
        assert re.fullmatch(r"[A-Z][a-z]+", n.en), n.en
        assert re.fullmatch(r"[A-ZÀ-Ý][a-zà-ÿ]+", n.fr), n.fr
        assert not FR_VOWEL_OR_H.match(n.fr), n.fr


# ---------------------------------------------------------------- the loader's errors


def _copy_lexicon(tmp_path: Path) -> Path:
    d = tmp_path / "lexicon"
    d.mkdir()
    for f in LEXICON_DIR.glob("*.tsv"):
        shutil.copy(f, d / f.name)
    return d


def _append(path: Path, line: str) -> int:
    """Append ``line`` to ``path``; return its line number."""
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text += "\n"
    path.write_text(text + line + "\n", encoding="utf-8")
    return text.count("\n") + 1


def test_copied_lexicon_loads(tmp_path: Path, lex: Lexicon) -> None:
    assert load_lexicon(_copy_lexicon(tmp_path)) == lex


@pytest.mark.parametrize(
    ("file", "line"),
    [
        pytest.param("nouns.tsv", "cat2\tchatte\tx\tc\tanimal\t", id="bad-gender"),
        pytest.param("nouns.tsv", "cat2\tchatte", id="missing-cells"),
        pytest.param("nouns.tsv", "cat2\tchatte\tf\tc\tanimal\t\textra", id="extra-cell"),
        pytest.param("nouns.tsv", "yard2\tcour\tf\tc\tplace\tin-dans", id="bad-loc"),
        pytest.param("nouns.tsv", "\tchatte\tf\tc\tanimal\t", id="empty-lemma"),
        pytest.param("verbs.tsv", "nap\tsomnoler\tintrans\tperson\t\t\t", id="bad-frame"),
        pytest.param("verbs.tsv", "eat2\tmanger2\ttr\tperson\tfood,stuff\t\t", id="bad-class"),
        pytest.param("adjectives.tsv", "tiny\tminuscule\tmiddle\t*", id="bad-position"),
        pytest.param("adverbs.tsv", "later\tplus tard\ttime\tsoon", id="bad-tense"),
        pytest.param("names.tsv", "Anna\tAnne\tf\ttown", id="bad-kind"),
        pytest.param("numbers.tsv", "one\tun\tI", id="bad-number"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, file: str, line: str) -> None:
    d = _copy_lexicon(tmp_path)
    lineno = _append(d / file, line)
    with pytest.raises(LexiconError) as err:
        load_lexicon(d)
    assert f"{file}:{lineno}:" in str(err.value)


def test_wrong_header_names_file_and_line(tmp_path: Path) -> None:
    d = _copy_lexicon(tmp_path)
    path = d / "verbs.tsv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines[0].startswith("en\tfr\t")
    header = "en\tfr\tframe\tsubject\tobj\ten_prep\tfr_prep\n"
    path.write_text(header + "".join(lines[1:]), encoding="utf-8")
    with pytest.raises(LexiconError) as err:
        load_lexicon(d)
    assert "verbs.tsv:1:" in str(err.value)
    assert "header" in str(err.value)
