"""Hand-checked gold alignments: sentences built by hand, links read and checked by eye."""

from itertools import count

import pytest

from attnviz.model.corpus.lexicon import default_lexicon
from attnviz.model.corpus.realise import realise
from attnviz.model.corpus.sentences import (
    Clause,
    NounPhrase,
    PrepPhrase,
    Pronoun,
    Sentence,
    phenomena_of,
)

LEX = default_lexicon()
ids = count(100)


def noun(en: str):  # type: ignore[no-untyped-def]
    return next(n for n in LEX.nouns if n.en == en)


def verb(en: str):  # type: ignore[no-untyped-def]
    return next(v for v in LEX.verbs if v.en == en)


def adj(en: str):  # type: ignore[no-untyped-def]
    return next(a for a in LEX.adjectives if a.en == en)


def np(en: str, det: str = "the", number: str = "s", **kw) -> NounPhrase:  # type: ignore[no-untyped-def]
    return NounPhrase(noun(en), next(ids), number=number, det=det, det_id=next(ids), **kw)  # type: ignore[arg-type]


def clause(**kw) -> Clause:  # type: ignore[no-untyped-def]
    base = {k: next(ids) for k in ("verb_id", "neg_id", "wh_id", "agent_id", "prep_id")}
    return Clause(**{**base, **kw})


def links(sentence: Sentence) -> tuple[str, str, set[tuple[str, str]]]:
    s = Sentence(sentence.clauses, sentence.conjunction, phenomena_of(sentence))
    pair = realise(s)
    en, fr = pair.en.tokens, pair.fr.tokens
    for i, j in pair.alignment:
        assert 0 <= i < len(en) and 0 <= j < len(fr)
    return pair.en.text, pair.fr.text, {(en[i], fr[j]) for i, j in pair.alignment}


def test_relative_clause_plural_adjective_partitive() -> None:
    rel = clause(subject=None, verb=verb("sleep"), relative_pronoun_id=next(ids))
    subj = np("woman", number="p", adjectives=((adj("small"), next(ids)),), relative=rel)
    en, fr, got = links(
        Sentence((clause(subject=subj, verb=verb("eat"), obj=np("bread", "some")),))
    )
    assert en == "The small women who sleep eat some bread."
    assert fr == "Les petites femmes qui dorment mangent du pain."
    assert got == {
        ("The", "Les"), ("small", "petites"), ("women", "femmes"), ("who", "qui"),
        ("sleep", "dorment"), ("eat", "mangent"), ("some", "du"), ("bread", "pain"), (".", "."),
    }  # fmt: skip


def test_negation_and_object_pronoun() -> None:
    me = NounPhrase(Pronoun(1, "s", "m"), next(ids), det="none")
    her = NounPhrase(Pronoun(3, "s", "f"), next(ids), det="none")
    en, fr, got = links(Sentence((clause(subject=me, verb=verb("see"), obj=her, negation="not"),)))
    assert (en, fr) == ("I do not see her.", "Je ne la vois pas.")
    # do-support has no counterpart and stays unaligned
    assert got == {("I", "Je"), ("not", "ne"), ("not", "pas"), ("see", "vois"), ("her", "la"),
                   (".", ".")}  # fmt: skip


def test_wh_question_with_inversion() -> None:
    en, fr, got = links(
        Sentence((clause(subject=np("cat"), verb=verb("sleep"), question="where"),))
    )
    assert (en, fr) == ("Where does the cat sleep?", "Où le chat dort-il?")
    assert got == {("Where", "Où"), ("the", "le"), ("cat", "chat"), ("sleep", "dort"), ("?", "?")}


def test_contraction_gets_both_words() -> None:
    at_market = PrepPhrase("at", "à", next(ids), np("market"), "place")
    en, fr, got = links(
        Sentence((clause(subject=np("cat"), verb=verb("sleep"), pps=(at_market,)),))
    )
    assert (en, fr) == ("The cat sleeps at the market.", "Le chat dort au marché.")
    assert ("at", "au") in got and ("the", "au") in got and ("market", "marché") in got


def test_prepositional_object_and_elision() -> None:
    en, fr, got = links(Sentence((clause(subject=np("man"), verb=verb("talk"), obj=np("child")),)))
    assert (en, fr) == ("The man talks to the child.", "L'homme parle à l'enfant.")
    assert got == {("The", "L'"), ("man", "homme"), ("talks", "parle"), ("to", "à"),
                   ("the", "l'"), ("child", "enfant"), (".", ".")}  # fmt: skip


def test_passive_agreement_and_agent() -> None:
    c = clause(subject=np("woman"), verb=verb("eat"), obj=np("apple"), passive=True, tense="past")
    en, fr, got = links(Sentence((c,)))
    assert (en, fr) == ("The apple was eaten by the woman.", "La pomme a été mangée par la femme.")
    verb_links = {(e, f) for e, f in got if e in ("was", "eaten")}
    assert verb_links == {(e, f) for e in ("was", "eaten") for f in ("a", "été", "mangée")}
    assert {("by", "par"), ("apple", "pomme"), ("woman", "femme")} <= got


def test_adjective_reordering_two_adjectives() -> None:
    car = np("car", det="a", adjectives=((adj("big"), next(ids)), (adj("red"), next(ids))))
    en, fr, got = links(Sentence((clause(subject=np("man"), verb=verb("see"), obj=car),)))
    assert en == "The man sees a big red car."
    assert fr == "L'homme voit une grande voiture rouge."
    assert {("big", "grande"), ("red", "rouge"), ("car", "voiture"), ("a", "une")} <= got


@pytest.mark.parametrize("question", ["yes_no", "who", "when"])
def test_questions_realise(question: str) -> None:
    c = clause(subject=np("woman"), verb=verb("read"), obj=np("book"), question=question)
    en, fr, got = links(Sentence((c,)))
    assert en.endswith("?") and fr.endswith("?")
    assert ("book", "livre") in got


def test_time_adverb_stays_last_after_an_auxiliary() -> None:
    tomorrow = next(a for a in LEX.adverbs if a.en == "tomorrow")
    them = NounPhrase(Pronoun(3, "p", "m"), next(ids), det="none")
    c = clause(subject=np("cat"), verb=verb("see"), obj=them, negation="not", tense="future",
               adverb=(tomorrow, next(ids)))  # fmt: skip
    en, fr, got = links(Sentence((c,)))
    assert en == "The cat will not see them tomorrow."
    assert fr == "Le chat ne les verra pas demain."
    assert ("tomorrow", "demain") in got and ("them", "les") in got
