"""Word an abstract sentence in English and French with pyrealb, and align the words.

How the gold alignment is derived (also described in the README):

1. Every terminal that has a counterpart (noun, adjective, determiner, pronoun, number,
   name, preposition, adverb, conjunction) is wrapped in a pyrealb tag ``<w i="ID">`` and
   every clause in ``<c i="ID">``; the same ID in both languages means "these translate
   each other". Verbs are not tagged: pyrealb rebuilds verb groups for negation,
   questions, passive, modals and the progressive, and drops tags on the way.
2. The tagged realisation gives, for each character, the word id and clause id it came
   from. Tags block some of pyrealb's spelling rules (``le homme`` -> ``l'homme``,
   ``à le`` -> ``au``, ``a`` -> ``an``), so the sentence is realised a second time without
   tags, and a character diff maps the real text onto the tagged one: a contraction gets
   the ids of all the words it merges (``au`` = ``à`` + ``le``).
3. The real text is tokenized with the project's tokenizer; a token's ids are those of
   its characters. A token with no word id but inside a clause is given, by its form,
   the clause's verb group (any form of the clause's verb, its auxiliaries and modals),
   its negation (not/never <-> ne/pas/jamais), its question word (where <-> où...) or
   its passive agent (by <-> par). Anything else (do-support, ``-t-elle``,
   ``est-ce que``) stays unaligned, as in hand-made gold standards.
4. English token i and French token j are linked when they share an id.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import cache
from typing import Any

import pyrealb as rb

from attnviz.model.corpus.lexicon import Name, Noun
from attnviz.model.corpus.sentences import (
    Clause,
    NounPhrase,
    PrepPhrase,
    Pronoun,
    Sentence,
)
from attnviz.model.tokenize import Lang, tokenize

Constituent = Any  # pyrealb constituents are untyped

NEG_WORDS = {"en": {"not", "n't", "never"}, "fr": {"ne", "n'", "pas", "jamais"}}
WH_WORDS = {
    "where": ({"where"}, {"où"}),
    "when": ({"when"}, {"quand"}),
    "who": ({"who"}, {"qui"}),
    "what": ({"what"}, {"que", "qu'", "quoi"}),
}
AGENT_WORDS = {"en": {"by"}, "fr": {"par"}}
AUX_LEMMAS = {
    "en": ("be", "have", "will", "can", "must"),  # do-support stays unaligned
    "fr": ("être", "avoir", "pouvoir", "devoir", "vouloir"),
}
_PROGRESSIVE_FR = frozenset({"en", "train", "de", "d'"})  # est en train de manger
_FINAL_PUNCT = frozenset({".", "?", "!"})
_TAG = re.compile(r'<(/?)([wc])(?: i="(\d+)")?>')


class RealisationError(RuntimeError):
    """pyrealb could not word a sentence (an unknown lemma, a bad combination)."""


@dataclass(frozen=True)
class Realised:
    """One sentence in one language: its text, tokens and the ids of each token."""

    text: str
    tokens: tuple[str, ...]
    ids: tuple[frozenset[int], ...]


@dataclass(frozen=True)
class Pair:
    en: Realised
    fr: Realised
    alignment: tuple[tuple[int, int], ...]  # (english index, french index), 0-based
    phenomena: frozenset[str]


# ---------------------------------------------------------------------------- forms
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """pyrealb prints its warnings; keep them out of the progress output."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _load(lang: Lang) -> None:
    if lang == "en":
        rb.loadEn()
    else:
        rb.loadFr()


@cache
def verb_forms(lemma: str, lang: Lang) -> frozenset[str]:
    """Every inflected form pyrealb gives ``lemma``, lower-cased, split into words."""
    _load(lang)
    tenses = (
        ("p", "ps", "f", "c", "pp", "pr", "b", "b-to")
        if lang == "en"
        else ("p", "i", "f", "ps", "c", "s", "pc", "pq", "pp", "pr", "b")
    )
    forms: set[str] = set()
    with _quiet():
        for t in tenses:
            # gender only changes French participles (elle est allée)
            genders = ("m", "f") if lang == "fr" and t in ("pp", "pc", "pq") else ("m",)
            for pe in (1, 2, 3):
                for n in ("s", "p"):
                    for g in genders:
                        text = rb.V(lemma).t(t).pe(pe).n(n).g(g).realize()
                        forms.update(re.findall(r"[\w']+", text.lower()))
    forms.discard("to")
    return frozenset(forms)


