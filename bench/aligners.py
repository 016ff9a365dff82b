"""Attention as word alignment, against a real word aligner: eflomal and every model.

    .venv/bin/python bench/aligners.py --corpus data/corpus [--models a b] [--markdown]
    .venv/bin/python bench/aligners.py --hansards [--models a b] [--markdown]

``--hansards`` scores on the WPT03 Hansards test set (447 pairs, Och & Ney's gold with
sure and possible links), imported from ../shared/data into data/hansards when missing:
eflomal is trained on the Tatoeba training split (data/tatoeba/train.tsv, imported when
missing) plus the Hansards sentences. The Hansards text is lower-cased and tokenized with
French contractions and elisions undone (``à le``, ``de épine``, ``souvenons - nous``), so
the Tatoeba text is brought to the same form for eflomal (lower-cased Moses tokens, ``au``
-> ``à le``, ``l'`` -> ``le``, hyphens apart; see :func:`hansards_style`), and the Hansards
sentences are aligned over their own whitespace tokens, the gold's. Every AER there uses
the sure and possible links (``--corpus DIR --train FILE`` does the same for any imported
pre-tokenised corpus).

1. eflomal (Östling & Tiedemann 2016, the PyPI package ``eflomal``; installed into the
   running venv with pip on first use) aligns the training corpus with the test sentences
   appended, as aligners are usually run (unsupervised: the more text, the better), over
   the tokens of ``attnviz.model.tokenize`` (the gold's tokens; eflomal lowercases them
   itself). It gives both directions (forward: each French token picks an English one;
   reverse: each English token picks a French one), symmetrised with grow-diag-final-and
   (Koehn et al. 2005, as Moses does) by default; ``--symmetrize`` picks another
   (intersect, union, forward, reverse). The AER of every variant is printed first.
   eflomal samples at random (no seed), so its AER varies a little between runs. Its
   result is kept in ``<corpus>/.cache/eflomal-<hash of the corpus files and options>.json``
   and reused for the same files and options (about 40 s of both cores otherwise, which
   slows anything else measured at the time); ``--rerun-eflomal`` aligns again.
2. Two reference rows: a diagonal baseline (target token j linked to source token
   round(j * (S-1) / (T-1))), and the best an argmax alignment can score, one link per
   target token (each aligned token given one of its gold links, each unaligned one a
   wrong link): the gold has many-to-many links (verb groups, *au* = *to the*), so even a
   perfect attention argmax cannot reach AER 0; this is its floor. Both rows are for
   en→fr (one link per French token); a fr→en model's argmax links each English token.
3. Every model folder under ``checkpoints/`` (or ``--models``, names or paths) is
   evaluated with :func:`attnviz.model.evaluate.evaluate` on ``test.tsv``: AER (forced) is
   the argmax attention of forced decoding of the reference, AER (greedy) that of the
   greedy output on the sentences translated exactly (their count in brackets).

All AERs are corpus-level, with the possible links where the gold has them (else sure
links only: AER = 1 - F1), English-French links as in the corpus (a fr->en model's links
are flipped to compare). Not part of the test run.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from attnviz.model.alignment import AerCounts, Link, aer_counts  # noqa: E402
from attnviz.model.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from attnviz.model.corpus.importers import import_hansards, import_tatoeba  # noqa: E402
from attnviz.model.corpus.readers import Pair, iter_pairs, parse_pharaoh, read_tsv  # noqa: E402
from attnviz.model.evaluate import (  # noqa: E402
    DEFAULT_MODELS_DIR,
    evaluate,
    is_pretokenized,
    resolve_device,
    resolve_model_dir,
)
from attnviz.model.tokenize import tokenize  # noqa: E402
from bench.report import render_table  # noqa: E402

SHARED_DATA = Path(os.environ.get("ATTNVIZ_SHARED_DATA") or REPO.parent / "shared" / "data")
SYMMETRIZATIONS = ("grow-diag-final-and", "intersect", "union", "forward", "reverse")
NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


# -- tokens -------------------------------------------------------------------------------

# French written the Hansards way: contractions and elisions undone (the gold's tokens)
_CONTRACTIONS = {"au": "à le", "aux": "à les", "du": "de le", "des": "de les"}
_ELISIONS = {
    "l'": "le", "d'": "de", "j'": "je", "n'": "ne", "qu'": "que", "c'": "ce", "s'": "se",
    "m'": "me", "t'": "te", "jusqu'": "jusque", "lorsqu'": "lorsque", "puisqu'": "puisque",
}  # fmt: skip
_HYPHEN = re.compile(r"(-)")


def hansards_style(text: str, lang: str) -> list[str]:
    """Lower-cased Moses tokens in the Hansards' way: hyphens as tokens of their own, and
    in French the contractions (``au``, ``du``, ``des``) and elisions (``l'``, ``qu'``)
    undone, as the WPT03 text has them."""
    out: list[str] = []
    for token in tokenize(text.lower(), lang):
        if token == "aujourd'hui":
            out += ["aujourd'", "hui"]
            continue
        for part in filter(None, _HYPHEN.split(token)):  # "souvenons-nous": 3 tokens
            if lang == "fr" and part in _CONTRACTIONS:
                out += _CONTRACTIONS[part].split()
            else:
                out.append(_ELISIONS.get(part, part) if lang == "fr" else part)
    return out


def words_of(pair: Pair, pretokenized: bool) -> tuple[list[str], list[str]]:
    """The tokens the gold of ``pair`` indexes (English, French)."""
    if pretokenized:
        return pair.source.split(), pair.target.split()
    return tokenize(pair.source, "en"), tokenize(pair.target, "fr")


# -- eflomal -----------------------------------------------------------------------------


EflomalResult = tuple[dict[str, AerCounts], dict[str, AerCounts], float]


def eflomal_results(
    train_path: Path,
    test_path: Path,
    train: Sequence[Pair],
    test: Sequence[Pair],
    n_samplers: int,
    *,
    rerun: bool,
    log: Callable[[str], None],
    pretokenized: bool = False,
) -> EflomalResult:
    """:func:`run_eflomal`'s result, from the cache when it holds one for these files and
    options (and ``rerun`` is off), else computed and stored there."""
    digest = hashlib.sha256()
    for path in (train_path, test_path):
        digest.update(path.read_bytes())
    digest.update(f"samplers={n_samplers} train={len(train)} test={len(test)}".encode())
    if pretokenized:  # another tokenization of the training text: another result
        digest.update(b"pretokenized test, hansards_style train, possible links")
    cache = test_path.parent / ".cache" / f"eflomal-{digest.hexdigest()[:20]}.json"
    if cache.is_file() and not rerun:
        stored = json.loads(cache.read_text(encoding="utf-8"))
        log(f"eflomal: its result of {stored['made']} from {cache} (--rerun-eflomal: again)")
        counts, all_counts = (
            {name: AerCounts(**c) for name, c in stored[part].items()} for part in ("test", "all")
        )
        return counts, all_counts, float(stored["seconds"])
    counts, all_counts, seconds = run_eflomal(train, test, n_samplers, pretokenized=pretokenized)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(
        json.dumps(
            {
                "made": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "seconds": seconds,
                "test": {k: dataclasses.asdict(c) for k, c in counts.items()},
                "all": {k: dataclasses.asdict(c) for k, c in all_counts.items()},
            }
        ),
        encoding="utf-8",
    )
    return counts, all_counts, seconds


def import_eflomal() -> Any:
    """``import eflomal``, installing it with pip into this venv first when it is missing."""
    try:
        return importlib.import_module("eflomal")
    except ImportError:
        pass
    pip = REPO / ".venv" / "bin" / "pip"
    command = [str(pip)] if pip.is_file() else [sys.executable, "-m", "pip"]
    command += ["install", "eflomal"]
    print(f"eflomal is not installed; running: {' '.join(command)}", file=sys.stderr)
    subprocess.run(command, check=True)
    importlib.invalidate_caches()
    return importlib.import_module("eflomal")


def grow_diag_final_and(
    forward: set[Link], reverse: set[Link], source_len: int, target_len: int
) -> set[Link]:
    """Koehn's grow-diag-final-and, as Moses' symal: start from the intersection, add
    union links next to (also diagonally) aligned points that cover an unaligned word, then
    union links of each direction joining two unaligned words."""
    union = forward | reverse
    alignment = forward & reverse
    src_done = {i for i, _ in alignment}
    tgt_done = {j for _, j in alignment}

    def add(i: int, j: int) -> None:
        alignment.add((i, j))
        src_done.add(i)
        tgt_done.add(j)

    added = True
    while added:
        added = False
        for i in range(source_len):
            for j in range(target_len):
                if (i, j) not in alignment:
                    continue
                for di, dj in NEIGHBOURS:
                    ni, nj = i + di, j + dj
                    if (
                        0 <= ni < source_len
                        and 0 <= nj < target_len
                        and (ni not in src_done or nj not in tgt_done)
                        and (ni, nj) in union
                        and (ni, nj) not in alignment
                    ):
                        add(ni, nj)
                        added = True
    for direction in (forward, reverse):
        for i in range(source_len):
            for j in range(target_len):
                if (i, j) in direction and i not in src_done and j not in tgt_done:
                    add(i, j)
    return alignment


def run_eflomal(
    train: Sequence[Pair], test: Sequence[Pair], n_samplers: int, *, pretokenized: bool = False
) -> tuple[dict[str, AerCounts], dict[str, AerCounts], float]:
    """Align train + test with eflomal. Returns AER counts for every symmetrisation on
    the test pairs and on all pairs with a gold alignment, and the seconds eflomal took.

    ``pretokenized``: the test pairs are aligned over their whitespace tokens (lower-cased)
    and the training pairs brought to the same form by :func:`hansards_style`."""
    eflomal = import_eflomal()
    pairs = [*train, *test]
    if pretokenized:
        src = [hansards_style(p.source, "en") for p in train]
        tgt = [hansards_style(p.target, "fr") for p in train]
        src += [p.source.lower().split() for p in test]
        tgt += [p.target.lower().split() for p in test]
    else:
        src = [tokenize(p.source, "en") for p in pairs]
        tgt = [tokenize(p.target, "fr") for p in pairs]
    src_lines = [" ".join(tokens) + "\n" for tokens in src]
    tgt_lines = [" ".join(tokens) + "\n" for tokens in tgt]
    with tempfile.TemporaryDirectory(prefix="attnviz-eflomal-") as tmp:
        fwd_path, rev_path = Path(tmp) / "fwd", Path(tmp) / "rev"
        start = time.perf_counter()
        # eflomal.Aligner.align(src_input, trg_input, links_filename_fwd, links_filename_rev)
        # takes iterables of space-separated lines and writes Pharaoh i-j (source-target)
        # links, one line per sentence, for each direction.
        eflomal.Aligner(n_samplers=n_samplers).align(
            src_lines,
            tgt_lines,
            links_filename_fwd=str(fwd_path),
            links_filename_rev=str(rev_path),
        )
        seconds = time.perf_counter() - start
        fwd_lines = fwd_path.read_text(encoding="utf-8").splitlines()
        rev_lines = rev_path.read_text(encoding="utf-8").splitlines()
    if len(fwd_lines) != len(pairs) or len(rev_lines) != len(pairs):
        raise RuntimeError(
            f"eflomal wrote {len(fwd_lines)} and {len(rev_lines)} lines for {len(pairs)} pairs"
        )
    test_counts = {name: AerCounts() for name in SYMMETRIZATIONS}
    all_counts = {name: AerCounts() for name in SYMMETRIZATIONS}
    first = len(train)
    for k, pair in enumerate(pairs):
        if pair.alignment is None:
            continue
        fwd = set(parse_pharaoh(fwd_lines[k]))
        rev = set(parse_pharaoh(rev_lines[k]))
        variants = {
            "grow-diag-final-and": grow_diag_final_and(fwd, rev, len(src[k]), len(tgt[k])),
            "intersect": fwd & rev,
            "union": fwd | rev,
            "forward": fwd,
            "reverse": rev,
        }
        for name, links in variants.items():
            counts = aer_counts(links, pair.alignment, pair.possible)
            all_counts[name] = all_counts[name] + counts
            if k >= first:
                test_counts[name] = test_counts[name] + counts
    return test_counts, all_counts, seconds


def diagonal_counts(test: Iterable[Pair], pretokenized: bool = False) -> AerCounts:
    total = AerCounts()
    for pair in test:
        assert pair.alignment is not None
        src, tgt = words_of(pair, pretokenized)
        n_src, n_tgt = len(src), len(tgt)
        scale = (n_src - 1) / (n_tgt - 1) if n_tgt > 1 else 0.0
        links = [(round(j * scale), j) for j in range(n_tgt)]
        total = total + aer_counts(links, pair.alignment, pair.possible)
    return total


def one_link_oracle_counts(test: Iterable[Pair], pretokenized: bool = False) -> AerCounts:
    """The best an argmax alignment (exactly one link per target token) can do: each
    target token with a sure gold link gets one, else one with a possible link gets that,
    else a wrong link."""
    total = AerCounts()
    for pair in test:
        assert pair.alignment is not None
        n_tgt = len(words_of(pair, pretokenized)[1])
        sure = set(pair.alignment)
        possible = set(pair.possible or ())
        best = {j: i for i, j in sorted(possible, reverse=True)}  # one link per target ...
        best.update({j: i for i, j in sorted(sure, reverse=True)})  # ... sure when it can
        wrong = {j: (-1, j) for j in range(n_tgt) if j not in best}  # never in the gold
        links = [(i, j) for j, i in best.items()] + list(wrong.values())
        total = total + aer_counts(links, sure, possible)
    return total


# -- table --------------------------------------------------------------------------------

COLUMNS = (
    "model",
    "attention",
    "parameters",
    "BLEU",
    "chrF",
    "AER (forced)",
    "AER (greedy)",
    "best head AER",
    "attention~saliency ρ",
    "training time",
)


def _num(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def model_row(path: Path, result: dict[str, Any], card: dict[str, Any]) -> list[str]:
    greedy = _num(result["aer_greedy"], ".3f")
    if result["aer_greedy"] is not None:
        greedy += f" ({result['aer_greedy_sentences']})"
    training = card.get("training_seconds")
    heads = result.get("aer_by_head")
    best_head = "–"
    if heads:
        best = min(heads, key=lambda h: h["aer"])
        best_head = f"{best['aer']:.3f} (L{best['layer']} H{best['head']})"
    corr = result.get("saliency_correlation")
    config = card.get("config") or {}
    attention = str(result["attention"])
    if config.get("architecture") == "transformer":
        attention = f"transformer ({config['layers']} layers × {config['attention_heads']} heads)"
    return [
        f"{result['model']} ({result['source_lang']}→{result['target_lang']})",
        attention,
        f"{result['parameters']:,}",
        _num(result["bleu"], ".1f"),
        _num(result["chrf"], ".1f"),
        _num(result["aer"], ".3f"),
        greedy,
        best_head,
        _num(corr["mean"] if corr else None, ".2f"),
        _duration(float(training) if isinstance(training, int | float) else None),
    ]


def format_table(rows: list[list[str]], markdown: bool) -> str:
    return render_table(COLUMNS, rows, markdown, numeric_from=2)


def model_dirs(names: list[str] | None, models_dir: Path) -> list[Path]:
    if names:
        return [resolve_model_dir(name, models_dir) for name in names]
    if not models_dir.is_dir():
        return []
    return sorted(p for p in models_dir.iterdir() if (p / "card.json").is_file())


def hansards_corpora(log: Callable[[str], None]) -> tuple[Path, Path]:
    """(data/hansards, data/tatoeba/train.tsv), each imported from ../shared/data (or
    ATTNVIZ_SHARED_DATA) first when it is missing."""
    hansards, tatoeba = REPO / "data" / "hansards", REPO / "data" / "tatoeba"
    if not (hansards / "test.tsv").is_file():
        log(f"importing the WPT03 Hansards into {hansards}")
        import_hansards(SHARED_DATA / "hansards-wpt03-en-fr", hansards)
    if not (tatoeba / "train.tsv").is_file():
        log(f"importing Tatoeba into {tatoeba}")
        import_tatoeba(SHARED_DATA / "tatoeba-en-fr" / "fra.txt.gz", tatoeba)
    return hansards, tatoeba / "train.tsv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus",
        type=Path,
        default=REPO / "data" / "corpus",
        help="folder with train.tsv and test.tsv (default data/corpus)",
    )
    parser.add_argument(
        "--train",
        type=Path,
        default=None,
        help="eflomal's training pairs (default <corpus>/train.tsv)",
    )
    parser.add_argument(
        "--hansards",
        action="store_true",
        help="the WPT03 Hansards test set (sure and possible links), eflomal trained on "
        "Tatoeba's train split: --corpus data/hansards --train data/tatoeba/train.tsv, "
        "imported from ../shared/data when missing",
    )
    parser.add_argument(
        "--models",
        nargs="*",
        default=None,
        help="model folders or names under --models-dir (default: all)",
    )
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument(
        "--symmetrize",
        choices=SYMMETRIZATIONS,
        default=SYMMETRIZATIONS[0],
        help="which eflomal alignment goes in the table",
    )
    parser.add_argument("--no-eflomal", action="store_true", help="skip eflomal")
    parser.add_argument(
        "--rerun-eflomal", action="store_true", help="align again, not from the cache"
    )
    parser.add_argument("--samplers", type=int, default=3, help="eflomal's n_samplers")
    parser.add_argument("--limit", type=int, default=None, help="first N test pairs only")
    parser.add_argument(
        "--train-limit", type=int, default=None, help="first N training pairs only (eflomal)"
    )
    parser.add_argument(
        "--saliency",
        type=int,
        default=100,
        help="sentences read with saliency for the attention~saliency column (0: none)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--from-cards",
        action="store_true",
        help="take each model's metrics from its card when `attnviz evaluate --write-card` "
        "wrote them on this same test file (else evaluate it)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr)  # noqa: E731
    try:
        if args.hansards:
            args.corpus, args.train = hansards_corpora(log)
        train_path = args.train or args.corpus / "train.tsv"
        test_path = args.corpus / "test.tsv"
        pretokenized = is_pretokenized(test_path)
        train = list(iter_pairs(train_path))  # with its gold links when it has them
        test = read_tsv(test_path, alignment_col=2)
        device = resolve_device(args.device)
        dirs = model_dirs(args.models, args.models_dir)
    except (ValueError, OSError) as e:
        print(f"aligners: error: {e}", file=sys.stderr)
        return 2
    if args.limit is not None:
        test = test[: args.limit]
    if args.train_limit is not None:
        train = train[: args.train_limit]
    missing = [p.lineno for p in test if p.alignment is None]
    if missing:
        print(
            f"aligners: {test_path} has no gold alignment on lines {missing[:5]}", file=sys.stderr
        )
        return 2
    log(f"{len(train)} training pairs from {train_path}, {len(test)} test pairs from {test_path}")
    if pretokenized:
        sure = sum(len(set(p.alignment or ())) for p in test)
        possible = sum(len(set(p.possible or ()) - set(p.alignment or ())) for p in test)
        log(f"gold: {sure} sure and {possible} possible links over whitespace tokens")

    rows: list[list[str]] = []
    if not args.no_eflomal:
        counts, all_counts, seconds = eflomal_results(
            train_path,
            test_path,
            train,
            test,
            args.samplers,
            rerun=args.rerun_eflomal,
            log=log,
            pretokenized=pretokenized,
        )
        log(f"eflomal on {len(train) + len(test)} pairs: {seconds:.1f} s")
        log(f"  {'':<20} {'test':<38}  all pairs with gold")
        for name in SYMMETRIZATIONS:
            c, a = counts[name], all_counts[name]
            log(
                f"  {name:<20} AER {c.aer:.3f} (P {_num(c.precision, '.3f')}"
                f" R {_num(c.recall, '.3f')}, {c.predicted} links)  AER {a.aer:.3f}"
            )
        rows.append(
            [
                f"eflomal ({args.symmetrize})",
                "–",
                "–",
                "–",
                "–",
                f"{counts[args.symmetrize].aer:.3f}",
                "–",
                "–",
                "–",
                _duration(seconds),
            ]
        )
    diagonal = diagonal_counts(test, pretokenized)
    dash = ["–", "–", "–", "–"]
    rows.append(["diagonal baseline (en→fr)", "–", "–", "–", "–", f"{diagonal.aer:.3f}", *dash])
    ceiling = one_link_oracle_counts(test, pretokenized)
    rows.append(["best argmax (en→fr oracle)", "–", "–", "–", "–", f"{ceiling.aer:.3f}", *dash])

    for directory in dirs:
        try:
            loaded = load_checkpoint(directory, device)
        except CheckpointError as e:
            log(f"skipping {directory}: {e}")
            continue
        stored = loaded.card.get("metrics") or {}
        if args.from_cards and Path(str(stored.get("data"))).resolve() == test_path.resolve():
            log(f"{loaded.name}: metrics from its card ({stored.get('evaluated_at')})")
            result = {
                **stored,
                "model": loaded.name,
                "source_lang": loaded.source_lang,
                "target_lang": loaded.target_lang,
                "attention": loaded.model.config.attention,
                "parameters": loaded.model.num_parameters(),
            }
        else:
            log(f"evaluating {loaded.name} on {len(test)} pairs ...")
            result = evaluate(
                loaded,
                test,
                progress=sys.stderr.isatty(),
                pretokenized=pretokenized,
                saliency_sentences=args.saliency,
            )
        rows.append(model_row(directory, result, loaded.card))
        del loaded
    print(format_table(rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
