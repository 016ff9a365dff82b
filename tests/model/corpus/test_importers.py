"""Tests for attnviz.model.corpus.importers on the real corpora, read in place from
../shared/data (a missing folder fails the test): Tatoeba slices, Multi30k's official
splits, the WPT03 Hansards gold with sure and possible links."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import defaultdict
from pathlib import Path

import pytest

from attnviz.app.cli import main as cli
from attnviz.model.corpus.importers import import_hansards, import_multi30k, import_tatoeba
from attnviz.model.corpus.readers import parse_gold, read_tsv
from tests.app.support import shared_data

SPLITS = ("train", "valid", "test")
# from ../shared/data/tatoeba-en-fr/README.md
FRA_SHA256 = "3f7ce9b82d57439edff14f487e2ef9fd52ad72757a838857f153fa4668dd6066"
INVISIBLE = "\u202f\u2009\u00a0\u200b\u00ad"


def rows(path: Path) -> list[tuple[str, ...]]:
    return [tuple(line.split("\t")) for line in path.read_text(encoding="utf-8").splitlines()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- Tatoeba -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fra() -> Path:
    return shared_data("tatoeba-en-fr") / "fra.txt.gz"


@pytest.fixture(scope="module")
def tatoeba(tmp_path_factory: pytest.TempPathFactory, fra: Path) -> Path:
    out = tmp_path_factory.mktemp("tatoeba")
    import_tatoeba(fra, out, seed=1, limit=6000)
    return out


def test_tatoeba_held_out_sentences_are_not_in_train(tatoeba: Path) -> None:
    split = {name: rows(tatoeba / f"{name}.tsv") for name in SPLITS}
    held = {side for name in ("valid", "test") for pair in split[name] for side in pair}
    assert split["test"] and split["valid"] and len(split["train"]) > 4000
    # neither side of a train pair is a sentence of valid or test, in either language
    assert not [pair for pair in split["train"] if set(pair) & held]
    test_sides = {side for pair in split["test"] for side in pair}
    assert not [pair for pair in split["valid"] if set(pair) & test_sides]
    # the files hold normalised text: no typographic space or invisible character
    for name in SPLITS:
        text = (tatoeba / f"{name}.tsv").read_text(encoding="utf-8")
        assert not set(text) & set(INVISIBLE), name


def test_tatoeba_translations_of_one_sentence_stay_in_one_split(tatoeba: Path) -> None:
    where: dict[str, set[str]] = defaultdict(set)
    translations: dict[str, int] = defaultdict(int)
    for name in SPLITS:
        for en, _ in rows(tatoeba / f"{name}.tsv"):
            where[en].add(name)
            translations[en] += 1
    assert all(len(names) == 1 for names in where.values())
    # the slice does have English sentences with several translations, in every split
    for name in SPLITS:
        assert any(translations[en] > 1 for en, names in where.items() if name in names), name


def test_tatoeba_split_is_deterministic_for_a_seed(
    tmp_path: Path, fra: Path, tatoeba: Path
) -> None:
    import_tatoeba(fra, tmp_path / "again", seed=1, limit=6000)
    import_tatoeba(fra, tmp_path / "other", seed=2, limit=6000)
    for name in SPLITS:
        assert (tmp_path / "again" / f"{name}.tsv").read_bytes() == (
            tatoeba / f"{name}.tsv"
        ).read_bytes()
    assert rows(tmp_path / "other" / "test.tsv") != rows(tatoeba / "test.tsv")


def test_tatoeba_meta_names_the_source_and_the_counts(tatoeba: Path, fra: Path) -> None:
    meta = json.loads((tatoeba / "meta.json").read_text(encoding="utf-8"))
    assert meta["corpus"] == "tatoeba" and meta["seed"] == 1 and meta["limit"] == 6000
    assert meta["source"] == {
        "file": "fra.txt.gz",
        "sha256": FRA_SHA256,
        "bytes": fra.stat().st_size,
    }
    assert sha256(fra) == FRA_SHA256
    assert meta["splits"] == {name: len(rows(tatoeba / f"{name}.tsv")) for name in SPLITS}
    assert meta["pairs_read"] == 6000
    kept = sum(meta["splits"].values()) + sum(meta["dropped"].values())
    assert kept == meta["pairs_read"]  # every pair read is in a split or counted out


def test_tatoeba_import_normalises_the_real_lines(tmp_path: Path, fra: Path) -> None:
    """Real lines with U+202F, U+2009, U+00A0, U+200B and U+00AD (the first of each in
    fra.txt), imported: spaces become ordinary ones, the invisible ones go."""
    with gzip.open(fra, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    chosen = {ch: next(line for line in lines if ch in line) for ch in INVISIBLE}
    assert chosen["\u202f"] == "Run!\tCours\u202f!"  # line 3
    distinct = list(dict.fromkeys(chosen.values()))
    src = tmp_path / "fra.txt"
    src.write_text("".join(line + "\n" for line in distinct), encoding="utf-8")
    import_tatoeba(src, tmp_path / "out", seed=1, limit=len(distinct))
    imported = {pair for name in SPLITS for pair in rows(tmp_path / "out" / f"{name}.tsv")}
    assert len(imported) == len(distinct)
    assert ("Run!", "Cours !") in imported
    for ch, line in chosen.items():
        by = "" if ch in "\u200b\u00ad" else " "  # dropped, or an ordinary space
        expected = tuple(" ".join(side.replace(ch, by).split()) for side in line.split("\t"))
        assert expected in imported, (ch, line)


# -- Multi30k ------------------------------------------------------------------------------

MULTI30K_SIZES = {
    "train": 29000,
    "valid": 1014,
    "test": 1000,
    "test_2017_flickr": 1000,
    "test_2017_mscoco": 461,
    "test_2018_flickr": 1071,
}


@pytest.fixture(scope="module")
def multi30k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("multi30k")
    import_multi30k(shared_data("multi30k-en-fr"), out)  # all of it (3 s): official sizes
    return out


def test_multi30k_keeps_the_official_splits(multi30k: Path) -> None:
    meta = json.loads((multi30k / "meta.json").read_text(encoding="utf-8"))
    assert meta["splits"] == MULTI30K_SIZES
    for name, size in MULTI30K_SIZES.items():
        assert len(rows(multi30k / f"{name}.tsv")) == size, name
    # line n of the English file with line n of the French one, whitespace collapsed
    test = rows(multi30k / "test.tsv")
    assert test[0] == (
        "A man in an orange hat starring at something.",
        "Un homme avec un chapeau orange regardant quelque chose.",
    )
    mscoco = rows(multi30k / "test_2017_mscoco.tsv")
    assert (
        "I cannot see where the green arrow is pointing.",
        "Je ne peux pas voir ce qu'indique la flèche verte.",
    ) in mscoco
    for name in MULTI30K_SIZES:
        for pair in rows(multi30k / f"{name}.tsv"):
            assert len(pair) == 2 and all(s == " ".join(s.split()) and s for s in pair), pair
    sources = meta["source"]["test_2017_mscoco"]
    assert [s["file"] for s in sources] == ["test_2017_mscoco.en.gz", "test_2017_mscoco.fr.gz"]
    assert sources[0]["sha256"] == (
        "aab300bfb4427697987e02cd0aacd44bfe8aa50456231b6474c08038bbed2b58"
    )


def test_multi30k_limit_cuts_every_split(tmp_path: Path, multi30k: Path) -> None:
    meta = import_multi30k(shared_data("multi30k-en-fr"), tmp_path, limit=25)
    assert meta["limit"] == 25 and set(meta["splits"].values()) == {25}
    assert rows(tmp_path / "test_2017_mscoco.tsv") == rows(multi30k / "test_2017_mscoco.tsv")[:25]


# -- WPT03 Hansards ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hansards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hansards")
    import_hansards(shared_data("hansards-wpt03-en-fr"), out)
    return out


def raw_links(path: Path) -> list[tuple[int, int, int, str]]:
    """(sentence, e, f, S|P) of a .wa file, 1-based as written."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        sid, e, f, kind = line.split()
        out.append((int(sid), int(e), int(f), kind))
    return out


