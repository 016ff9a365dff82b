"""The ``attnviz`` command: ``attnviz corpus generate|stats``, later train, evaluate,
translate and serve. Each subcommand is a small function; argparse does the rest."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

Handler = Callable[[argparse.Namespace], int]


def _corpus_generate(args: argparse.Namespace) -> int:
    from attnviz.model.corpus.generate import generate_corpus

    if args.pairs < 10:
        print("attnviz: --pairs must be at least 10", file=sys.stderr)
        return 2
    start = time.perf_counter()
    counts = generate_corpus(args.out, args.pairs, args.seed, args.workers, not args.quiet)
    took = time.perf_counter() - start
    print(f"wrote {args.out}: {counts} in {took:.1f} s")
    return 0


def _corpus_stats(args: argparse.Namespace) -> int:
    from attnviz.model.corpus.generate import corpus_stats, format_stats

    try:
        stats = corpus_stats(args.dir)
    except FileNotFoundError as e:
        print(f"attnviz: {e}", file=sys.stderr)
        return 2
    print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
    return 0


def _corpus_import(args: argparse.Namespace) -> int:
    from attnviz.model.corpus.importers import import_corpus
    from attnviz.model.corpus.readers import CorpusError

    if args.limit is not None and args.limit < 10:
        print("attnviz corpus import: --limit must be at least 10", file=sys.stderr)
        return 2
    try:
        meta = import_corpus(args.kind, args.source, args.out, seed=args.seed, limit=args.limit)
    except (CorpusError, ValueError) as e:
        print(f"attnviz corpus import: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out}: {meta['splits']}"
        + (f", left out {meta['dropped']}" if "dropped" in meta else "")
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from attnviz.model.train import TrainConfig, config_from_args, train

    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    try:
        cfg = config_from_args(values)
        progress = train(cfg, resume=args.resume, progress_bar=not args.quiet)
    except (ValueError, FileNotFoundError) as e:
        print(f"attnviz train: {e}", file=sys.stderr)
        return 2
    print(
        f"done: {progress.step} steps, best valid BLEU {progress.best_bleu:.2f}, "
        f"{progress.seconds / 60:.1f} min -> {cfg.out}"
    )
    return 0


def _add_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Options come from TrainConfig's fields, so they are written down once."""
    from dataclasses import MISSING, fields

    from attnviz.model.attention import ATTENTIONS
    from attnviz.model.train import TrainConfig

    p = sub.add_parser("train", help="train a model (also under torchrun for several processes)")
    choices: dict[str, list[str]] = {
        "architecture": ["rnn", "transformer"],
        "attention": sorted(ATTENTIONS),
        "decoder_style": ["bahdanau", "luong"],
        "rnn_type": ["gru", "lstm"],
        "source_lang": ["en", "fr"],
        "target_lang": ["en", "fr"],
        "lr_schedule": ["plateau", "linear"],
    }
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        required = f.default is MISSING
        default = None if required else f.default
        if isinstance(default, bool):
            p.add_argument(flag, dest=f.name, action="store_true", help=f"(default {default})")
            continue
        kind = type(default) if default is not None else str
        p.add_argument(
            flag,
            dest=f.name,
            type=kind,
            default=default,
            required=required,
            choices=choices.get(f.name),
            help=None if required else f"(default {default!r})",
        )
    p.add_argument("--resume", action="store_true", help="continue from the saved state")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=_train)


def _evaluate(args: argparse.Namespace) -> int:
    from attnviz.model.evaluate import evaluate_command

    return evaluate_command(
        args.model,
        args.data,
        limit=args.limit,
        as_json=args.json,
        write_card=args.write_card,
        models_dir=args.models_dir,
        device=args.device,
        choose_layer=args.set_alignment_layer,
    )


def _add_evaluate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from attnviz.model.evaluate import DEFAULT_MODELS_DIR

    p = sub.add_parser("evaluate", help="BLEU, chrF, AER and BLEU by length of a model")
    p.add_argument("--model", required=True, help="model folder, or a name under --models-dir")
    p.add_argument("--data", type=Path, required=True, help="TSV (with gold alignments for AER)")
    p.add_argument("--limit", type=int, default=None, help="first N pairs only")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--write-card", action="store_true", help="store the metrics in the card")
    p.add_argument(
        "--set-alignment-layer",
        action="store_true",
        help="Transformer: make the layer whose head average aligns best on this data (use "
        "held-out data, e.g. the validation split) the main attention, in the card",
    )
    p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(handler=_evaluate)


def _translate(args: argparse.Namespace) -> int:
    import torch

    from attnviz.model.translator import translate_command

    if args.threads < 0:
        print(f"attnviz translate: --threads must be >= 0, got {args.threads}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    return translate_command(
        args.model,
        args.beam_size,
        args.alignment,
        args.json,
        args.batch_size,
        args.device,
        sys.stdin,
        sys.stdout,
        workers=args.workers,
        shortlist=args.shortlist,
        int8=args.int8,
    )


