"""Example sentences of the translate page: one per phenomenon of the corpus.

Chosen once from the sample corpus (``data/sample/*.tsv``, generated with ``--pairs 2000
--seed 1``): its test split where it has a clear short sentence for the phenomenon, else
its valid or train split. ``reference`` is the corpus's French; ``phenomena`` its fourth
column.
"""

from __future__ import annotations

from typing import NamedTuple


class Example(NamedTuple):
    label: str  # the phenomenon, as the page names it
    text: str  # English source
    reference: str  # the corpus's French
    split: str  # which file of data/sample it comes from
    phenomena: str  # the corpus's phenomena column (comma list)


EXAMPLES: tuple[Example, ...] = (
    Example(
        "Adjective after the noun",
        "The deaf poet borrowed this bed from the woman.",
        "Le poète sourd a emprunté ce lit à la femme.",
        "train",
        "adj_noun_reordering,tense_passe_compose",
    ),
    Example(
        "Two adjectives",
        "The new strange butchers sewed a belt.",
        "Les nouveaux bouchers étranges ont cousu une ceinture.",
        "test",
        "adj_noun_reordering,plural_agreement,tense_passe_compose,two_adjectives",
    ),
    Example(
        "Object pronoun",
        "The lady will hit them.",
        "La dame les frappera.",
        "train",
        "object_pronoun,tense_future",
    ),
    Example(
        "Negation ne … pas",
        "The uncle does not talk to the waiter.",
        "L'oncle ne parle pas au serveur.",
        "train",
        "negation_pas,tense_present",
    ),
    Example(
        "Negation ne … jamais",
        "The musician never marries the fisherman.",
        "Le musicien n'épouse jamais le pêcheur.",
        "train",
        "negation_jamais,tense_present",
    ),
    Example(
        "Yes/no question",
        "Did the frog hear this nephew?",
        "La grenouille a-t-elle entendu ce neveu?",
        "train",
        "tense_passe_compose,yes_no_question",
    ),
    Example(
        "Wh-question",
        "Where will my polite princess sign the recipe?",
        "Où ma princesse polie signera-t-elle la recette?",
        "test",
        "adj_noun_reordering,gender_agreement,possessive,tense_future,wh_question",
    ),
    Example(
        "Passive",
        "The pretty village is visited by the priest.",
        "Le joli village est visité par le prêtre.",
        "train",
        "passive,tense_present",
    ),
    Example(
        "Progressive (en train de)",
        "A princess is asking for the bags.",
        "Une princesse est en train de demander les sacs.",
        "train",
        "progressive,tense_present",
    ),
    Example(
        "Modal verb",
        "The postman can answer these aunts.",
        "Le facteur peut répondre à ces tantes.",
        "train",
        "modal,tense_present",
    ),
    Example(
        "Passé composé",
        "An uncle drew the new subway.",
        "Un oncle a dessiné le nouveau métro.",
        "train",
        "tense_passe_compose",
    ),
    Example(
        "Imparfait",
        "A traveller was drinking some wine.",
        "Un voyageur buvait du vin.",
        "train",
        "progressive,tense_imparfait",
    ),
    Example(
        "Future",
        "The baker will print a notebook.",
        "Le boulanger imprimera un cahier.",
        "train",
        "tense_future",
    ),
    Example(
        "Relative clause",
        "The fisherman who snores talks to these soldiers.",
        "Le pêcheur qui ronfle parle à ces soldats.",
        "train",
        "relative_clause,tense_present",
    ),
    Example(
        "Coordination",
        "This tired rabbit bled and I live.",
        "Ce lapin fatigué a saigné et je vis.",
        "test",
        "adj_noun_reordering,coordination,tense_passe_compose,tense_present",
    ),
    Example(
        "Possessive",
        "This monkey searches for my driver in the street before the visit.",
        "Ce singe cherche mon chauffeur dans la rue avant la visite.",
        "test",
        "possessive,pp_place,pp_time,tense_present",
    ),
    Example(
        "Numbers",
        "The doctor copies four books in the taxi.",
        "Le médecin copie quatre livres dans le taxi.",
        "train",
        "number,pp_place,tense_present",
    ),
    Example(
        "A long sentence",
        "This brave hunter who cleans the ship refuses these choices freely and the Greek "
        "teacher is not recommending any good Greek juice to these women during the wedding.",
        "Ce chasseur courageux qui nettoie le navire refuse ces choix librement et le professeur "
        "grec n'est pas en train de recommander de bon jus grec à ces femmes pendant le mariage.",
        "test",
        "adj_noun_reordering,coordination,negation_pas,pp_time,progressive,relative_clause,tense_present,two_adjectives",
    ),
)
