"""Readers for people's own parallel corpora.

Two layouts are read, both UTF-8 text, one sentence pair per line:

* TSV, the Tatoeba/manythings layout ``english<TAB>french<TAB>attribution`` (extra columns
  are ignored), and the project's generated corpus ``english<TAB>french<TAB>alignment``
  whose third column is a gold word alignment in Pharaoh format (see below).
  Read with :func:`read_tsv`.
* Moses: two aligned plain-text files, ``corpus.en`` and ``corpus.fr``, line ``n`` of one
  being the translation of line ``n`` of the other. Read with :func:`read_moses`.

:func:`iter_pairs` picks the reader from the path(s) it is given.

Alignments are Pharaoh ``i-j`` pairs (as Moses, fast_align, eflomal and Marian write
them): ``i`` is a 0-based source token index, ``j`` a 0-based target token index, pairs
separated by spaces, e.g. ``"0-0 1-2 2-1"``. A gold alignment may also mark links as only
*possible* (Och & Ney's P links, as in the WPT03 Hansards) with ``ipj``: ``"0-0 1p2"`` is
the sure link 0-0 and the possible link 1-2 (:func:`parse_gold`).

Every problem in a file raises :class:`CorpusError` whose message starts with
``path:line:`` (1-based line numbers). A UTF-8 byte order mark at the start of a file is
tolerated, as are blank lines at the very end; a blank line anywhere else is an error.
Sentences are stripped of surrounding whitespace. Files are streamed line by line.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any, BinaryIO

StrPath = str | os.PathLike[str]
Alignment = tuple[tuple[int, int], ...]

TSV_SUFFIXES = frozenset({".tsv", ".txt"})  # .txt: manythings' ``fra.txt`` is TSV

_PHARAOH_ITEM = re.compile(r"([0-9]+)-([0-9]+)")
_GOLD_ITEM = re.compile(r"([0-9]+)([-p])([0-9]+)")


class CorpusError(ValueError):
    """A corpus file is missing or malformed; the message names the file and line.

    ``path`` and ``lineno`` (1-based; ``None`` when the problem is not on one line) are
    also kept as attributes.
    """

    def __init__(self, message: str, *, path: StrPath | None = None, lineno: int | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.lineno = lineno


@dataclass(frozen=True)
class Pair:
    """One sentence pair.

    ``alignment`` holds Pharaoh ``(source_index, target_index)`` links, 0-based, or None
    when the corpus has none; where the gold marks some links as only possible (``ipj``),
    ``alignment`` holds the sure links and ``possible`` the possible ones (None when the
    line has no possible link). ``lineno`` is the 1-based line it was read from (0 if made
    by hand); it is not part of equality, so the same pair read from two places compares
    equal.
    """

    source: str
    target: str
    alignment: Alignment | None = None
    lineno: int = field(default=0, compare=False)
    possible: Alignment | None = None


# -- Pharaoh alignments ----------------------------------------------------------------


def parse_pharaoh(text: str) -> Alignment:
    """Parse ``"0-0 1-2"`` into ``((0, 0), (1, 2))``, keeping the order given.

    Empty or whitespace-only text is an empty alignment. ValueError naming the first bad
    item otherwise (anything that is not ``i-j`` with non-negative integers).
    """
    links: list[tuple[int, int]] = []
    for item in text.split():
        m = _PHARAOH_ITEM.fullmatch(item)
        if m is None:
            raise ValueError(
                f"bad alignment item {item!r}: expected 'i-j' with 0-based source index i "
                "and target index j, e.g. '0-0 1-2'"
            )
        links.append((int(m.group(1)), int(m.group(2))))
    return tuple(links)


def parse_gold(text: str) -> tuple[Alignment, Alignment]:
    """Parse a gold alignment with sure and possible links into ``(sure, possible)``:
    ``"0-0 1p2 3-1"`` -> ``(((0, 0), (3, 1)), ((1, 2),))``, each in the order given.

    ``i-j`` is a sure link, ``ipj`` a possible one (0-based source index i, target index
    j); plain Pharaoh text is all sure links, as :func:`parse_pharaoh` reads it. ValueError
    naming the first bad item.
    """
    sure: list[tuple[int, int]] = []
    possible: list[tuple[int, int]] = []
    for item in text.split():
        m = _GOLD_ITEM.fullmatch(item)
        if m is None:
            raise ValueError(
                f"bad alignment item {item!r}: expected 'i-j' (sure) or 'ipj' (possible) with "
                "0-based source index i and target index j, e.g. '0-0 1p2'"
            )
        link = (int(m.group(1)), int(m.group(3)))
        (sure if m.group(2) == "-" else possible).append(link)
    return tuple(sure), tuple(possible)


def format_pharaoh(pairs: Iterable[tuple[int, int]]) -> str:
    """Format ``[(0, 0), (1, 2)]`` as ``"0-0 1-2"``; ValueError for a negative or non-int index."""
    items: list[str] = []
    for pair in pairs:
        try:
            i, j = pair
        except (TypeError, ValueError):
            raise ValueError(f"bad alignment link {pair!r}: expected (i, j)") from None
        for idx in (i, j):
            if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
                raise ValueError(
                    f"bad alignment link {pair!r}: indices must be non-negative integers"
                )
        items.append(f"{i}-{j}")
    return " ".join(items)


# -- low-level line reading ------------------------------------------------------------


def _open(path: StrPath) -> BinaryIO:
    try:
        return open(path, "rb")  # the caller closes it (``with``)
    except FileNotFoundError as e:
        raise CorpusError(f"{path}: no such file", path=path) from e
    except IsADirectoryError as e:
        raise CorpusError(f"{path}: is a directory, expected a corpus file", path=path) from e
    except OSError as e:
        raise CorpusError(f"{path}: cannot open: {e.strerror}", path=path) from e


def _lines(path: StrPath, fh: BinaryIO) -> Iterator[tuple[int, str]]:
    """Yield ``(lineno, text)`` for each line, without its line ending.

    Decodes strictly as UTF-8 line by line (so the error names the line), drops a BOM at
    the start, and holds blank lines back until a non-blank line follows, so blank lines
    at the end of the file are never yielded. Only ``\\n`` (and ``\\r\\n``) end a line;
    other Unicode line separators inside a sentence are kept.
    """
    pending: list[tuple[int, str]] = []
    for lineno, raw in enumerate(fh, start=1):
        if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorpusError(
                f"{path}:{lineno}: invalid UTF-8 (byte {raw[e.start]:#04x} at position "
                f"{e.start} of the line); the file must be UTF-8 encoded",
                path=path,
                lineno=lineno,
            ) from None
        text = text.removesuffix("\n").removesuffix("\r")
        if not text.strip():
            pending.append((lineno, text))
            continue
        if pending:
            yield from pending
            pending.clear()
        yield lineno, text


def _sentence(path: StrPath, lineno: int, text: str, what: str) -> str:
    s = text.strip()
    if not s:
        raise CorpusError(f"{path}:{lineno}: empty {what} sentence", path=path, lineno=lineno)
    return s


# -- TSV -------------------------------------------------------------------------------


def iter_tsv(
    path: StrPath,
    *,
    source_col: int = 0,
    target_col: int = 1,
    alignment_col: int | None = None,
) -> Iterator[Pair]:
    """Stream the pairs of a TSV corpus; see :func:`read_tsv`.

    The arguments and the file's existence are checked at once; the lines are read (and
    their errors raised) while iterating.
    """
    cols = [source_col, target_col] + ([] if alignment_col is None else [alignment_col])
    if any(c < 0 for c in cols):
        raise ValueError(f"column indices must be >= 0, got {cols}")
    if len(set(cols)) != len(cols):
        raise ValueError(f"source, target and alignment columns must differ, got {cols}")
    _open(path).close()
    return _iter_tsv(path, source_col, target_col, alignment_col, needed=max(cols) + 1)


def _iter_tsv(
    path: StrPath, source_col: int, target_col: int, alignment_col: int | None, *, needed: int
) -> Iterator[Pair]:
    with _open(path) as fh:
        for lineno, text in _lines(path, fh):
            if not text.strip():
                raise CorpusError(
                    f"{path}:{lineno}: blank line (blank lines are only allowed at the end "
                    "of the file)",
                    path=path,
                    lineno=lineno,
                )
            cells = text.split("\t")
            if len(cells) < needed:
                hint = " (no tab found: is the file tab-separated?)" if len(cells) == 1 else ""
                raise CorpusError(
                    f"{path}:{lineno}: expected at least {needed} tab-separated columns, "
                    f"found {len(cells)}{hint}",
                    path=path,
                    lineno=lineno,
                )
            alignment: Alignment | None = None
            possible: Alignment | None = None
            if alignment_col is not None:
                try:
                    alignment, possible = parse_gold(cells[alignment_col])
                except ValueError as e:
                    raise CorpusError(
                        f"{path}:{lineno}: column {alignment_col + 1} (alignment): {e}",
                        path=path,
                        lineno=lineno,
                    ) from None
            yield Pair(
                source=_sentence(path, lineno, cells[source_col], "source"),
                target=_sentence(path, lineno, cells[target_col], "target"),
                alignment=alignment,
                lineno=lineno,
                possible=possible or None,
            )


def read_tsv(
    path: StrPath,
    *,
    source_col: int = 0,
    target_col: int = 1,
    alignment_col: int | None = None,
) -> list[Pair]:
    """Read a tab-separated corpus, one pair per line; columns are 0-based.

    The Tatoeba/manythings layout ``english<TAB>french<TAB>attribution`` is read with the
    defaults (columns past the ones asked for are ignored). The project's generated corpus
    ``english<TAB>french<TAB>alignment`` is read with ``alignment_col=2``: that cell holds
    Pharaoh ``i-j`` links, 0-based, source-target (an empty cell is an empty alignment),
    possibly mixed with possible links ``ipj`` (the imported Hansards: ``Pair.possible``).
    No quoting: a quote character is part of the text. CorpusError for a bad line.
    """
    return list(
        iter_tsv(path, source_col=source_col, target_col=target_col, alignment_col=alignment_col)
    )


# -- Moses -----------------------------------------------------------------------------


def iter_moses(source_path: StrPath, target_path: StrPath) -> Iterator[Pair]:
    """Stream the pairs of a Moses-layout corpus; see :func:`read_moses`.

    Both files are checked to exist at once. Unequal line counts are found only at the
    end, after the common lines were yielded.
    """
    _open(source_path).close()
    _open(target_path).close()
    return _iter_moses(source_path, target_path)


def _iter_moses(source_path: StrPath, target_path: StrPath) -> Iterator[Pair]:
    with _open(source_path) as sfh, _open(target_path) as tfh:
        src_lines = _lines(source_path, sfh)
        tgt_lines = _lines(target_path, tfh)
        n_src = n_tgt = 0
        for s, t in zip_longest(src_lines, tgt_lines):
            if s is None or t is None:
                # One file ran out; count the rest of the other for the message.
                n_src = s[0] if s is not None else n_src
                n_tgt = t[0] if t is not None else n_tgt
                for lineno, _ in src_lines:
                    n_src = lineno
                for lineno, _ in tgt_lines:
                    n_tgt = lineno
                raise CorpusError(
                    f"{source_path} has {n_src} lines but {target_path} has {n_tgt} lines; "
                    "the two files of a Moses-layout corpus must have one sentence per line, "
                    "line n of one translating line n of the other",
                    path=source_path,
                )
            n_src, n_tgt = s[0], t[0]
            yield Pair(
                source=_sentence(source_path, s[0], s[1], "source"),
                target=_sentence(target_path, t[0], t[1], "target"),
                lineno=s[0],
            )


def read_moses(source_path: StrPath, target_path: StrPath) -> list[Pair]:
    """Read two aligned plain-text files, one sentence per line (the Moses layout).

    Line ``n`` of ``source_path`` and line ``n`` of ``target_path`` form the pair with
    ``lineno == n``. CorpusError for a missing file, an empty sentence (naming the file and
    line) or unequal line counts (naming both files and both counts).
    """
    return list(iter_moses(source_path, target_path))


# -- dispatch --------------------------------------------------------------------------


def corpus_meta(path: StrPath) -> dict[str, Any] | None:
    """The ``meta.json`` that ``attnviz corpus import`` wrote beside the corpus file ``path``
    (None when there is none); CorpusError naming it when it is not a JSON object."""
    meta = Path(path).parent / "meta.json"
    if not Path(path).is_file() or not meta.is_file():
        return None
    try:
        value = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorpusError(f"{meta}: unreadable corpus description ({e})", path=meta) from e
    if not isinstance(value, dict):
        raise CorpusError(f"{meta}: expected a JSON object", path=meta)
    return value


def _first_line(path: StrPath) -> str | None:
    with _open(path) as fh:
        for _, text in _lines(path, fh):
            return text
    return None


def _has_alignment_column(path: StrPath) -> bool:
    """True when column 3 of the first line is a non-empty Pharaoh alignment (sure links
    ``i-j``, possibly mixed with possible links ``ipj``)."""
    first = _first_line(path)
    if first is None:
        return False
    cells = first.split("\t")
    if len(cells) < 3 or not cells[2].strip():
        return False
    try:
        parse_gold(cells[2])
    except ValueError:
        return False
    return True


def iter_pairs(
    path_or_paths: StrPath | Sequence[StrPath],
    *,
    moses_suffixes: tuple[str, str] = ("en", "fr"),
) -> Iterator[Pair]:
    """Stream the pairs of a corpus, choosing the reader from what is given:

    * two paths ``(source, target)`` -> :func:`iter_moses`;
    * an existing ``.tsv`` (or ``.txt``, as manythings' ``fra.txt``) file ->
      :func:`iter_tsv`, with ``alignment_col=2`` when the third column of the first line
      parses as a Pharaoh alignment (sure ``i-j`` and possible ``ipj`` links);
    * a prefix ``corpus`` such that ``corpus.en`` and ``corpus.fr`` exist, or one of those
      two files -> :func:`iter_moses` (source ``.en``, target ``.fr``; pass
      ``moses_suffixes=("fr", "en")`` for the other direction).

    A TSV file is read in its own column order. The choice and the checks that the files
    exist happen now; a CorpusError names the paths tried. Lines are read while iterating.
    """
    if not isinstance(path_or_paths, str | os.PathLike):
        paths = list(path_or_paths)
        if len(paths) != 2:
            raise ValueError(f"expected (source_path, target_path), got {len(paths)} paths")
        return iter_moses(paths[0], paths[1])

    path = Path(path_or_paths)
    if path.suffix.lower() in TSV_SUFFIXES and not path.is_file():
        _open(path).close()  # raises CorpusError: no such file / is a directory
    if path.is_file() and path.suffix.lower() in TSV_SUFFIXES:
        alignment_col = 2 if _has_alignment_column(path) else None
        return iter_tsv(path, alignment_col=alignment_col)

    src_ext, tgt_ext = moses_suffixes
    prefix = path
    if path.suffix in (f".{src_ext}", f".{tgt_ext}"):
        prefix = path.with_suffix("")
    src = prefix.with_name(f"{prefix.name}.{src_ext}")
    tgt = prefix.with_name(f"{prefix.name}.{tgt_ext}")
    if src.is_file() and tgt.is_file():
        return iter_moses(src, tgt)
    if path.is_file():
        raise CorpusError(
            f"{path}: cannot tell the corpus layout; give a .tsv file, a pair of files "
            f"(source, target), or a prefix with {src.name} and {tgt.name} beside it",
            path=path,
        )
    missing = [str(p) for p in (src, tgt) if not p.is_file()]
    raise CorpusError(
        f"{path}: no such corpus: not a .tsv file, and no Moses pair "
        f"(missing {', '.join(missing)})",
        path=path,
    )
