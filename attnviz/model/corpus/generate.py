"""Generate the bilingual corpus: sample, realise, deduplicate, split, write TSV files.

Deterministic for a seed whatever the number of worker processes: sentences are drawn in
numbered chunks, chunk k from ``random.Random(f"{seed}:{k}")``, and the chunks are
consumed in order. Every English and every French sentence occurs once in the whole
corpus, so no sentence can appear in two splits.

Each output line is ``english<TAB>french<TAB>alignment<TAB>phenomena``: the alignment is
Pharaoh ``i-j`` (0-based, English token i to French token j, over
:func:`attnviz.model.tokenize.tokenize`), the phenomena a comma list (extra columns are
ignored by readers of the Tatoeba layout).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from attnviz.model.corpus.lexicon import default_lexicon
from attnviz.model.corpus.realise import RealisationError, realise
from attnviz.model.corpus.sentences import PHENOMENA, Sampler
from attnviz.model.tokenize import tokenize

CHUNK = 500
SPLITS = ("train", "valid", "test")
LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 15), (16, 20), (21, 25), (26, 999))


@dataclass(frozen=True)
class Row:
    en: str
    fr: str
    alignment: str
    phenomena: str
    en_len: int

    def line(self) -> str:
        return f"{self.en}\t{self.fr}\t{self.alignment}\t{self.phenomena}\n"


def _chunk(seed: int, index: int) -> list[Row]:
    rng = random.Random(f"{seed}:{index}")
    sampler = Sampler(default_lexicon(), rng)
    rows = []
    for _ in range(CHUNK):
        sentence = sampler.sentence()
        try:
            pair = realise(sentence)
        except RealisationError:
            continue
        rows.append(
            Row(
                pair.en.text,
                pair.fr.text,
                " ".join(f"{i}-{j}" for i, j in pair.alignment),
                ",".join(sorted(pair.phenomena)),
                len(pair.en.tokens),
            )
        )
    return rows


def _chunks(seed: int, workers: int) -> Iterator[list[Row]]:
    if workers <= 1:
        index = 0
        while True:
            yield _chunk(seed, index)
            index += 1
    pool = ProcessPoolExecutor(workers)
    try:
        index = 0
        ahead = workers * 2
        futures = [pool.submit(_chunk, seed, i) for i in range(ahead)]
        while True:
            yield futures.pop(0).result()
            futures.append(pool.submit(_chunk, seed, index + ahead))
            index += 1
    finally:  # the caller stops when it has enough: drop the chunks drawn ahead
        pool.shutdown(wait=False, cancel_futures=True)


def generate_rows(pairs: int, seed: int, workers: int = 2, progress: bool = True) -> list[Row]:
    """``pairs`` distinct sentence pairs; no English or French sentence twice."""
    seen_en: set[str] = set()
    seen_fr: set[str] = set()
    rows: list[Row] = []
    bar = tqdm(total=pairs, unit="pair", disable=not progress, desc="generating")
    empty_chunks = 0
    for chunk in _chunks(seed, workers):
        added = 0
        for row in chunk:
            if row.en in seen_en or row.fr in seen_fr:
                continue
            seen_en.add(row.en)
            seen_fr.add(row.fr)
            rows.append(row)
            added += 1
            if len(rows) == pairs:
                break
        bar.update(added)
        if len(rows) == pairs:
            break
        empty_chunks = empty_chunks + 1 if added == 0 else 0
        if empty_chunks >= 20:
            raise RuntimeError(
                f"only {len(rows)} distinct pairs could be drawn; the lexicon is too small "
                f"for {pairs}"
            )
    bar.close()
    return rows


def split_sizes(pairs: int) -> tuple[int, int]:
    """(valid, test) sizes: 1.25% each, at most 2,500, at least 1 (for tiny corpora)."""
    n = max(1, min(2500, pairs // 80)) if pairs >= 80 else max(1, pairs // 10)
    return n, n


def split_rows(rows: list[Row], seed: int) -> dict[str, list[Row]]:
    """Test and valid drawn evenly from each length bucket, the rest is train."""
    n_valid, n_test = split_sizes(len(rows))
    rng = random.Random(f"{seed}:split")
    order = list(range(len(rows)))
    rng.shuffle(order)
    buckets: dict[int, list[int]] = {b: [] for b in range(len(LENGTH_BUCKETS))}
    for i in order:
        n = rows[i].en_len
        b = next(k for k, (lo, hi) in enumerate(LENGTH_BUCKETS) if lo <= n <= hi)
        buckets[b].append(i)
    taken: dict[str, list[int]] = {"test": [], "valid": []}
    for split, size in (("test", n_test), ("valid", n_valid)):
        # round-robin over buckets, so short and long sentences are equally present
        while len(taken[split]) < size and any(buckets.values()):
            for b in buckets:
                if buckets[b] and len(taken[split]) < size:
                    taken[split].append(buckets[b].pop())
    held = set(taken["test"]) | set(taken["valid"])
    out = {
        "train": [rows[i] for i in range(len(rows)) if i not in held],
        "valid": [rows[i] for i in sorted(taken["valid"])],
        "test": [rows[i] for i in sorted(taken["test"])],
    }
    return out


def generate_corpus(
    out: Path, pairs: int, seed: int, workers: int = 2, progress: bool = True
) -> dict[str, int]:
    """Write ``train.tsv``, ``valid.tsv``, ``test.tsv`` and ``meta.json`` into ``out``."""
    rows = generate_rows(pairs, seed, workers, progress)
    splits = split_rows(rows, seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        tmp = out / f"{name}.tsv.tmp"
        with tmp.open("w", encoding="utf-8") as f:
            f.writelines(r.line() for r in part)
        tmp.replace(out / f"{name}.tsv")
    counts = {name: len(part) for name, part in splits.items()}
    meta = {"generator": "attnviz", "seed": seed, "pairs": pairs, "splits": counts}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return counts


# -------------------------------------------------------------------------- stats
def corpus_stats(directory: Path) -> dict[str, object]:
    """Pairs per split, vocabulary sizes, a length histogram and phenomenon counts."""
    stats: dict[str, object] = {}
    splits: dict[str, int] = {}
    vocab = {"en": Counter[str](), "fr": Counter[str]()}
    lengths: Counter[int] = Counter()
    phenomena: Counter[str] = Counter()
    total = 0
    for split in SPLITS:
        path = directory / f"{split}.tsv"
        if not path.exists():
            continue
        n = 0
        with path.open(encoding="utf-8") as f:
            for line in f:
                cols = line.rstrip("\n").split("\t")
                en_tokens = tokenize(cols[0], "en", lowercase=True)
                vocab["en"].update(en_tokens)
                vocab["fr"].update(tokenize(cols[1], "fr", lowercase=True))
                lengths[len(en_tokens)] += 1
                if len(cols) > 3 and cols[3]:
                    phenomena.update(cols[3].split(","))
                n += 1
        splits[split] = n
        total += n
    if not splits:
        raise FileNotFoundError(f"{directory}: no train.tsv, valid.tsv or test.tsv")
    stats["pairs"] = splits
    stats["total"] = total
    stats["vocabulary"] = {lang: len(c) for lang, c in vocab.items()}
    stats["english_length"] = {
        "min": min(lengths),
        "max": max(lengths),
        "histogram": {
            f"{lo}-{hi}" if hi < 999 else f"{lo}+": sum(
                c for n, c in lengths.items() if lo <= n <= hi
            )
            for lo, hi in LENGTH_BUCKETS
        },
    }
    meta_path = directory / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    if meta.get("corpus"):  # an imported real corpus: where it came from, not phenomena
        keys = ("corpus", "description", "licence", "attribution", "source", "seed", "dropped")
        stats["corpus"] = {k: meta[k] for k in keys if k in meta}
        return stats
    stats["phenomena"] = {
        p: {"pairs": phenomena[p], "percent": round(100 * phenomena[p] / total, 2)}
        for p in PHENOMENA
    }
    return stats


def format_stats(stats: dict[str, object]) -> str:
    """A human-readable report with bars, for the terminal."""
    lines = [f"pairs: {stats['pairs']} (total {stats['total']})"]
    lines.append(f"vocabulary (lower-cased tokens): {stats['vocabulary']}")
    lengths = stats["english_length"]
    assert isinstance(lengths, dict)
    lines.append(f"English length: {lengths['min']}..{lengths['max']} tokens")
    hist = lengths["histogram"]
    top = max(hist.values()) or 1
    for bucket, c in hist.items():
        lines.append(f"  {bucket:>6} {'#' * round(40 * c / top):<40} {c}")
    corpus = stats.get("corpus")
    if isinstance(corpus, dict):
        for key, value in corpus.items():
            if key == "source" and isinstance(value, dict):
                value = f"{value['file']} (sha256 {value['sha256']})"
            elif key == "source" and isinstance(value, list):
                value = f"{len(value)} files (sha256 in meta.json)"
            lines.append(f"{key}: {value}")
        return "\n".join(lines)
    lines.append("phenomena (pairs, % of all):")
    phen = stats["phenomena"]
    assert isinstance(phen, dict)
    for name, v in phen.items():
        lines.append(
            f"  {name:<22} {'#' * round(v['percent'] / 2.5):<40} {v['pairs']} ({v['percent']}%)"
        )
    return "\n".join(lines)