@cache
def _aux_forms(lang: Lang) -> frozenset[str]:
    return frozenset().union(*(verb_forms(v, lang) for v in AUX_LEMMAS[lang]))


# ------------------------------------------------------------------------- building
class _Builder:
    """Builds the pyrealb tree of a sentence for one language, tagged or not."""

    def __init__(self, lang: Lang, tag: bool) -> None:
        self.lang = lang
        self.tag = tag

    def w(self, const: Constituent, i: int) -> Constituent:
        return const.tag("w", {"i": i}) if self.tag and i >= 0 else const

    def c(self, const: Constituent, i: int) -> Constituent:
        return const.tag("c", {"i": i}) if self.tag else const

    # noun phrases
    def noun_phrase(self, np: NounPhrase, *, negated_object: bool = False) -> Constituent:
        en = self.lang == "en"
        head = np.head
        if isinstance(head, Pronoun):
            raise RealisationError("pronouns are built by the clause")
        if isinstance(head, Name):
            const = rb.NP(self.w(rb.Q(head.en if en else head.fr), np.head_id))
            if not en:
                const = const.g(head.gender)
        else:
            parts = self._determiner(np, negated_object)
            pre = [self.w(rb.A(a.en if en else a.fr), i) for a, i in np.adjectives if en or a.pre]
            post = [] if en else [self.w(rb.A(a.fr), i) for a, i in np.adjectives if not a.pre]
            noun = self.w(rb.N(head.en if en else head.fr), np.head_id)
            rel = [self.relative(np.relative, np)] if np.relative is not None else []
            const = rb.NP(*parts, *pre, noun, *post, *rel).n(np.number)
        if np.coordinated is not None:
            other, and_id = np.coordinated
            conj = self.w(rb.C("and" if en else "et"), and_id)
            const = rb.CP(conj, const, self.noun_phrase(other, negated_object=negated_object))
        return const

    def _determiner(self, np: NounPhrase, negated_object: bool) -> list[Constituent]:
        en = self.lang == "en"
        i = np.det_id
        det = np.det
        if det == "number":
            assert np.number_word is not None
            word = np.number_word.en if en else np.number_word.fr
            return [self.w(rb.Q(word), i)]
        if not en and negated_object and det in ("a", "some", "bare"):
            return [self.w(rb.D("de"), i)]  # ne ... pas de pomme, pas d'eau
        if det == "the":
            return [self.w(rb.D("the" if en else "le"), i)]
        if det == "a":
            return [self.w(rb.D("a" if en else "un"), i)]
        if det == "this":
            return [self.w(rb.D("this" if en else "ce"), i)]
        if det in ("my", "our", "their"):
            if en:
                d = {"my": rb.D("my").pe(1), "our": rb.D("my").pe(1).ow("p")}.get(det)
                return [self.w(d if d is not None else rb.D("my").pe(3).ow("p"), i)]
            d = {"my": rb.D("mon").pe(1), "our": rb.D("notre").pe(1)}.get(det)
            return [self.w(d if d is not None else rb.D("leur").pe(3), i)]
        if det == "some":
            if en:
                return [self.w(rb.D("any" if negated_object else "some"), i)]
            return [self.w(rb.P("de"), i), self.w(rb.D("le"), i)]
        if det == "bare":
            if en:
                return []
            if any(a.pre for a, _ in np.adjectives):  # de vieux livres, not des vieux
                return [self.w(rb.D("de"), i)]
            return [self.w(rb.D("un"), i)]  # des pommes
        return []

    def pronoun(self, p: Pronoun, i: int, *, case: str) -> Constituent:
        en = self.lang == "en"
        if case == "nom":
            base = rb.Pro("I" if en else "je")
        else:
            base = rb.Pro("me") if en else rb.Pro("moi").c("acc")
        return self.w(base.pe(p.person).n(p.number).g(p.gender), i)

    def prep_phrase(self, pp: PrepPhrase) -> Constituent:
        words = (pp.en_prep if self.lang == "en" else pp.fr_prep).split()
        preps = [self.w(rb.P(word), pp.prep_id) for word in words]
        return rb.PP(*preps, self.noun_phrase(pp.np))

    # clauses
    def relative(self, clause: Clause, head: NounPhrase) -> Constituent:
        en = self.lang == "en"
        who = ("who" if head.cls == "person" else "that") if en else "qui"
        pro = rb.Pro(who)
        if not en:  # English "that" would turn into "those"; the verb agrees anyway
            pro = pro.n(head.number).g(head.gender)
        vp = self.verb_phrase(clause, agree=(head.number, head.gender))
        return self.c(rb.SP(self.w(pro, clause.relative_pronoun_id), vp), clause.verb_id)

    def verb_phrase(self, clause: Clause, agree: tuple[str, str] | None = None) -> Constituent:
        """The verb phrase; ``agree`` = (number, gender) of a relative clause's antecedent."""
        en = self.lang == "en"
        t = self._tense(clause)
        complements: list[Constituent] = []
        obj = clause.obj
        negated = clause.negation is not None and not clause.passive
        if clause.verb is None:
            assert clause.attribute is not None
            adj, adj_id = clause.attribute
            # a state in the past is imparfait in French: she was small / elle était petite
            verb = rb.V("be" if en else "être").t("i" if t == "pc" else t)
            complements.append(rb.AP(self.w(rb.A(adj.en if en else adj.fr), adj_id)))
        else:
            v = clause.verb
            lemma = v.en if en else v.fr
            if obj is not None and isinstance(obj.head, Pronoun):
                complements.append(self.pronoun(obj.head, obj.head_id, case="acc"))
            elif obj is not None:
                prep = v.en_prep if en else v.fr_prep
                # ne ... pas de pomme: only a French direct object loses its article
                direct = v.frame != "prep" or not prep
                obj_np = self.noun_phrase(obj, negated_object=negated and (en or direct))
                if v.frame == "prep" and prep:
                    preps = (self.w(rb.P(p), clause.prep_id) for p in prep.split())
                    complements.append(rb.PP(*preps, obj_np))
                else:
                    complements.append(obj_np)
            if clause.recipient is not None:
                prep = v.en_prep if en else v.fr_prep
                preps = (self.w(rb.P(p), clause.prep_id) for p in prep.split())
                complements.append(rb.PP(*preps, self.noun_phrase(clause.recipient)))
            if en and clause.modal == "want":
                verb = rb.V("want").t(t)
                complements = [rb.VP(rb.V(lemma).t("b-to"), *complements)]
            else:
                verb = rb.V(lemma).t(t)
        if en and clause.negation == "never":
            complements.insert(0, rb.Adv("never"))  # pyrealb puts it before the verb
        for pp in clause.pps:
            complements.append(self.prep_phrase(pp))
        if clause.adverb is not None and not self._clause_adverb(clause):
            adv, adv_id = clause.adverb
            complements.append(self.w(rb.Adv(adv.en if en else adv.fr), adv_id))
        if agree is not None:
            verb = verb.pe(3).n(agree[0]).g(agree[1])
        if en and clause.negation == "never":
            return rb.VP(complements[0], verb, *complements[1:])
        return rb.VP(verb, *complements)

    def _clause_adverb(self, clause: Clause) -> bool:
        """English time adverbs hang from the clause: in the verb phrase pyrealb puts them
        after an auxiliary ("will not tomorrow find"), at the clause's end they stay last."""
        return self.lang == "en" and clause.adverb is not None and clause.adverb[0].kind == "time"

    def _tense(self, clause: Clause) -> str:
        en = self.lang == "en"
        return {
            "present": "p",
            "present_prog": "p",
            "past": "ps" if en else "pc",
            "past_prog": "ps" if en else "i",
            "future": "f",
        }[clause.tense]

    def _typ(self, clause: Clause) -> dict[str, object]:
        en = self.lang == "en"
        typ: dict[str, object] = {}
        if clause.negation == "not" or (clause.negation == "never" and not en):
            typ["neg"] = True if clause.negation == "not" else "jamais"
        if clause.question is not None:
            typ["int"] = {
                "yes_no": "yon",
                "where": "whe",
                "when": "whn",
                "who": "wos",
                "what": "wad",
            }[clause.question]
        if clause.passive:
            typ["pas"] = True
        if clause.tense == "present_prog" or (clause.tense == "past_prog" and en):
            typ["prog"] = True
        if clause.modal == "can":
            typ["mod"] = "poss"
        elif clause.modal == "must":
            typ["mod"] = "obli"
        elif clause.modal == "want" and not en:
            typ["mod"] = "will"
        return typ

    def clause(self, clause: Clause) -> Constituent:
        assert clause.subject is not None
        subj = clause.subject
        if isinstance(subj.head, Pronoun):
            subject = self.pronoun(subj.head, subj.head_id, case="nom")
        else:
            subject = self.noun_phrase(subj)
        parts = [subject, self.verb_phrase(clause)]
        if clause.adverb is not None and self._clause_adverb(clause):
            adv, adv_id = clause.adverb
            parts.append(self.w(rb.Adv(adv.en), adv_id))
        s = rb.S(*parts)
        typ = self._typ(clause)
        if typ:
            s = s.typ(typ)
        return self.c(s, clause.verb_id)

    def sentence(self, sentence: Sentence) -> Constituent:
        clauses = [self.clause(c) for c in sentence.clauses]
        if sentence.conjunction is None:
            return clauses[0]
        word, i = sentence.conjunction
        fr = {"and": "et", "but": "mais"}[word]
        return rb.S(rb.CP(self.w(rb.C(word if self.lang == "en" else fr), i), *clauses))


