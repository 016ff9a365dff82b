"""Importers of real corpora into the project's own layout: ``attnviz corpus import``.

Each importer reads the files as their distributors ship them (see each folder's README in
``../shared/data``) and writes a corpus directory like the generated one::

    train.tsv, valid.tsv, test.tsv   english<TAB>french[<TAB>gold alignment]
    meta.json                        source files with their sha256, the split's seed and counts

Every sentence goes through :func:`attnviz.model.normalize.normalize_text` (NFC, the French
narrow and thin no-break spaces and U+00A0 as ordinary spaces, zero-width spaces and soft
hyphens dropped), the same rule the tokenizers apply to what a user types.

- **tatoeba** (``fra.txt`` of manythings.org, gzipped or not): split by English sentence, so
  all translations of one English sentence fall in the same split; then every training pair
  that shares a side (after normalisation) with a valid or test pair is left out of train.
- **multi30k** (the folder of ``train/val/test_*.{en,fr}.gz``): the official splits, val as
  valid, test_2016_flickr as test, and every other test set as ``<name>.tsv``.
- **hansards** (WPT03: ``test.e/.f/.wa.nonullalign`` and the trial ``dev.*``): test.tsv and
  valid.tsv (the trial set) with the gold links in the third column, 0-based Pharaoh, sure
  links ``i-j`` and possible links ``ipj`` (the notation of the word-alignment tools that
  read sure and possible links).
"""

from __future__ import annotations

import gzip
import json
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from attnviz.model.checkpoint import file_sha256
from attnviz.model.corpus.readers import CorpusError
from attnviz.model.normalize import normalize_text

KINDS = ("tatoeba", "multi30k", "hansards")
TATOEBA_TEST = 2500
TATOEBA_VALID = 1000


def _read_lines(path: Path) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return [line.rstrip("\n").rstrip("\r") for line in f]
    except FileNotFoundError as e:
        raise CorpusError(f"{path}: missing", path=path) from e
    except (OSError, UnicodeDecodeError) as e:
        raise CorpusError(f"{path}: cannot read ({e})", path=path) from e


