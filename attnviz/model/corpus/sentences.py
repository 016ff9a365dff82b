"""Abstract sentences: what a pair says, before it is worded in English or French.

A :class:`Sentence` is sampled once from the lexicon and then realised in both languages
(``realise.py``). Every word that has a counterpart carries an integer id; the same id in
the English and the French realisation is a gold alignment link. Selectional restrictions
come from the lexicon (a verb names the classes of its subject and object), so people eat
food and read documents, not the reverse.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from itertools import count
from typing import Literal

from attnviz.model.corpus.lexicon import (
    Adjective,
    Adverb,
    Lexicon,
    Name,
    Noun,
    Number,
    Preposition,
    Verb,
)

Tense = Literal["present", "past", "past_prog", "present_prog", "future"]
Question = Literal["yes_no", "where", "when", "who", "what"]
Det = Literal["the", "a", "this", "my", "our", "their", "number", "some", "bare", "none"]

# (person, number, gender) of personal pronouns; "you" and "it" are left out on purpose:
# each has two French translations depending on context a sentence cannot show.
PERSONS: tuple[tuple[int, str, str], ...] = (
    (1, "s", "m"),
    (3, "s", "m"),
    (3, "s", "f"),
    (1, "p", "m"),
    (3, "p", "m"),
)


@dataclass(frozen=True)
class Pronoun:
    person: int
    number: str
    gender: str


@dataclass(frozen=True)
class NounPhrase:
    head: Noun | Name | Pronoun
    head_id: int
    number: str = "s"  # "s" | "p"
    det: Det = "the"
    det_id: int = -1
    number_word: Number | None = None
    adjectives: tuple[tuple[Adjective, int], ...] = ()
    relative: Clause | None = None
    coordinated: tuple[NounPhrase, int] | None = None  # (the other NP, id of "and")

    @property
    def gender(self) -> str:
        return self.head.gender

    @property
    def cls(self) -> str:
        if isinstance(self.head, Noun):
            return self.head.cls
        return "person" if isinstance(self.head, Pronoun) or self.head.kind == "person" else "place"


@dataclass(frozen=True)
class PrepPhrase:
    en_prep: str
    fr_prep: str
    prep_id: int
    np: NounPhrase
    kind: str  # "place" | "time" | "city"


@dataclass(frozen=True)
class Clause:
    subject: NounPhrase | None  # None in a relative clause (the relative pronoun)
    verb: Verb | None  # None: the copula (be / être) with an adjective attribute
    verb_id: int
    neg_id: int
    wh_id: int
    agent_id: int
    obj: NounPhrase | None = None
    recipient: NounPhrase | None = None
    attribute: tuple[Adjective, int] | None = None
    pps: tuple[PrepPhrase, ...] = ()
    adverb: tuple[Adverb, int] | None = None
    tense: Tense = "present"
    modal: str | None = None  # "can" | "must" | "want"
    negation: str | None = None  # "not" | "never"
    question: Question | None = None
    passive: bool = False
    relative_pronoun_id: int = -1  # for a relative clause: id of who/that <-> qui
    prep_id: int = -1  # the preposition of a prepositional object or of the recipient


@dataclass(frozen=True)
class Sentence:
    clauses: tuple[Clause, ...]
    conjunction: tuple[str, int] | None = None  # ("and" | "but", id)
    phenomena: frozenset[str] = frozenset()


PHENOMENA = (
    "adj_noun_reordering",
    "two_adjectives",
    "object_pronoun",
    "negation_pas",
    "negation_jamais",
    "yes_no_question",
    "wh_question",
    "passive",
    "progressive",
    "modal",
    "tense_present",
    "tense_passe_compose",
    "tense_imparfait",
    "tense_future",
    "plural_agreement",
    "gender_agreement",
    "pp_place",
    "pp_time",
    "coordination",
    "possessive",
    "relative_clause",
    "number",
    "proper_name",
)


class Sampler:
    """Draws abstract sentences with a given random generator.

    The probabilities are chosen so that every phenomenon of :data:`PHENOMENA` is in at
    least 3% of the pairs and lengths reach from 3 to over 30 words.
    """

    def __init__(self, lexicon: Lexicon, rng: random.Random) -> None:
        self.lex = lexicon
        self.rng = rng
        self._ids = count()
        self._verbs_by_frame = {
            f: tuple(v for v in lexicon.verbs if v.frame == f)
            for f in ("intr", "tr", "ditr", "prep")
        }
        self._place_preps = tuple(p for p in lexicon.prepositions if p.kind == "place")
        self._time_preps = tuple(p for p in lexicon.prepositions if p.kind == "time")
        self._people = tuple(n for n in lexicon.names if n.kind == "person")
        self._cities = tuple(n for n in lexicon.names if n.kind == "city")
        self._places = tuple(n for n in lexicon.nouns if n.loc is not None)

    def new_id(self) -> int:
        return next(self._ids)

    # ---- noun phrases -------------------------------------------------------------
    def noun_phrase(
        self,
        classes: frozenset[str],
        *,
        role: str,
        allow_pronoun: bool = True,
        allow_relative: bool = True,
        allow_coord: bool = False,
        allow_name: bool = True,
    ) -> NounPhrase:
        r = self.rng.random()
        person_ok = "person" in classes or "*" in classes
        if person_ok and allow_pronoun and role == "subject" and r < 0.18:
            pe, n, g = self.rng.choice(PERSONS)
            return NounPhrase(Pronoun(pe, n, g), self.new_id(), number=n, det="none")
        if person_ok and allow_name and r < 0.26:
            name = self.rng.choice(self._people)
            return NounPhrase(name, self.new_id(), det="none")
        nouns = self.lex.nouns_of(classes)
        noun = self.rng.choice(nouns)
        np = self._noun_np(noun, role)
        if allow_relative and noun.cls in {"person", "animal"} and self.rng.random() < 0.12:
            np = replace(np, relative=self.relative_clause(np))
        if allow_coord and self.rng.random() < 0.08:
            # same French gender: pyrealb gives a coordination its first noun's gender
            # ("la baleine et le chat peuvent-elles"), right only when both agree
            same = [n for n in nouns if n.gender == noun.gender]
            other = self._noun_np(self.rng.choice(same), role)
            np = replace(np, coordinated=(other, self.new_id()))
        return np

    def _noun_np(self, noun: Noun, role: str) -> NounPhrase:
        rng = self.rng
        number_word = None
        if noun.countable:
            plural = rng.random() < 0.3
            r = rng.random()
            if plural and r < 0.22:
                det: Det = "number"
                number_word = rng.choice(self.lex.numbers)
            elif plural and role == "object" and r < 0.4:
                det = "bare"
            elif r < 0.5:
                det = "the"
            elif r < 0.68 and not plural:
                det = "a"
            elif r < 0.78:
                det = "this"
            else:
                det = rng.choice(("my", "our", "their"))
            number = "p" if plural or det == "number" else "s"
        else:
            number = "s"
            r = rng.random()
            if role == "object" and r < 0.45:
                det = "some"
            elif r < 0.85:
                det = "the"
            else:
                det = rng.choice(("my", "our", "their"))
        adjectives = self._adjectives(noun)
        return NounPhrase(
            noun,
            self.new_id(),
            number=number,
            det=det,
            det_id=self.new_id(),
            number_word=number_word,
            adjectives=adjectives,
        )

    def _adjectives(self, noun: Noun) -> tuple[tuple[Adjective, int], ...]:
        r = self.rng.random()
        k = 0 if r < 0.55 else 1 if r < 0.87 else 2
        if k == 0:
            return ()
        fitting = [a for a in self.lex.adjectives if noun.cls in a.classes or "*" in a.classes]
        if not fitting:
            return ()
        first = self.rng.choice(fitting)
        if k == 1:
            return ((first, self.new_id()),)
        # Two adjectives: one before and one after the French noun, or two before, so
        # both languages have a natural order (a big red car / une grande voiture rouge).
        pool = [a for a in fitting if a.en != first.en and (a.pre or first.pre)]
        if not pool:
            return ((first, self.new_id()),)
        second = self.rng.choice(pool)
        pair = sorted((first, second), key=lambda a: not a.pre)  # French-pre first
        return tuple((a, self.new_id()) for a in pair)

    # ---- clauses ------------------------------------------------------------------
    def relative_clause(self, head: NounPhrase) -> Clause:
        verbs = [
            v
            for v in self.lex.verbs
            if v.frame in ("intr", "tr") and (head.cls in v.subj or "*" in v.subj)
        ]
        verb = self.rng.choice(verbs)
        obj = None
        if verb.frame == "tr":
            obj = self.noun_phrase(verb.obj, role="object", allow_relative=False, allow_name=False)
        return Clause(
            subject=None,
            verb=verb,
            verb_id=self.new_id(),
            neg_id=self.new_id(),
            wh_id=self.new_id(),
            agent_id=self.new_id(),
            obj=obj,
            tense=self.rng.choice(("present", "present", "past")),
            relative_pronoun_id=self.new_id(),
        )

    def clause(self, *, allow_question: bool = True) -> Clause:
        rng = self.rng
        verb_id, neg_id, wh_id, agent_id, prep_id = (self.new_id() for _ in range(5))
        tense: Tense = rng.choices(
            ("present", "past", "past_prog", "present_prog", "future"), (38, 24, 11, 11, 16)
        )[0]
        negation = None
        if rng.random() < 0.2:
            negation = "never" if rng.random() < 0.55 else "not"
        question: Question | None = None
        if allow_question and rng.random() < 0.24:
            question = rng.choices(
                ("yes_no", "where", "when", "who", "what"), (45, 14, 14, 14, 13)
            )[0]

        if rng.random() < 0.14:  # copula: the house is big / la maison est grande
            adj = rng.choice(self.lex.adjectives)
            subj = self.noun_phrase(adj.classes, role="subject", allow_coord=True)
            subj = replace(subj, adjectives=tuple(a for a in subj.adjectives if a[0] != adj))
            if question in ("who", "what", "where", "when"):
                question = "yes_no"
            if tense == "present_prog" or tense == "past_prog":
                tense = "present" if tense == "present_prog" else "past"
            return Clause(
                subject=subj,
                verb=None,
                attribute=(adj, self.new_id()),
                tense=tense,
                negation=negation if negation == "not" else None,
                question=question,
                verb_id=verb_id,
                neg_id=neg_id,
                wh_id=wh_id,
                agent_id=agent_id,
            )

        frame = rng.choices(("intr", "tr", "ditr", "prep"), (18, 50, 12, 20))[0]
        verb = rng.choice(self._verbs_by_frame[frame])
        subj = self.noun_phrase(verb.subj, role="subject", allow_coord=True)
        obj = recipient = None
        modal = None
        passive = False
        if rng.random() < 0.14 and tense in ("present", "future"):
            modal = rng.choice(("can", "must", "want"))
            tense = "present"
            if negation == "never":
                negation = "not"
        if frame in ("tr", "prep", "ditr"):
            pronoun_ok = (
                frame == "tr"
                and ("person" in verb.obj or "*" in verb.obj)
                and modal is None
                and question is None
                and tense in ("present", "future", "past_prog", "present_prog")
            )
            if pronoun_ok and rng.random() < 0.35:
                # a pronoun subject: not its own person (no "I see us"; "he sees them" is
                # someone else); a noun subject takes any ("the woman sees her")
                sp = subj.head
                choices = [
                    p
                    for p in PERSONS
                    if not isinstance(sp, Pronoun)
                    or p[0] != sp.person
                    or (p[0] == 3 and p[1] != sp.number)
                ]
                pe, n, g = rng.choice(choices)
                obj = NounPhrase(Pronoun(pe, n, g), self.new_id(), number=n, det="none")
            else:
                obj = self.noun_phrase(verb.obj, role="object", allow_pronoun=False)
        if frame == "ditr":
            recipient = self.noun_phrase(
                frozenset({"person"}), role="object", allow_pronoun=False, allow_relative=False
            )
        if (
            frame == "tr"
            and obj is not None
            and not isinstance(obj.head, Pronoun)
            and modal is None
            and tense in ("present", "past", "future")
            and negation != "never"
            and subj.coordinated is None  # pyrealb drops a coordinated agent's "by"
            and rng.random() < 0.16
        ):
            passive = True
        # "who" replaces the subject, which must then be one person (not "Who are eating?")
        if question == "who" and (
            subj.cls != "person"
            or passive
            or subj.number == "p"
            or subj.coordinated is not None
            or isinstance(subj.head, Pronoun)
        ):
            question = "yes_no"
        # English "never" goes before a simple verb only (never ate; not "never will eat",
        # "never is eating" or "Never does she...?")
        if negation == "never" and (
            tense not in ("present", "past") or question is not None or modal is not None
        ):
            negation = "not"
        if question == "what" and (
            obj is None
            or frame != "tr"
            or passive
            or obj.cls == "person"
            or isinstance(obj.head, Pronoun)
        ):
            question = "yes_no"

        # pyrealb drops the prepositional phrases of a French where/when question (it takes
        # them for the questioned place or time), so those questions have none
        if question == "what" and modal == "want":  # "want to" is built by hand in English:
            question = "yes_no"  # pyrealb cannot remove its object
        pps: list[PrepPhrase] = []
        adverb = None
        mobile = subj.cls in ("person", "animal")
        wh_place_time = question in ("where", "when")
        if mobile and not wh_place_time and rng.random() < 0.24:
            pps.append(self._place_pp())
        if not wh_place_time and rng.random() < 0.12:
            pps.append(self._time_pp())
        if rng.random() < 0.14:
            adverb = self._adverb(tense)
        return Clause(
            subject=subj,
            verb=verb,
            obj=obj,
            recipient=recipient,
            pps=tuple(pps),
            adverb=adverb,
            tense=tense,
            modal=modal,
            negation=negation,
            question=question,
            passive=passive,
            verb_id=verb_id,
            neg_id=neg_id,
            wh_id=wh_id,
            agent_id=agent_id,
            prep_id=prep_id,
        )

    def _place_pp(self) -> PrepPhrase:
        r = self.rng.random()
        if r < 0.15 and self._cities:
            city = self.rng.choice(self._cities)
            np = NounPhrase(city, self.new_id(), det="none")
            return PrepPhrase("in", "à", self.new_id(), np, "city")
        if r < 0.6:
            noun = self.rng.choice(self._places)
            assert noun.loc is not None
            np = NounPhrase(noun, self.new_id(), det="the", det_id=self.new_id())
            return PrepPhrase(noun.loc[0], noun.loc[1], self.new_id(), np, "place")
        prep: Preposition = self.rng.choice(self._place_preps)
        noun = self.rng.choice(self.lex.nouns_of(prep.classes))
        np = NounPhrase(noun, self.new_id(), det="the", det_id=self.new_id())
        return PrepPhrase(prep.en, prep.fr, self.new_id(), np, "place")

    def _time_pp(self) -> PrepPhrase:
        prep = self.rng.choice(self._time_preps)
        noun = self.rng.choice(self.lex.nouns_of(prep.classes))
        np = NounPhrase(noun, self.new_id(), det="the", det_id=self.new_id())
        return PrepPhrase(prep.en, prep.fr, self.new_id(), np, "time")

    def _adverb(self, tense: Tense) -> tuple[Adverb, int] | None:
        tense_class = {
            "present": "present",
            "present_prog": "present",
            "past": "past",
            "past_prog": "past",
            "future": "future",
        }[tense]
        fitting = [a for a in self.lex.adverbs if a.tense in ("*", tense_class)]
        if not fitting:
            return None
        return (self.rng.choice(fitting), self.new_id())

    def sentence(self) -> Sentence:
        if self.rng.random() < 0.12:
            first = self.clause(allow_question=False)
            second = self.clause(allow_question=False)
            conj = ("and", self.new_id()) if self.rng.random() < 0.7 else ("but", self.new_id())
            s = Sentence((first, second), conj)
        else:
            s = Sentence((self.clause(),))
        return Sentence(s.clauses, s.conjunction, phenomena_of(s))


def _nps_of(clause: Clause) -> list[NounPhrase]:
    out: list[NounPhrase] = []
    todo = [np for np in (clause.subject, clause.obj, clause.recipient) if np is not None] + [
        pp.np for pp in clause.pps
    ]
    while todo:
        np = todo.pop()
        out.append(np)
        if np.coordinated:
            todo.append(np.coordinated[0])
        if np.relative:
            todo.extend(n for n in (np.relative.obj,) if n is not None)
    return out


def _relatives(clause: Clause) -> list[Clause]:
    return [np.relative for np in _nps_of(clause) if np.relative is not None]


def phenomena_of(sentence: Sentence) -> frozenset[str]:
    """The linguistic phenomena a sentence shows (names from :data:`PHENOMENA`)."""
    found: set[str] = set()
    if sentence.conjunction:
        found.add("coordination")
    for clause in sentence.clauses:
        nps = _nps_of(clause)
        if _relatives(clause):
            found.add("relative_clause")
        for np in nps:
            if any(not a.pre for a, _ in np.adjectives):
                found.add("adj_noun_reordering")
            if len(np.adjectives) == 2:
                found.add("two_adjectives")
            if np.det in ("my", "our", "their"):
                found.add("possessive")
            if np.det == "number":
                found.add("number")
            if np.coordinated:
                found.add("coordination")
            if isinstance(np.head, Name):
                found.add("proper_name")
            if np.number == "p" and np.adjectives:
                found.add("plural_agreement")
            if np.gender == "f" and np.adjectives and not isinstance(np.head, Pronoun):
                found.add("gender_agreement")
        if clause.obj is not None and isinstance(clause.obj.head, Pronoun):
            found.add("object_pronoun")
        if clause.negation == "not":
            found.add("negation_pas")
        elif clause.negation == "never":
            found.add("negation_jamais")
        if clause.question == "yes_no":
            found.add("yes_no_question")
        elif clause.question is not None:
            found.add("wh_question")
        if clause.passive:
            found.add("passive")
            if clause.subject is not None and clause.obj is not None and clause.obj.gender == "f":
                found.add("gender_agreement")
        if clause.tense in ("present_prog", "past_prog"):
            found.add("progressive")
        if clause.modal:
            found.add("modal")
        copula_past = clause.verb is None and clause.tense == "past"  # French imparfait
        found.add(
            "tense_imparfait"
            if copula_past
            else {
                "present": "tense_present",
                "present_prog": "tense_present",
                "past": "tense_passe_compose",
                "past_prog": "tense_imparfait",
                "future": "tense_future",
            }[clause.tense]
        )
        subj = clause.subject
        if clause.attribute is not None and subj is not None:
            if subj.gender == "f":
                found.add("gender_agreement")
            if subj.number == "p" or subj.coordinated:
                found.add("plural_agreement")
        if subj is not None and (subj.number == "p" or subj.coordinated):
            found.add("plural_agreement")
        for pp in clause.pps:
            found.add("pp_time" if pp.kind == "time" else "pp_place")
    return frozenset(found)