# ---------------------------------------------------------------------- realising
_VOWEL = "aeiouyàâäéèêëîïôöûüœ"


def _fix_french(text: str) -> str:
    """Mend elisions pyrealb misses: "que est-ce", "que a-t-elle", "en train de attaquer"."""
    text = re.sub(rf"\b([Qq])ue (?=[{_VOWEL}])", r"\1u'", text)
    return re.sub(rf"\ben train de (?=[{_VOWEL}])", "en train d'", text, flags=re.I)


def _labels(tagged: str) -> tuple[str, list[int], list[int]]:
    """Strip tags; return the text and, per character, its word id and clause id."""
    text: list[str] = []
    words: list[int] = []
    clauses: list[int] = []
    stack: list[tuple[str, int]] = []
    pos = 0
    for m in _TAG.finditer(tagged):
        chunk = tagged[pos : m.start()]
        w = next((i for k, i in reversed(stack) if k == "w"), -1)
        c = next((i for k, i in reversed(stack) if k == "c"), -1)
        text.append(chunk)
        words.extend([w] * len(chunk))
        clauses.extend([c] * len(chunk))
        closing, kind, ident = m.groups()
        if closing:
            for j in range(len(stack) - 1, -1, -1):
                if stack[j][0] == kind:
                    del stack[j]
                    break
        else:
            stack.append((kind, int(ident)))
        pos = m.end()
    tail = tagged[pos:]
    text.append(tail)
    words.extend([-1] * len(tail))
    clauses.extend([-1] * len(tail))
    return "".join(text), words, clauses


