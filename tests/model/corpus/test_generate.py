import contextlib
import io
import json
import random
from pathlib import Path

import pyrealb as rb
import pytest

from attnviz.app.cli import main
from attnviz.model.corpus import generate
from attnviz.model.corpus.generate import corpus_stats, generate_corpus, generate_rows
from attnviz.model.corpus.lexicon import default_lexicon
from attnviz.model.corpus.readers import read_tsv
from attnviz.model.corpus.realise import verb_forms
from attnviz.model.corpus.sentences import PHENOMENA, Sampler
from attnviz.model.tokenize import tokenize


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    generate_corpus(out, pairs=2400, seed=7, workers=2, progress=False)
    return out


def test_same_seed_same_corpus_whatever_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate, "CHUNK", 40)  # several chunks, so the order matters
    one = generate_rows(150, seed=3, workers=1, progress=False)
    two = generate_rows(150, seed=3, workers=2, progress=False)
    assert one == two
    assert generate_rows(150, seed=4, workers=1, progress=False) != one


def test_splits_are_disjoint_and_without_duplicates(corpus: Path) -> None:
    splits = {s: read_tsv(corpus / f"{s}.tsv", alignment_col=2) for s in ("train", "valid", "test")}
    assert sum(len(v) for v in splits.values()) == 2400
    en = [p.source for v in splits.values() for p in v]
    fr = [p.target for v in splits.values() for p in v]
    assert len(set(en)) == len(en) and len(set(fr)) == len(fr)
    for a in splits:
        for b in splits:
            if a < b:
                assert not {p.source for p in splits[a]} & {p.source for p in splits[b]}
                assert not {p.target for p in splits[a]} & {p.target for p in splits[b]}


def test_test_split_spreads_over_lengths(corpus: Path) -> None:
    test = read_tsv(corpus / "test.tsv")
    lengths = [len(tokenize(p.source, "en")) for p in test]
    assert min(lengths) <= 5 and max(lengths) >= 21
    short = sum(n <= 10 for n in lengths)
    assert short < 0.6 * len(lengths)  # not dominated by the common short sentences


def test_every_alignment_index_points_at_a_token(corpus: Path) -> None:
    for p in read_tsv(corpus / "train.tsv", alignment_col=2):
        n_en, n_fr = len(tokenize(p.source, "en")), len(tokenize(p.target, "fr"))
        assert p.alignment, p.source
        assert all(0 <= i < n_en and 0 <= j < n_fr for i, j in p.alignment), p


def test_noun_links_point_at_the_french_noun(corpus: Path) -> None:
    lex = default_lexicon()
    other_pos = {a.en for a in lex.adjectives}.union(*(verb_forms(v.en, "en") for v in lex.verbs))
    nouns = {n.en: n.fr for n in lex.nouns if n.en not in other_pos}
    rb.loadFr()
    # an English noun whose plural is the singular (deer, sheep) may stand for a French plural
    forms = {fr: {fr, rb.N(fr).n("p").realize().strip().lower()} for fr in nouns.values()}
    checked = 0
    for p in read_tsv(corpus / "train.tsv", alignment_col=2):
        en, fr = tokenize(p.source, "en"), tokenize(p.target, "fr")
        assert p.alignment is not None
        for i, j in p.alignment:
            if en[i].lower() in nouns:  # a singular English noun
                assert fr[j].lower() in forms[nouns[en[i].lower()]], (
                    p.source,
                    p.target,
                    en[i],
                    fr[j],
                )
                checked += 1
    assert checked > 500


def test_every_english_noun_is_linked(corpus: Path) -> None:
    """A noun without a link means a French sentence lost words (pyrealb drops phrases in
    some constructions; the sampler must avoid them)."""
    lex = default_lexicon()
    rb.loadEn()
    with contextlib.redirect_stdout(io.StringIO()):  # uncountable plurals warn
        nouns = {n.en for n in lex.nouns} | {
            rb.N(n.en).n("p").realize().strip() for n in lex.nouns if n.countable
        }
    nouns -= {a.en for a in lex.adjectives}.union(*(verb_forms(v.en, "en") for v in lex.verbs))
    for split in ("train", "valid", "test"):
        for p in read_tsv(corpus / f"{split}.tsv", alignment_col=2):
            assert p.alignment is not None
            linked = {i for i, _ in p.alignment}
            for i, tok in enumerate(tokenize(p.source, "en")):
                if tok.lower() in nouns:
                    assert i in linked, (tok, p.source, p.target)


def test_wh_questions_keep_every_phrase() -> None:
    sampler = Sampler(default_lexicon(), random.Random(11))
    seen = 0
    for _ in range(3000):
        for c in sampler.sentence().clauses:
            if c.question in ("where", "when"):
                assert not c.pps
                seen += 1
            if c.question == "what":
                assert c.modal != "want"
    assert seen > 50


def test_every_phenomenon_present(corpus: Path) -> None:
    stats = corpus_stats(corpus)
    phen = stats["phenomena"]
    assert isinstance(phen, dict)
    for name in PHENOMENA:
        assert phen[name]["percent"] >= 3.0, (name, phen[name])
    lengths = stats["english_length"]
    assert isinstance(lengths, dict)
    assert lengths["min"] <= 3 and lengths["max"] >= 30


def test_cli_generate_and_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["corpus", "generate", "--pairs", "60", "--seed", "2", "--out", str(tmp_path),
                 "--workers", "1", "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["corpus", "stats", str(tmp_path), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["total"] == 60
    assert set(stats["pairs"]) == {"train", "valid", "test"}
    assert main(["corpus", "stats", str(tmp_path / "missing")]) == 2
