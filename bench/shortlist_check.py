"""What the lexical shortlist changes, and what it buys (not part of the test run).

    .venv/bin/python bench/shortlist_check.py [--models en-fr-additive,en-fr-transformer]
                                              [--data data/corpus/test.tsv] [--limit 2500]
                                              [--runs 200] [--markdown]

For each model (its folder must hold ``shortlist.safetensors``: ``attnviz shortlist``),
decodes the source side of the test file with the full output layer and with the
shortlist, greedy and beam 5, in batches of 64 (sorted by length), and prints:

- the output space: mean and largest number of target ids a batch of 64 and a single
  sentence score, against the vocabulary;
- sentences whose best translation is identical, and BLEU of both against the references;
- for the identical ones, how far the shortlist's token probabilities are from the full
  softmax (median, 99th percentile, largest |p_short - p_full| over their tokens), and the
  largest difference in attention;
- speed, one torch thread: the 10-word sentence (median ms, greedy and beam 5) and
  sentences/s at batch 64, full and shortlist, in one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import sacrebleu
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attnviz.model.checkpoint import LoadedModel, load_checkpoint  # noqa: E402
from attnviz.model.decoding import DecodeOptions, Hypothesis, decode, decode_batch  # noqa: E402
from attnviz.model.shortlist import Shortlist  # noqa: E402
from attnviz.model.tokenize import detokenize, tokenize  # noqa: E402
from attnviz.model.translator import resolve_model_path  # noqa: E402
from bench.decode_speed import TEN_WORDS, default_data, read_pairs  # noqa: E402
from bench.report import load_average, render_table, timed  # noqa: E402


def run(
    loaded: LoadedModel,
    sources: list[list[int]],
    options: DecodeOptions,
    shortlist: Shortlist | None,
) -> tuple[list[Hypothesis], float]:
    """Best hypotheses in input order, and sentences/s, batches of 64 sorted by length."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    best: list[Hypothesis | None] = [None] * len(sources)
    start = time.perf_counter()
    for lo in range(0, len(order), 64):
        idx = order[lo : lo + 64]
        results = decode_batch(
            loaded.model, [sources[i] for i in idx], options, shortlist=shortlist
        )
        for i, res in zip(idx, results, strict=True):
            best[i] = res.best
    rate = len(sources) / (time.perf_counter() - start)
    return [h for h in best if h is not None], rate


def text_of(loaded: LoadedModel, hyp: Hypothesis) -> str:
    return detokenize(loaded.tgt_vocab.decode(hyp.token_ids), loaded.target_lang)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="en-fr-additive,en-fr-transformer")
    parser.add_argument("--data", type=Path, default=default_data(), help="TSV test file")
    parser.add_argument("--limit", type=int, default=2500)
    parser.add_argument("--runs", type=int, default=200, help="runs per latency figure")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pairs = read_pairs(args.data)[: args.limit]
    print(f"torch {torch.__version__}, one thread, load average {load_average()}")
    print(f"data: {args.data} ({len(pairs)} sentences)")
    fidelity, speed = [], []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        loaded = load_checkpoint(resolve_model_path(name), "cpu")
        shortlist = loaded.shortlist
        if shortlist is None:
            print(f"{name}: no shortlist.safetensors (attnviz shortlist --model {name})")
            continue
        src = [
            loaded.src_vocab.encode(tokenize(s, loaded.source_lang), add_eos=True) for s, _ in pairs
        ]
        refs = [r for _, r in pairs]
        order = sorted(range(len(src)), key=lambda i: len(src[i]))
        sizes = [
            shortlist.ids_for([src[i] for i in order[lo : lo + 64]]).numel()
            for lo in range(0, len(order), 64)
        ]
        single = [shortlist.ids_for([s]).numel() for s in src]
        vocab = loaded.model.config.tgt_vocab_size
        print(
            f"\n{name}: vocabulary {vocab}; shortlist per sentence mean "
            f"{statistics.mean(single):.0f}"
            f" (largest {max(single)}), per batch of 64 mean {statistics.mean(sizes):.0f}"
            f" (largest {max(sizes)})"
        )
        rates = {}
        for beam in (1, 5):
            options = DecodeOptions(beam_size=beam)
            full, rate_full = run(loaded, src, options, None)
            short, rate_short = run(loaded, src, options, shortlist)
            rates[beam] = (rate_full, rate_short)
            same = [(a, b) for a, b in zip(full, short, strict=True) if a.token_ids == b.token_ids]
            diffs = np.concatenate(
                [np.abs(np.exp(b.token_logprobs) - np.exp(a.token_logprobs)) for a, b in same]
            )
            att = (
                max(
                    float(np.abs(a.attention - b.attention).max())
                    for a, b in same
                    if a.attention is not None and b.attention is not None
                )
                if loaded.model.has_attention
                else 0.0
            )
            bleu_full = sacrebleu.corpus_bleu([text_of(loaded, h) for h in full], [refs]).score
            bleu_short = sacrebleu.corpus_bleu([text_of(loaded, h) for h in short], [refs]).score
            fidelity.append(
                [
                    name,
                    "greedy" if beam == 1 else f"beam {beam}",
                    f"{len(same)}/{len(src)} ({100 * len(same) / len(src):.2f}%)",
                    f"{bleu_full:.2f} / {bleu_short:.2f}",
                    f"{np.median(diffs):.1e} / {np.percentile(diffs, 99):.1e} / {diffs.max():.3f}",
                    f"{att:.1e}",
                ]
            )
        ids = loaded.src_vocab.encode(tokenize(TEN_WORDS, loaded.source_lang), add_eos=True)
        latencies = []
        for beam in (1, 5):
            options = DecodeOptions(beam_size=beam)
            decode(loaded.model, ids, options)
            latencies += timed(
                [
                    partial(decode, loaded.model, ids, options),
                    partial(decode, loaded.model, ids, options, shortlist=shortlist),
                ],
                args.runs,
            )
        (g_full, _), (g_short, _), (b_full, _), (b_short, _) = latencies
        speed.append(
            [
                name,
                f"{g_full:.1f} -> {g_short:.1f} ms",
                f"{b_full:.1f} -> {b_short:.1f} ms",
                f"{rates[1][0]:.0f} -> {rates[1][1]:.0f}",
                f"{rates[5][0]:.0f} -> {rates[5][1]:.0f}",
            ]
        )
    print()
    print(
        render_table(
            ["model", "search", "identical best", "BLEU full / shortlist",
             "|dp| median / p99 / max", "max |d attention|"],
            fidelity,
            args.markdown,
            numeric_from=2,
        )
    )  # fmt: skip
    print()
    print(
        render_table(
            ["model", "10 words greedy", "10 words beam 5", "batch 64 greedy sent/s",
             "batch 64 beam 5 sent/s"],
            speed,
            args.markdown,
        )
    )  # fmt: skip
    print(f"\nload average after: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