def _project(
    raw: str, labels: tuple[list[int], ...], final: str
) -> tuple[list[frozenset[int]], ...]:
    """Carry per-character labels of ``raw`` over to ``final`` through one diff."""
    outs: tuple[list[frozenset[int]], ...] = tuple([frozenset()] * len(final) for _ in labels)
    sm = SequenceMatcher(None, raw.lower(), final.lower(), autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        for out, raw_labels in zip(outs, labels, strict=True):
            if op == "equal":
                for k in range(i2 - i1):
                    lab = raw_labels[i1 + k]
                    out[j1 + k] = frozenset((lab,)) if lab >= 0 else frozenset()
            elif op == "replace":
                labs = frozenset(raw_labels[k] for k in range(i1, i2) if raw_labels[k] >= 0)
                for k in range(j1, j2):
                    out[k] = labs
    return outs


def _token_spans(text: str, tokens: list[str]) -> list[tuple[int, int]]:
    spans = []
    pos = 0
    for tok in tokens:
        start = text.find(tok, pos)
        if start < 0:  # the tokenizer changed the token; fall back on the cursor
            start = pos
        spans.append((start, start + len(tok)))
        pos = start + len(tok)
    return spans


def _clause_index(sentence: Sentence) -> dict[int, Clause]:
    index: dict[int, Clause] = {}
    todo = list(sentence.clauses)
    while todo:
        c = todo.pop()
        index[c.verb_id] = c
        nps = [np for np in (c.subject, c.obj, c.recipient) if np is not None]
        nps += [pp.np for pp in c.pps]
        while nps:
            np = nps.pop()
            if np.relative is not None:
                todo.append(np.relative)
            if np.coordinated is not None:
                nps.append(np.coordinated[0])
    return index


def realise_one(sentence: Sentence, lang: Lang) -> Realised:
    """Word ``sentence`` in ``lang``; each token gets the ids of the words it renders."""
    _load(lang)
    try:
        with _quiet():
            tagged = _Builder(lang, tag=True).sentence(sentence).realize()
            final = _Builder(lang, tag=False).sentence(sentence).realize().strip()
    except Exception as e:  # pyrealb raises bare exceptions on bad input
        raise RealisationError(f"pyrealb failed on a {lang} sentence: {e}") from e
    if "[[" in final:
        raise RealisationError(f"pyrealb does not know a word in: {final}")
    if lang == "fr":
        final = _fix_french(final)
    raw, word_labels, clause_labels = _labels(tagged)
    word_chars, clause_chars = _project(raw, (word_labels, clause_labels), final)
    tokens = tokenize(final, lang)
    clauses = _clause_index(sentence)
    ids: list[frozenset[int]] = []
    for tok, (a, b) in zip(tokens, _token_spans(final, tokens), strict=True):
        tok_ids = frozenset().union(*word_chars[a:b]) if b > a else frozenset()
        if not tok_ids:
            clause_ids = frozenset().union(*clause_chars[a:b]) if b > a else frozenset()
            clause = clauses.get(max(clause_ids)) if clause_ids else None
            if clause is not None:
                tok_ids = _function_word_id(tok.lower(), clause, lang)
        ids.append(tok_ids)
    return Realised(final, tuple(tokens), tuple(ids))


def _function_word_id(tok: str, clause: Clause, lang: Lang) -> frozenset[int]:
    side = 0 if lang == "en" else 1
    if tok in NEG_WORDS[lang] and clause.negation is not None:
        return frozenset((clause.neg_id,))
    if clause.question in WH_WORDS and tok in WH_WORDS[clause.question][side]:
        return frozenset((clause.wh_id,))
    if clause.passive and tok in AGENT_WORDS[lang]:
        return frozenset((clause.agent_id,))
    in_group = (
        tok in _aux_forms(lang)
        or (
            clause.verb is not None
            and tok in verb_forms(clause.verb.en if lang == "en" else clause.verb.fr, lang)
        )
        or (lang == "fr" and clause.tense == "present_prog" and tok in _PROGRESSIVE_FR)
        or (
            lang == "en"
            and clause.modal == "want"
            and (tok == "to" or tok in verb_forms("want", "en"))
        )
    )
    return frozenset((clause.verb_id,)) if in_group else frozenset()


def realise(sentence: Sentence) -> Pair:
    """Word ``sentence`` in English and French and align the two."""
    en = realise_one(sentence, "en")
    fr = realise_one(sentence, "fr")
    links = [(i, j) for i, a in enumerate(en.ids) if a for j, b in enumerate(fr.ids) if a & b]
    # the final punctuation marks translate each other (. <-> ., ? <-> ?)
    if en.tokens[-1] in _FINAL_PUNCT and fr.tokens[-1] in _FINAL_PUNCT:
        links.append((len(en.tokens) - 1, len(fr.tokens) - 1))
    return Pair(en, fr, tuple(links), sentence.phenomena)


__all__ = ["Noun", "Pair", "RealisationError", "Realised", "realise", "realise_one"]