def _add_translate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("translate", help="translate sentences from stdin, one per line")
    p.add_argument("--model", required=True, help="model folder, or a name under checkpoints/")
    p.add_argument("--beam-size", type=int, default=1, help="1 = greedy (default)")
    p.add_argument("--alignment", action="store_true", help="append ' ||| 0-0 1-2 ...'")
    p.add_argument("--json", action="store_true", help="one JSON result per line")
    p.add_argument("--batch-size", type=int, default=64, help="sentences per batch")
    p.add_argument(
        "--shortlist",
        action="store_true",
        help="score only the model's lexical shortlist (faster; probabilities normalised over "
        "it; build one with `attnviz shortlist`)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="score with an int8 copy of the output layer (CPU only; faster for the RNN "
        "models, about even for the Transformer; probabilities move by a point or two at "
        "most, and now and then a word with them)",
    )
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: decoding is a chain of small steps, and on a busy "
        "CPU more threads wait for each other; 0 = torch's default)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=0,
        help="batches decoded at the same time, one thread each (default 0: on the CPU, "
        "the cores this process may use / --threads; one on a GPU)",
    )
    p.set_defaults(handler=_translate)


def _shortlist(args: argparse.Namespace) -> int:
    from attnviz.model.checkpoint import CheckpointError
    from attnviz.model.train import shortlist_command
    from attnviz.model.translator import resolve_model_path

    try:
        path, n_src, n_pairs = shortlist_command(
            resolve_model_path(args.model), args.data, args.per_source, args.common
        )
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        print(f"attnviz shortlist: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}: {n_src} source tokens x {args.per_source}, from {n_pairs} pairs")
    return 0


def _add_shortlist(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from attnviz.model.shortlist import DEFAULT_COMMON, DEFAULT_PER_SOURCE

    p = sub.add_parser(
        "shortlist",
        help="build a model's lexical shortlist (the opt-in fast output layer) from its data",
    )
    p.add_argument("--model", required=True, help="model folder, or a name under checkpoints/")
    p.add_argument("--data", default=None, help="training data (default: the card's)")
    p.add_argument(
        "--per-source",
        type=int,
        default=DEFAULT_PER_SOURCE,
        help=f"target words kept per source word (default {DEFAULT_PER_SOURCE})",
    )
    p.add_argument(
        "--common",
        type=int,
        default=DEFAULT_COMMON,
        help=f"most frequent target words always kept (default {DEFAULT_COMMON})",
    )
    p.set_defaults(handler=_shortlist)


def _serve(args: argparse.Namespace) -> int:
    from attnviz.app.server import serve_command

    return serve_command(args.host, args.port, args.models_dir, args.device, args.processes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnviz", description="See where a neural translation model looks."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    corpus = sub.add_parser("corpus", help="generate, import and describe bilingual corpora")
    corpus_sub = corpus.add_subparsers(dest="corpus_command", required=True)
    gen = corpus_sub.add_parser("generate", help="generate English-French pairs with pyrealb")
    gen.add_argument("--pairs", type=int, default=200_000, help="distinct pairs (default 200000)")
    gen.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    gen.add_argument("--out", type=Path, required=True, help="output directory")
    gen.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(handler=_corpus_generate)
    imp = corpus_sub.add_parser(
        "import", help="read a real corpus (tatoeba, multi30k, hansards) into train/valid/test.tsv"
    )
    imp.add_argument("kind", choices=["tatoeba", "multi30k", "hansards"], help="which corpus")
    imp.add_argument(
        "source",
        type=Path,
        help="the distributed file or folder (tatoeba: fra.txt[.gz] or its folder; multi30k: "
        "the folder of *.en.gz/*.fr.gz; hansards: the folder of test.e/.f/.wa.nonullalign)",
    )
    imp.add_argument("--out", type=Path, required=True, help="output directory")
    imp.add_argument("--seed", type=int, default=1, help="split seed (tatoeba; default 1)")
    imp.add_argument("--limit", type=int, default=None, help="read the first N pairs only")
    imp.set_defaults(handler=_corpus_import)
    stats = corpus_sub.add_parser("stats", help="pairs, vocabulary, lengths, phenomena")
    stats.add_argument("dir", type=Path, help="corpus directory (train/valid/test.tsv)")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=_corpus_stats)

    _add_train(sub)
    _add_evaluate(sub)
    _add_translate(sub)
    _add_shortlist(sub)

    serve = sub.add_parser("serve", help="start the web service")
    # defaults None: the ATTNVIZ_* environment variables then apply
    serve.add_argument("--host", default=None, help="default 127.0.0.1 (ATTNVIZ_HOST)")
    serve.add_argument("--port", type=int, default=None, help="default 8000 (ATTNVIZ_PORT)")
    serve.add_argument("--models-dir", type=Path, default=None, help="default checkpoints/")
    serve.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    serve.add_argument(
        "--processes",
        type=int,
        default=None,
        help="server processes, each with every model (default 1; ATTNVIZ_PROCESSES)",
    )
    serve.set_defaults(handler=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
