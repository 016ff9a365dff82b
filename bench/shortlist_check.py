"""What the fast output layers change, and what they buy (not part of the test run).

    .venv/bin/python bench/shortlist_check.py [--models en-fr-additive,en-fr-transformer]
                                              [--modes shortlist,int8]
                                              [--data data/corpus/test.tsv] [--limit 2500]
                                              [--runs 200] [--markdown]

For each model and mode (``shortlist``: the lexical shortlist, its folder must hold
``shortlist.safetensors``, see ``attnviz shortlist``; ``int8``: the int8 output layer),
decodes the source side of the test file with the full fp32 output layer and with the
mode, greedy and beam 5, in batches of 64 (sorted by length), and prints:

- the shortlist's output space: mean and largest number of target ids a batch of 64 and
  a single sentence score, against the vocabulary;
- sentences whose best translation is identical, and BLEU of both against the references;
- for the identical ones, how far the mode's token probabilities are from the full fp32
  softmax (median, 99th percentile, largest |p_mode - p_full| over their tokens), and the
  largest difference in attention;
- speed, one torch thread: the 10-word sentence (median ms, greedy and beam 5) and
  sentences/s at batch 64, full and the mode, in one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
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

MODES = ("shortlist", "int8")


@dataclass(frozen=True)
class Mode:
    """How the output layer scores: the full fp32 layer, the shortlist, or int8."""

    shortlist: Shortlist | None = None
    int8: bool = False


def run(
    loaded: LoadedModel,
    sources: list[list[int]],
    options: DecodeOptions,
    mode: Mode,
) -> tuple[list[Hypothesis], float]:
    """Best hypotheses in input order, and sentences/s, batches of 64 sorted by length."""
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    best: list[Hypothesis | None] = [None] * len(sources)
    start = time.perf_counter()
    for lo in range(0, len(order), 64):
        idx = order[lo : lo + 64]
        results = decode_batch(
            loaded.model,
            [sources[i] for i in idx],
            options,
            shortlist=mode.shortlist,
            int8=mode.int8,
        )
        for i, res in zip(idx, results, strict=True):
            best[i] = res.best
    rate = len(sources) / (time.perf_counter() - start)
    return [h for h in best if h is not None], rate


def text_of(loaded: LoadedModel, hyp: Hypothesis) -> str:
    return detokenize(loaded.tgt_vocab.decode(hyp.token_ids), loaded.target_lang)


def describe_shortlist(
    name: str, loaded: LoadedModel, shortlist: Shortlist, src: list[list[int]]
) -> None:
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


def compare(
    name: str,
    kind: str,
    loaded: LoadedModel,
    mode: Mode,
    src: list[list[int]],
    refs: list[str],
    runs: int,
) -> tuple[list[list[str]], list[str]]:
    """The fidelity rows (greedy, beam 5) and the speed row of one model and mode."""
    fidelity, rates = [], {}
    for beam in (1, 5):
        options = DecodeOptions(beam_size=beam)
        # the fp32 baseline again for each mode: its speed is compared with the mode's
        # run right after it, on the same warm caches and host
        full, rate_full = run(loaded, src, options, Mode())
        fast, rate_fast = run(loaded, src, options, mode)
        rates[beam] = (rate_full, rate_fast)
        same = [(a, b) for a, b in zip(full, fast, strict=True) if a.token_ids == b.token_ids]
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
        bleu_fast = sacrebleu.corpus_bleu([text_of(loaded, h) for h in fast], [refs]).score
        fidelity.append(
            [
                name,
                kind,
                "greedy" if beam == 1 else f"beam {beam}",
                f"{len(same)}/{len(src)} ({100 * len(same) / len(src):.2f}%)",
                f"{bleu_full:.2f} / {bleu_fast:.2f}",
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
                partial(
                    decode, loaded.model, ids, options, shortlist=mode.shortlist, int8=mode.int8
                ),
            ],
            runs,
        )
    (g_full, _), (g_fast, _), (b_full, _), (b_fast, _) = latencies
    speed = [
        name,
        kind,
        f"{g_full:.1f} -> {g_fast:.1f} ms",
        f"{b_full:.1f} -> {b_fast:.1f} ms",
        f"{rates[1][0]:.0f} -> {rates[1][1]:.0f}",
        f"{rates[5][0]:.0f} -> {rates[5][1]:.0f}",
    ]
    return fidelity, speed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="en-fr-additive,en-fr-transformer")
    parser.add_argument("--modes", default=",".join(MODES), help="shortlist, int8 or both")
    parser.add_argument("--data", type=Path, default=default_data(), help="TSV test file")
    parser.add_argument("--limit", type=int, default=2500)
    parser.add_argument("--runs", type=int, default=200, help="runs per latency figure")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        parser.error(f"unknown mode {unknown[0]!r}: choose from {', '.join(MODES)}")
    torch.set_num_threads(1)
    pairs = read_pairs(args.data)[: args.limit]
    print(f"torch {torch.__version__}, one thread, load average {load_average()}")
    print(f"data: {args.data} ({len(pairs)} sentences)")
    fidelity, speed = [], []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        loaded = load_checkpoint(resolve_model_path(name), "cpu")
        src = [
            loaded.src_vocab.encode(tokenize(s, loaded.source_lang), add_eos=True) for s, _ in pairs
        ]
        refs = [r for _, r in pairs]
        for kind in modes:
            if kind == "shortlist" and loaded.shortlist is None:
                print(f"{name}: no shortlist.safetensors (attnviz shortlist --model {name})")
                continue
            if kind == "shortlist":
                assert loaded.shortlist is not None
                describe_shortlist(name, loaded, loaded.shortlist, src)
            mode = Mode(shortlist=loaded.shortlist) if kind == "shortlist" else Mode(int8=True)
            fid, spd = compare(name, kind, loaded, mode, src, refs, args.runs)
            fidelity += fid
            speed.append(spd)
    print()
    print(
        render_table(
            ["model", "mode", "search", "identical best", "BLEU full / mode",
             "|dp| median / p99 / max", "max |d attention|"],
            fidelity,
            args.markdown,
            numeric_from=3,
        )
    )  # fmt: skip
    print()
    print(
        render_table(
            ["model", "mode", "10 words greedy", "10 words beam 5", "batch 64 greedy sent/s",
             "batch 64 beam 5 sent/s"],
            speed,
            args.markdown,
        )
    )  # fmt: skip
    print(f"\nload average after: {load_average()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
