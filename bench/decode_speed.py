"""Decoding speed, with attention captured and returned (not part of the test run).

    .venv/bin/python bench/decode_speed.py [--model NAME_OR_DIR] [--data data/sample/test.tsv]
                                           [--threads 1,2] [--runs 200] [--int8]

Prints, for each torch thread count:
- latency of one 10-word sentence in process (median and p90): greedy and beam 5;
- sentences/s translating the source side of a test file, batch 1 and 64 (sorted by
  length), decoding only; and, for a trained model, end to end through the function
  behind ``attnviz translate`` (load, tokenize, decode, detokenize, write);
- the memory floor of one decoder step at batch 1: the time of one matrix-vector product
  over as many weights as a step reads (see ``step_weights``), and that times the
  sentence's steps: at batch 1 a step must read all of them from memory, whatever the
  code around it; and the encoder's share of the 10-word sentence (``model.encode``
  alone);
and the machine's load average, since other work on the machine slows everything.
``--int8`` runs every figure with the int8 output layer (:mod:`attnviz.model.int8`).

Without --model, the first folder under checkpoints/ is used; if there is none, a random
model of the default size (emb 256, hidden 256, additive attention, vocabularies of
3000/4000). A random model does not stop by itself, so its output length is forced to a
realistic value: 12 tokens for the 10-word sentence, and in the batched runs the length of
the longest reference translation of the batch plus the end token.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import zlib
from functools import partial
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attnviz.model.checkpoint import load_checkpoint  # noqa: E402
from attnviz.model.config import ModelConfig  # noqa: E402
from attnviz.model.decoding import (  # noqa: E402
    DecodeOptions,
    _fusable,
    _fused_weights,
    decode,
    decode_batch,
    pad_batch,
)
from attnviz.model.seq2seq import Seq2Seq  # noqa: E402
from attnviz.model.tokenize import tokenize  # noqa: E402
from attnviz.model.translator import (  # noqa: E402
    CHECKPOINTS_DIR,
    default_workers,
    resolve_model_path,
    translate_command,
)
from attnviz.model.vocab import Vocab  # noqa: E402
from bench.report import load_average, timed  # noqa: E402

TEN_WORDS = "The old teacher did not give the red book to my son."  # 10 words + 2 marks


# parameters used once per sentence (lookups, the bridge, projections of the encoder
# states), not read again at every decoder step
ONCE_PER_SENTENCE = ("encoder", "src_embedding", "decoder.embedding", "decoder.bridge",
                     "decoder.attention.U", "cross_attn.k.", "cross_attn.v.")  # fmt: skip


def step_weights(model: torch.nn.Module) -> int:
    """Weights one decoder step reads at batch 1 (a tied output layer counts once).

    For an RNN decoder that runs the fused step, its own matrices (the GRU's hidden
    weights, the readout's state columns, Luong's input-feeding weights, the output layer)
    and the attention's parameters but additive's key projection: an upper bound, since
    some mechanisms apply theirs to the keys once per sentence. The GRU's input weights
    and the readout's context and embedding columns are not read per step there: their
    embedding side is a per-token table lookup, their context side a product made once
    per sentence. Otherwise every parameter but those used once per sentence.
    """
    if isinstance(model, Seq2Seq) and _fusable(model):
        fused = _fused_weights(model, model.encoder.out_dim)
        mats = [fused.hh_t, fused.rh_t, fused.out_t, fused.b_hh, fused.b_r, fused.b_out]
        mats += [] if fused.feed_t is None else [fused.feed_t]
        attention = [p for n, p in model.decoder.attention.named_parameters() if n != "U.weight"]
        return sum(t.numel() for t in mats + attention)
    return sum(
        p.numel()
        for name, p in model.named_parameters()  # tied parameters are listed once
        if not any(part in name for part in ONCE_PER_SENTENCE)
    )


def weight_floor_ms(weights: int, runs: int) -> float:
    """Median time of one (1, 256) x (256, weights / 256) product, the matrix stored (in,
    out) as the fused steps store theirs: reading that many fp32 weights once, with nothing
    else in the step."""
    matrix = torch.randn(256, max(1, weights // 256))
    x = torch.randn(1, 256)
    return timed([lambda: x @ matrix], runs)[0][0]


def default_data() -> Path:
    """The generated corpus's test split, or the bundled sample's when there is none."""
    corpus = REPO / "data" / "corpus" / "test.tsv"
    return corpus if corpus.is_file() else REPO / "data" / "sample" / "test.tsv"


def read_pairs(path: Path) -> list[tuple[str, str]]:
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 2 and cols[0].strip():
            pairs.append((cols[0], cols[1]))
    return pairs


class Subject:
    """The model under test, with what is needed to feed it text."""

    def __init__(self, name: str | None) -> None:
        if name is None and CHECKPOINTS_DIR.is_dir():
            folders = sorted(p for p in CHECKPOINTS_DIR.iterdir() if (p / "card.json").is_file())
            if folders:
                name = str(folders[0])
        self.folder: Path | None = None
        self.src_vocab: Vocab | None = None
        self.src_lang, self.tgt_lang = "en", "fr"
        if name is not None:
            loaded = load_checkpoint(resolve_model_path(name), "cpu")
            self.model = loaded.model
            self.folder = loaded.path
            self.src_vocab = loaded.src_vocab
            self.src_lang, self.tgt_lang = loaded.source_lang, loaded.target_lang
            cfg = self.model.config
            self.description = (
                f"trained model {loaded.path} ({cfg.attention}, {cfg.decoder_style}, emb "
                f"{cfg.emb_dim}, hidden {cfg.hidden_dim}, vocab {cfg.src_vocab_size}/"
                f"{cfg.tgt_vocab_size}, {self.model.num_parameters():,} parameters)"
            )
        else:
            torch.manual_seed(0)
            self.model = Seq2Seq(ModelConfig(src_vocab_size=3000, tgt_vocab_size=4000)).eval()
            self.description = (
                "RANDOM model (no model folder found): additive, bahdanau, emb 256, hidden "
                f"256, vocab 3000/4000, {self.model.num_parameters():,} parameters; "
                "output lengths forced"
            )

    @property
    def random(self) -> bool:
        return self.folder is None

    def encode(self, text: str) -> list[int]:
        tokens = tokenize(text, self.src_lang)
        if self.src_vocab is None:  # random model: stable fake ids
            return [4 + zlib.crc32(t.encode()) % 2996 for t in tokens] + [3]
        return self.src_vocab.encode(tokens, add_eos=True)


def run_batches(
    subject: Subject,
    src_ids: list[list[int]],
    ref_lens: list[int],
    batches: list[list[int]],
    int8: bool,
) -> None:
    for idx in batches:
        max_len = max(ref_lens[i] for i in idx) if subject.random else None
        decode_batch(
            subject.model,
            [src_ids[i] for i in idx],
            DecodeOptions(max_length=max_len),
            int8=int8,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model folder or name under checkpoints/")
    parser.add_argument("--data", type=Path, default=default_data(), help="TSV test file")
    parser.add_argument("--threads", default="1,2", help="torch thread counts to try")
    parser.add_argument("--runs", type=int, default=200, help="runs per latency figure")
    parser.add_argument("--limit", type=int, default=2000, help="sentences of the test file")
    parser.add_argument(
        "--int8", action="store_true", help="score with the int8 output layer (attnviz.model.int8)"
    )
    args = parser.parse_args()

    subject = Subject(args.model)
    model = subject.model
    print(f"model: {subject.description}" + (", int8 output layer" if args.int8 else ""))
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {load_average()}")
    pairs = read_pairs(args.data)[: args.limit]
    sentence_ids = subject.encode(TEN_WORDS)
    src_ids = [subject.encode(s) for s, _ in pairs]
    ref_lens = [len(tokenize(t, subject.tgt_lang)) + 1 for _, t in pairs]
    print(
        f"data: {args.data} ({len(pairs)} sentences, "
        f"{statistics.mean(len(s) - 1 for s in src_ids):.1f} source tokens on average)"
    )
    one_length = 12 if subject.random else None

    for threads in [int(x) for x in args.threads.split(",") if x.strip()]:
        torch.set_num_threads(threads)
        print(f"\n== {threads} thread(s) ==")
        for beam in (1, 5):
            opts = DecodeOptions(beam_size=beam, max_length=one_length)
            out = decode(model, sentence_ids, opts, int8=args.int8).best
            [(med, p90)] = timed(
                [partial(decode, model, sentence_ids, opts, int8=args.int8)], args.runs
            )
            name = "greedy" if beam == 1 else f"beam {beam}"
            print(
                f"10-word sentence, {name:7s}: median {med:6.2f} ms   p90 {p90:6.2f} ms   "
                f"({len(out.token_ids)} target tokens, attention {out.attention is not None})"
            )
            if beam == 1 and not args.int8:  # the floor of fp32 weights
                weights = step_weights(model)
                floor = weight_floor_ms(weights, args.runs)
                src, mask = pad_batch([sentence_ids], model.config.pad_id, torch.device("cpu"))
                encode = torch.inference_mode()(partial(model.encode, src, mask))
                [(enc_ms, _)] = timed([encode], args.runs)
                print(
                    f"  memory floor at batch 1: a step reads {weights * 4 / 1e6:.1f} MB of "
                    f"fp32 weights, {floor:.3f} ms alone; x {len(out.token_ids)} steps = "
                    f"{floor * len(out.token_ids):.2f} ms; the encoder alone: {enc_ms:.2f} ms"
                )
        order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
        for batch_size in (1, 64):
            batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
            run_batches(subject, src_ids, ref_lens, batches[:3], args.int8)  # warm up
            start = time.perf_counter()
            run_batches(subject, src_ids, ref_lens, batches, args.int8)
            took = time.perf_counter() - start
            print(
                f"batch {batch_size:3d}, greedy, decoding only: "
                f"{len(order) / took:8.0f} sentences/s"
            )
        if subject.folder is not None:
            text = "".join(s + "\n" for s, _ in pairs)
            sink = io.StringIO()
            start = time.perf_counter()
            translate_command(
                str(subject.folder),
                1,
                False,
                False,
                64,
                "cpu",
                io.StringIO(text),
                sink,
                int8=args.int8,
            )
            took = time.perf_counter() - start
            workers = default_workers(torch.device("cpu"))
            print(
                "batch  64, greedy, attnviz translate end to end (load, tokenize, decode, "
                f"detokenize; {workers} worker(s)): {len(pairs) / took:8.0f} sentences/s"
            )
    print(
        f"\nload average after: {load_average()} "
        "(other processes share the 2 cores: figures are noisy)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