@pytest.mark.parametrize(
    ("split", "stem", "sentences", "sure", "possible"),
    [("test", "test", 447, 4038, 13400), ("valid", "dev", 37, 338, 1446)],
)
def test_hansards_gold_sure_and_possible_links(
    hansards: Path, split: str, stem: str, sentences: int, sure: int, possible: int
) -> None:
    src = shared_data("hansards-wpt03-en-fr")
    lines = rows(hansards / f"{split}.tsv")
    assert len(lines) == sentences
    golds = [parse_gold(line[2]) for line in lines]
    # the counts the data README gives (4,038 sure and 13,400 possible for the test set)
    assert sum(len(s) for s, _ in golds) == sure
    assert sum(len(p) for _, p in golds) == possible
    # every link of the .wa file, 1-based, is in its line 0-based: S as i-j, P as ipj
    for sid, e, f, kind in raw_links(src / f"{stem}.wa.nonullalign"):
        s, p = golds[sid - 1]
        assert (e - 1, f - 1) in (s if kind == "S" else p), (sid, e, f, kind)
    # the text is the distributed tokens, and every link is within them
    english = (src / f"{stem}.e").read_text(encoding="utf-8").splitlines()
    french = (src / f"{stem}.f").read_text(encoding="utf-8").splitlines()
    for (en, fr, _), (s, p), e_line, f_line in zip(lines, golds, english, french, strict=True):
        assert en.split() == e_line.split() and fr.split() == f_line.split()
        assert all(i < len(en.split()) and j < len(fr.split()) for i, j in s + p)


def test_hansards_sentence_100_by_hand(hansards: Path) -> None:
    # test.wa: "0100 1 3 S" (at - à), "0100 2 4 S" (the - le), "0100 8 1 S" (unfortunately)
    en, fr, gold = rows(hansards / "test.tsv")[99]
    sure, _ = parse_gold(gold)
    assert {(0, 2), (1, 3), (7, 0)} <= set(sure)
    assert (en.split()[7], fr.split()[0]) == ("unfortunately", "malheureusement")
    assert (en.split()[0], fr.split()[2]) == ("at", "à")
    pair = read_tsv(hansards / "test.tsv", alignment_col=2)[99]
    assert pair.alignment == sure and pair.possible == parse_gold(gold)[1]


def test_hansards_meta_and_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = shared_data("hansards-wpt03-en-fr")
    assert cli(["corpus", "import", "hansards", str(src), "--out", str(tmp_path)]) == 0
    assert "{'test': 447, 'valid': 37}" in capsys.readouterr().out
    meta = json.loads((tmp_path / "meta.json").read_text(encoding="utf-8"))
    assert meta["pretokenized"] is True and meta["splits"] == {"test": 447, "valid": 37}
    by_file = {s["file"]: s["sha256"] for s in meta["source"]}
    assert by_file["test.wa.nonullalign"] == sha256(src / "test.wa.nonullalign")
    assert by_file["test.e"] == ("d73d6edcf34615f9f9489d0c234a44eadb3294635d10c9ceb77c22afca46bb39")
