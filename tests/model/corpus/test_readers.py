"""Tests for attnviz.model.corpus.readers."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnviz.model.corpus.readers import (
    CorpusError,
    Pair,
    corpus_meta,
    format_pharaoh,
    iter_moses,
    iter_pairs,
    iter_tsv,
    parse_gold,
    parse_pharaoh,
    read_moses,
    read_tsv,
)

TATOEBA = (
    "Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #1158250 (Wittydev)\n"
    "Hi.\tSalut !\tCC-BY 2.0 (France) Attribution: tatoeba.org #538123 (CM) & #509819 (Aiji)\n"
    'He said "hi".\tIl a dit « salut ».\tCC-BY 2.0 (France) Attribution: tatoeba.org #1 & #2\n'
)

GENERATED = (
    "the cat sleeps\tle chat dort\t0-0 1-1 2-2\nthe red car\tla voiture rouge\t0-0 1-2 2-1\n"
)


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    return path


def check_error(err: CorpusError, path: Path, lineno: int | None, *fragments: str) -> None:
    message = str(err)
    assert str(path) in message, message
    if lineno is not None:
        assert f"{path}:{lineno}:" in message, message
        assert err.lineno == lineno
    assert err.path == str(path)
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(err, ValueError)


# -- Pharaoh ---------------------------------------------------------------------------


def test_parse_pharaoh() -> None:
    assert parse_pharaoh("0-0 1-2 2-1") == ((0, 0), (1, 2), (2, 1))
    assert parse_pharaoh("  3-4\t10-12  ") == ((3, 4), (10, 12))
    assert parse_pharaoh("") == ()
    assert parse_pharaoh("   ") == ()


def test_format_pharaoh() -> None:
    assert format_pharaoh([(0, 0), (1, 2)]) == "0-0 1-2"
    assert format_pharaoh(()) == ""


@pytest.mark.parametrize("text", ["0-0 1-2 2-1", "", "5-0 0-5 12-3", "0-0 0-1 1-1"])
def test_pharaoh_round_trip(text: str) -> None:
    assert format_pharaoh(parse_pharaoh(text)) == text
    links = parse_pharaoh(text)
    assert parse_pharaoh(format_pharaoh(links)) == links


@pytest.mark.parametrize("bad", ["0-", "-1-2", "a-b", "1-2-3", "1:2", "1", "0-0,1-1", "１-２"])
def test_parse_pharaoh_names_the_bad_item(bad: str) -> None:
    with pytest.raises(ValueError, match="bad alignment item") as info:
        parse_pharaoh(f"0-0 {bad} 3-3")
    assert repr(bad) in str(info.value)


def test_parse_gold_sure_and_possible_links() -> None:
    # the Hansards import's notation: i-j sure, ipj possible, 0-based, in the order given
    assert parse_gold("0-0 1p2 3-1 2p2") == (((0, 0), (3, 1)), ((1, 2), (2, 2)))
    assert parse_gold("0-0 1-2") == (parse_pharaoh("0-0 1-2"), ())  # plain Pharaoh: all sure
    assert parse_gold("0p0") == ((), ((0, 0),))
    assert parse_gold("  ") == ((), ())
    with pytest.raises(ValueError, match="bad alignment item") as info:
        parse_pharaoh("0-0 1p2")  # plain Pharaoh stays strict: no possible links
    assert "'1p2'" in str(info.value)


@pytest.mark.parametrize("bad", ["1P2", "1s2", "p2", "1p", "1pp2", "1-p2", "0-0p1"])
def test_parse_gold_names_the_bad_item(bad: str) -> None:
    with pytest.raises(ValueError, match=r"expected 'i-j' \(sure\) or 'ipj' \(possible\)") as info:
        parse_gold(f"0-0 {bad}")
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", [[(0, -1)], [(0,)], [(1.0, 2)], [(True, 0)], ["0-1"]])
def test_format_pharaoh_rejects_bad_links(bad: list[object]) -> None:
    with pytest.raises(ValueError, match="bad alignment link"):
        format_pharaoh(bad)  # type: ignore[arg-type]


# -- TSV -------------------------------------------------------------------------------


def test_read_tsv_tatoeba_layout_ignores_attribution(tmp_path: Path) -> None:
    path = write(tmp_path, "fra.txt", TATOEBA)
    pairs = read_tsv(path)
    assert pairs == [
        Pair("Go.", "Va !"),
        Pair("Hi.", "Salut !"),
        Pair('He said "hi".', "Il a dit « salut »."),
    ]
    assert [p.lineno for p in pairs] == [1, 2, 3]
    assert all(p.alignment is None for p in pairs)


def test_read_tsv_generated_corpus_with_alignment(tmp_path: Path) -> None:
    path = write(tmp_path, "corpus.tsv", GENERATED)
    pairs = read_tsv(path, alignment_col=2)
    assert pairs[0] == Pair("the cat sleeps", "le chat dort", ((0, 0), (1, 1), (2, 2)))
    assert pairs[1].alignment == ((0, 0), (1, 2), (2, 1))
    assert pairs[1].lineno == 2


def test_read_tsv_other_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "x.tsv", "1\tbonjour\thello\n2\tmerci\tthank you\n")
    pairs = read_tsv(path, source_col=2, target_col=1)
    assert pairs == [Pair("hello", "bonjour"), Pair("thank you", "merci")]
    with pytest.raises(ValueError, match="must differ"):
        read_tsv(path, source_col=1, target_col=1)
    with pytest.raises(ValueError, match=">= 0"):
        read_tsv(path, source_col=-1)


def test_read_tsv_sure_and_possible_links(tmp_path: Path) -> None:
    path = write(tmp_path, "h.tsv", "oh , oh !\toh , oh !\t0-0 1p1 2-2\nyes\toui\t0-0\n")
    first, second = read_tsv(path, alignment_col=2)
    assert first.alignment == ((0, 0), (2, 2)) and first.possible == ((1, 1),)
    assert first == Pair("oh , oh !", "oh , oh !", ((0, 0), (2, 2)), possible=((1, 1),))
    assert first != Pair("oh , oh !", "oh , oh !", ((0, 0), (2, 2)))  # the gold differs
    assert second == Pair("yes", "oui", ((0, 0),)) and second.possible is None
    bad = write(tmp_path, "bad.tsv", "yes\toui\t0-0\nno\tnon\t0-0 0q0\n")
    with pytest.raises(CorpusError) as info:
        read_tsv(bad, alignment_col=2)
    check_error(info.value, bad, 2, "column 3", "'0q0'", "'ipj' (possible)")


def test_read_tsv_empty_alignment_cell_is_an_empty_alignment(tmp_path: Path) -> None:
    path = write(tmp_path, "c.tsv", "yes\toui\t\n")
    assert read_tsv(path, alignment_col=2) == [Pair("yes", "oui", ())]


def test_read_tsv_tolerates_bom_crlf_and_trailing_blank_lines(tmp_path: Path) -> None:
    content = b"\xef\xbb\xbfGo.\tVa !\r\nHi.\tSalut !\r\n\r\n\n   \n"
    path = write(tmp_path, "c.tsv", content)
    assert read_tsv(path) == [Pair("Go.", "Va !"), Pair("Hi.", "Salut !")]


def test_read_tsv_no_final_newline_and_empty_file(tmp_path: Path) -> None:
    assert read_tsv(write(tmp_path, "a.tsv", "Go.\tVa !")) == [Pair("Go.", "Va !")]
    assert read_tsv(write(tmp_path, "b.tsv", "")) == []
    assert read_tsv(write(tmp_path, "c.tsv", "\n\n")) == []


def test_read_tsv_keeps_unicode_line_separators_inside_a_sentence(tmp_path: Path) -> None:
    path = write(tmp_path, "c.tsv", "a\u2028b\tc\x85d\n")
    assert read_tsv(path) == [Pair("a\u2028b", "c\x85d")]


def test_read_tsv_too_few_columns(tmp_path: Path) -> None:
    path = write(tmp_path, "c.tsv", "Go.\tVa !\nHi. Salut !\n")
    with pytest.raises(CorpusError) as info:
        read_tsv(path)
    check_error(info.value, path, 2, "expected at least 2", "found 1", "tab-separated")


def test_read_tsv_missing_alignment_column(tmp_path: Path) -> None:
    path = write(tmp_path, "c.tsv", "the cat\tle chat\t0-0 1-1\nthe dog\tle chien\n")
    with pytest.raises(CorpusError) as info:
        read_tsv(path, alignment_col=2)
    check_error(info.value, path, 2, "expected at least 3", "found 2")


@pytest.mark.parametrize(
    ("line", "side"),
    [("\tVa !", "source"), ("Go.\t", "target"), ("   \tVa !", "source"), ("Go.\t \t x", "target")],
)
def test_read_tsv_empty_side(tmp_path: Path, line: str, side: str) -> None:
    path = write(tmp_path, "c.tsv", f"Hi.\tSalut !\nOK.\tD'accord.\n{line}\n")
    with pytest.raises(CorpusError) as info:
        read_tsv(path)
    check_error(info.value, path, 3, f"empty {side} sentence")


def test_read_tsv_blank_line_in_the_middle(tmp_path: Path) -> None:
    path = write(tmp_path, "c.tsv", "Hi.\tSalut !\n\nGo.\tVa !\n")
    with pytest.raises(CorpusError) as info:
        read_tsv(path)
    check_error(info.value, path, 2, "blank line")


def test_read_tsv_invalid_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "c.tsv", b"Hi.\tSalut !\nGo.\tVa !\n\xff\xfe bad\tmauvais\n")
    with pytest.raises(CorpusError) as info:
        read_tsv(path)
    check_error(info.value, path, 3, "invalid UTF-8", "must be UTF-8", "0xff")


def test_read_tsv_latin1_file_is_reported_as_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "c.tsv", "Hi.\tSalut !\nStudent.\tÉlève.\n".encode("latin-1"))
    with pytest.raises(CorpusError) as info:
        read_tsv(path)
    check_error(info.value, path, 2, "must be UTF-8")


def test_read_tsv_bad_alignment_cell(tmp_path: Path) -> None:
    path = write(tmp_path, "c.tsv", "the cat\tle chat\t0-0 1-1\nthe dog\tle chien\t0-0 1_1\n")
    with pytest.raises(CorpusError) as info:
        read_tsv(path, alignment_col=2)
    check_error(info.value, path, 2, "column 3", "'1_1'")


def test_read_tsv_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.tsv"
    with pytest.raises(CorpusError) as info:
        read_tsv(path)
    check_error(info.value, path, None, "no such file")
    with pytest.raises(CorpusError, match="directory"):
        read_tsv(tmp_path)


def test_iter_tsv_streams_and_checks_the_file_at_once(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no such file"):
        iter_tsv(tmp_path / "nope.tsv")  # before any next()
    path = write(tmp_path, "c.tsv", "Hi.\tSalut !\nbroken line\n")
    it = iter_tsv(path)
    assert next(it) == Pair("Hi.", "Salut !")
    with pytest.raises(CorpusError, match=":2:"):
        next(it)


def test_read_tsv_many_lines(tmp_path: Path) -> None:
    n = 20_000
    path = write(tmp_path, "big.tsv", "".join(f"s{i}\tc{i}\t{i}-{i}\n" for i in range(n)))
    pairs = read_tsv(path, alignment_col=2)
    assert len(pairs) == n
    assert pairs[-1] == Pair(f"s{n - 1}", f"c{n - 1}", ((n - 1, n - 1),))
    assert pairs[-1].lineno == n


# -- Moses -----------------------------------------------------------------------------


def test_read_moses(tmp_path: Path) -> None:
    en = write(tmp_path, "corpus.en", "The cat sleeps.\nHello!\n")
    fr = write(tmp_path, "corpus.fr", "\ufeffLe chat dort.\r\nBonjour !\r\n\n")
    pairs = read_moses(en, fr)
    assert pairs == [Pair("The cat sleeps.", "Le chat dort."), Pair("Hello!", "Bonjour !")]
    assert [p.lineno for p in pairs] == [1, 2]
    assert read_moses(fr, en)[0] == Pair("Le chat dort.", "The cat sleeps.")


def test_read_moses_keeps_tabs(tmp_path: Path) -> None:
    en = write(tmp_path, "c.en", "a\tb\n")
    fr = write(tmp_path, "c.fr", "c\n")
    assert read_moses(en, fr) == [Pair("a\tb", "c")]


@pytest.mark.parametrize(
    ("src", "tgt", "n_src", "n_tgt"),
    [
        ("a\nb\nc\n", "x\ny\n", 3, 2),
        ("a\n", "x\ny\nz\nw\n", 1, 4),
        ("a\nb\n\n\n", "x\ny\nz\n", 2, 3),  # trailing blank lines do not count
        ("", "x\n", 0, 1),
    ],
)
def test_read_moses_unequal_lengths(
    tmp_path: Path, src: str, tgt: str, n_src: int, n_tgt: int
) -> None:
    en = write(tmp_path, "corpus.en", src)
    fr = write(tmp_path, "corpus.fr", tgt)
    with pytest.raises(CorpusError) as info:
        read_moses(en, fr)
    message = str(info.value)
    assert f"{en} has {n_src} lines" in message
    assert f"{fr} has {n_tgt} lines" in message


def test_read_moses_trailing_blank_lines_differ(tmp_path: Path) -> None:
    en = write(tmp_path, "c.en", "a\nb\n\n\n\n")
    fr = write(tmp_path, "c.fr", "x\ny")
    assert read_moses(en, fr) == [Pair("a", "x"), Pair("b", "y")]


@pytest.mark.parametrize("empty_in", ["source", "target"])
def test_read_moses_empty_sentence(tmp_path: Path, empty_in: str) -> None:
    good, bad = "one\ntwo\nthree\n", "one\n  \nthree\n"
    en = write(tmp_path, "c.en", bad if empty_in == "source" else good)
    fr = write(tmp_path, "c.fr", bad if empty_in == "target" else good)
    with pytest.raises(CorpusError) as info:
        read_moses(en, fr)
    check_error(info.value, en if empty_in == "source" else fr, 2, f"empty {empty_in} sentence")


def test_read_moses_invalid_utf8(tmp_path: Path) -> None:
    en = write(tmp_path, "c.en", "one\ntwo\n")
    fr = write(tmp_path, "c.fr", b"un\n\xff\xfe bad\n")
    with pytest.raises(CorpusError) as info:
        read_moses(en, fr)
    check_error(info.value, fr, 2, "invalid UTF-8", "must be UTF-8")


def test_read_moses_missing_file(tmp_path: Path) -> None:
    en = write(tmp_path, "c.en", "one\n")
    fr = tmp_path / "c.fr"
    with pytest.raises(CorpusError) as info:
        iter_moses(en, fr)
    check_error(info.value, fr, None, "no such file")
    with pytest.raises(CorpusError, match="no such file"):
        read_moses(fr, en)


# -- dispatch --------------------------------------------------------------------------


def test_iter_pairs_tsv_detects_the_alignment_column(tmp_path: Path) -> None:
    gen = write(tmp_path, "gen.tsv", GENERATED)
    pairs = list(iter_pairs(gen))
    assert pairs[0].alignment == ((0, 0), (1, 1), (2, 2))
    tatoeba = write(tmp_path, "fra.tsv", TATOEBA)
    assert [p.alignment for p in iter_pairs(tatoeba)] == [None, None, None]
    two_cols = write(tmp_path, "two.tsv", "Go.\tVa !\n")
    assert list(iter_pairs(str(two_cols))) == [Pair("Go.", "Va !")]


def test_iter_pairs_detects_a_column_of_sure_and_possible_links(tmp_path: Path) -> None:
    # the Hansards import: the first line may already mix the two kinds
    path = write(tmp_path, "test.tsv", "2 .\t2 .\t0p0 1-1\nhear , hear !\tbravo !\t0p0 1p0\n")
    pairs = list(iter_pairs(path))
    assert [(p.alignment, p.possible) for p in pairs] == [
        (((1, 1),), ((0, 0),)),
        ((), ((0, 0), (1, 0))),
    ]
    # a third column that is neither kind of link is not an alignment
    other = write(tmp_path, "other.tsv", "Go.\tVa !\t1p2 CC-BY\n")
    assert [p.alignment for p in iter_pairs(other)] == [None]


def test_corpus_meta(tmp_path: Path) -> None:
    path = write(tmp_path, "test.tsv", "yes\toui\n")
    assert corpus_meta(path) is None  # no import wrote one
    write(tmp_path, "meta.json", '{"corpus": "hansards", "pretokenized": true}')
    assert corpus_meta(path) == {"corpus": "hansards", "pretokenized": True}
    assert corpus_meta(tmp_path / "missing.tsv") is None
    write(tmp_path, "meta.json", "[1, 2]")
    with pytest.raises(CorpusError, match=r"meta\.json: expected a JSON object"):
        corpus_meta(path)
    write(tmp_path, "meta.json", "{")
    with pytest.raises(CorpusError, match=r"meta\.json: unreadable corpus description"):
        corpus_meta(path)


def test_iter_pairs_manythings_txt_is_tsv(tmp_path: Path) -> None:
    path = write(tmp_path, "fra.txt", TATOEBA)
    assert [p.source for p in iter_pairs(path)] == ["Go.", "Hi.", 'He said "hi".']


def test_iter_pairs_moses(tmp_path: Path) -> None:
    en = write(tmp_path, "corpus.en", "Hello!\n")
    fr = write(tmp_path, "corpus.fr", "Bonjour !\n")
    expected = [Pair("Hello!", "Bonjour !")]
    assert list(iter_pairs((en, fr))) == expected
    assert list(iter_pairs([str(en), str(fr)])) == expected
    assert list(iter_pairs(tmp_path / "corpus")) == expected
    assert list(iter_pairs(str(tmp_path / "corpus"))) == expected
    assert list(iter_pairs(en)) == expected
    assert list(iter_pairs(fr)) == expected
    assert list(iter_pairs(tmp_path / "corpus", moses_suffixes=("fr", "en"))) == [
        Pair("Bonjour !", "Hello!")
    ]


def test_iter_pairs_dotted_prefix(tmp_path: Path) -> None:
    write(tmp_path, "train.v2.en", "a\n")
    write(tmp_path, "train.v2.fr", "b\n")
    assert list(iter_pairs(tmp_path / "train.v2")) == [Pair("a", "b")]


def test_iter_pairs_errors(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no such file"):
        iter_pairs(tmp_path / "missing.tsv")
    write(tmp_path, "half.en", "a\n")
    with pytest.raises(CorpusError) as info:
        iter_pairs(tmp_path / "half")
    assert "half.fr" in str(info.value)
    assert "half.en" not in str(info.value).split("missing", 1)[1]
    odd = write(tmp_path, "data.csv", "a,b\n")
    with pytest.raises(CorpusError, match="cannot tell the corpus layout"):
        iter_pairs(odd)
    with pytest.raises(ValueError, match="got 3 paths"):
        iter_pairs([odd, odd, odd])
    with pytest.raises(CorpusError, match="no such file"):
        iter_pairs((tmp_path / "half.en", tmp_path / "half.fr"))


def test_pair_is_frozen() -> None:
    p = Pair("a", "b", ((0, 0),), lineno=3)
    with pytest.raises(AttributeError):
        p.source = "c"  # type: ignore[misc]
    assert p == Pair("a", "b", ((0, 0),), lineno=7)  # lineno is not part of equality
    assert p != Pair("a", "b")
    assert hash(p) == hash(Pair("a", "b", ((0, 0),)))