def _write_tsv(path: Path, rows: Sequence[tuple[str, ...]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write("\t".join(row) + "\n")
    tmp.replace(path)


def _write_meta(out: Path, meta: dict[str, Any]) -> None:
    (out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def _source_entry(path: Path) -> dict[str, Any]:
    return {"file": path.name, "sha256": file_sha256(path), "bytes": path.stat().st_size}


# -- Tatoeba -------------------------------------------------------------------------------


def read_tatoeba(path: Path, limit: int | None = None) -> list[tuple[str, str]]:
    """Normalised (english, french) pairs of a manythings TSV; CorpusError naming the line."""
    pairs: list[tuple[str, str]] = []
    for lineno, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < 2:
            raise CorpusError(
                f"{path}:{lineno}: expected 'english<TAB>french', found no tab",
                path=path,
                lineno=lineno,
            )
        en, fr = normalize_text(cells[0]), normalize_text(cells[1])
        if en and fr:
            pairs.append((en, fr))
        if limit is not None and len(pairs) >= limit:
            break
    return pairs


def split_tatoeba(
    pairs: list[tuple[str, str]],
    seed: int,
    n_test: int = TATOEBA_TEST,
    n_valid: int = TATOEBA_VALID,
) -> tuple[dict[str, list[tuple[str, str]]], dict[str, int]]:
    """(splits, counts of what was left out). Deterministic for a seed.

    Pairs are grouped by English sentence; groups are shuffled and dealt to test until it
    holds ``n_test`` pairs, then to valid; the rest is train, less every pair that shares its
    English or its French with a held-out pair. Exact duplicate pairs are kept once.
    """
    unique = list(dict.fromkeys(pairs))
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for en, fr in unique:
        groups[en].append((en, fr))
    keys = sorted(groups)
    random.Random(f"tatoeba:{seed}").shuffle(keys)
    test: list[tuple[str, str]] = []
    valid: list[tuple[str, str]] = []
    train: list[tuple[str, str]] = []
    test_sides: set[str] = set()
    leaked = 0
    for key in keys:
        if len(test) < n_test:
            test.extend(groups[key])
            test_sides.update(s for pair in groups[key] for s in pair)
        elif len(valid) < n_valid:
            # valid must not leak into test either (its French may repeat a test French)
            fresh = [p for p in groups[key] if p[0] not in test_sides and p[1] not in test_sides]
            leaked += len(groups[key]) - len(fresh)
            valid.extend(fresh)
        else:
            train.extend(groups[key])
    # a sentence held out on one side may also be a sentence of the other language in train
    # ("Tom." is English and French): any side matching any held-out side leaves train
    held = test_sides | {s for pair in valid for s in pair}
    kept = [(en, fr) for en, fr in train if en not in held and fr not in held]
    dropped = {
        "duplicate_pairs": len(pairs) - len(unique),
        "train_overlapping_held_out": len(train) - len(kept),
        "valid_overlapping_test": leaked,
    }
    return {"train": kept, "valid": valid, "test": test}, dropped


def import_tatoeba(src: Path, out: Path, seed: int = 1, limit: int | None = None) -> dict[str, Any]:
    pairs = read_tatoeba(src, limit)
    if limit is not None:  # a slice (tests): keep the held-out sets in proportion
        n_test = max(1, min(TATOEBA_TEST, len(pairs) // 20))
        n_valid = max(1, min(TATOEBA_VALID, len(pairs) // 40))
    else:
        n_test, n_valid = TATOEBA_TEST, TATOEBA_VALID
    splits, dropped = split_tatoeba(pairs, seed, n_test, n_valid)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in splits.items():
        _write_tsv(out / f"{name}.tsv", rows)
    meta = {
        "corpus": "tatoeba",
        "description": "Tatoeba everyday sentences (manythings.org Anki export)",
        "licence": "CC-BY 2.0 (France)",
        "attribution": "tatoeba.org and www.manythings.org/anki",
        "source": _source_entry(src),
        "pairs_read": len(pairs),
        "limit": limit,
        "seed": seed,
        "split_rule": "by English sentence; train pairs sharing a side with valid/test dropped",
        "splits": {name: len(rows) for name, rows in splits.items()},
        "dropped": dropped,
    }
    _write_meta(out, meta)
    return meta


# -- Multi30k ------------------------------------------------------------------------------

MULTI30K_SPLITS = {
    "train": "train",
    "valid": "val",
    "test": "test_2016_flickr",
    "test_2017_flickr": "test_2017_flickr",
    "test_2017_mscoco": "test_2017_mscoco",
    "test_2018_flickr": "test_2018_flickr",
}


def import_multi30k(src: Path, out: Path, limit: int | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    sources: dict[str, Any] = {}
    for name, stem in MULTI30K_SPLITS.items():
        en_path, fr_path = src / f"{stem}.en.gz", src / f"{stem}.fr.gz"
        en, fr = _read_lines(en_path), _read_lines(fr_path)
        if len(en) != len(fr):
            raise CorpusError(
                f"{en_path} has {len(en)} lines but {fr_path} has {len(fr)}", path=en_path
            )
        rows = [(normalize_text(e), normalize_text(f)) for e, f in zip(en, fr, strict=True)]
        rows = rows[:limit] if limit is not None else rows
        _write_tsv(out / f"{name}.tsv", rows)
        counts[name] = len(rows)
        sources[name] = [_source_entry(en_path), _source_entry(fr_path)]
    meta = {
        "corpus": "multi30k",
        "description": "Multi30k image descriptions (research and educational use only)",
        "licence": "research and educational use (Flickr terms); no licence for the text",
        "attribution": "Elliott et al. 2016, 2017 (github.com/multi30k/dataset)",
        "source": sources,
        "limit": limit,
        "splits": counts,
        "split_rule": "the official splits (val = valid, test_2016_flickr = test)",
    }
    _write_meta(out, meta)
    return meta


# -- WPT03 Hansards ------------------------------------------------------------------------


def read_wa(path: Path) -> dict[int, list[tuple[int, int, str]]]:
    """``sent_id e_pos f_pos S|P`` lines (1-based) -> {sentence id: [(e0, f0, 'S'|'P')]}."""
    links: dict[int, list[tuple[int, int, str]]] = defaultdict(list)
    for lineno, line in enumerate(_read_lines(path), start=1):
        cells = line.split()
        if not cells:
            continue
        try:
            sid, e, f = int(cells[0]), int(cells[1]), int(cells[2])
            kind = cells[3] if len(cells) > 3 else "S"
        except (ValueError, IndexError) as err:
            raise CorpusError(
                f"{path}:{lineno}: expected 'sent_id e_pos f_pos S|P', got {line!r}",
                path=path,
                lineno=lineno,
            ) from err
        if kind not in ("S", "P") or e < 1 or f < 1:
            raise CorpusError(
                f"{path}:{lineno}: bad link {line!r} (positions from 1, kind S or P)",
                path=path,
                lineno=lineno,
            )
        links[sid].append((e - 1, f - 1, kind))
    return links


def format_gold(links: list[tuple[int, int, str]]) -> str:
    """0-based Pharaoh with sure ``i-j`` and possible ``ipj`` links, sorted."""
    return " ".join(f"{e}{'-' if k == 'S' else 'p'}{f}" for e, f, k in sorted(links))


def _hansards_rows(src: Path, stem: str) -> Iterator[tuple[str, str, str]]:
    en = _read_lines(src / f"{stem}.e")
    fr = _read_lines(src / f"{stem}.f")
    if len(en) != len(fr):
        raise CorpusError(f"{src / stem}.e and .f differ in length ({len(en)}, {len(fr)})")
    gold = read_wa(src / f"{stem}.wa.nonullalign")
    for n, (e, f) in enumerate(zip(en, fr, strict=True), start=1):
        e_words, f_words = e.split(), f.split()
        for i, j, _ in gold.get(n, []):
            if i >= len(e_words) or j >= len(f_words):
                raise CorpusError(f"{src / stem}: sentence {n}: link {i + 1}-{j + 1} out of range")
        yield " ".join(e_words), " ".join(f_words), format_gold(gold.get(n, []))


def import_hansards(src: Path, out: Path, limit: int | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, stem in (("test", "test"), ("valid", "dev")):
        rows = list(_hansards_rows(src, stem))[:limit]
        _write_tsv(out / f"{name}.tsv", rows)
        counts[name] = len(rows)
    files = [f"{s}.{x}" for s in ("test", "dev") for x in ("e", "f", "wa.nonullalign")]
    meta = {
        "corpus": "hansards",
        "description": "WPT03 English-French word-alignment gold standard (Canadian Hansards)",
        "licence": "research use with attribution",
        "attribution": "Mihalcea & Pedersen 2003 (WPT03); alignments by Och & Ney",
        "source": [_source_entry(src / f) for f in files],
        "limit": limit,
        "splits": counts,
        "pretokenized": True,
        "gold": "0-based Pharaoh: sure i-j, possible ipj",
        "split_rule": "test = the 447-sentence test set, valid = the 37-sentence trial set",
    }
    _write_meta(out, meta)
    return meta


def import_corpus(
    kind: str, src: Path, out: Path, *, seed: int = 1, limit: int | None = None
) -> dict[str, Any]:
    """Import one corpus; ValueError listing the valid kinds."""
    if kind == "tatoeba":
        if src.is_dir():
            src = src / "fra.txt.gz"
        return import_tatoeba(src, out, seed, limit)
    if kind == "multi30k":
        return import_multi30k(src, out, limit)
    if kind == "hansards":
        return import_hansards(src, out, limit)
    raise ValueError(f"unknown corpus {kind!r}; valid: {', '.join(KINDS)}")
