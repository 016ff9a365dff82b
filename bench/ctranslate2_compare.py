"""Our Transformer against CTranslate2 running the same weights (not part of the test run).

    .venv/bin/python bench/ctranslate2_compare.py [--model DIR] [--data TSV] [--check 50]
                                                  [--limit 2000] [--runs 200] [--markdown]

Installs ``ctranslate2`` (PyPI) into the running interpreter's environment when it is
missing (``--no-install`` refuses), converts a Transformer model folder (default
``checkpoints/en-fr-transformer``) into a CTranslate2 model directory, then:

1. checks the conversion on the first ``--check`` sentences of the test file: per-token
   log-probabilities of the reference translations (our teacher forcing against
   ``Translator.score_batch``), greedy outputs token for token (agreement %), and the
   alignment layer's head-averaged cross-attention (``return_attention``);
2. times both in this process, one thread each (``torch.set_num_threads(1)``;
   ``intra_threads=1, inter_threads=1``), float32 (``--compute-type int8`` times
   CTranslate2 in its fastest CPU mode instead: 8-bit weights, a different model's
   outputs, which the check then measures): the median and p90 ms of one 10-word
   sentence, greedy and beam 5 (batch 1; the contenders take turns, run after run), and
   sentences/s over ``--limit`` test sentences, greedy at batch 64 (ours in length-sorted
   batches of 64, CTranslate2 with ``max_batch_size=64``, which sorts by length itself).
   Ours always captures attention; CTranslate2 is timed without and with
   ``return_attention``. ``--markdown`` prints the table in Markdown.

Both decode to at most ``--max-length`` target tokens (the end token included) and may
end a sentence at its first step (``min_decoding_length=0``), as ours does.

The conversion (``AttnvizConverter``) maps every weight one to one; what needs care:

- positions: CTranslate2's built-in sinusoids are also [sin | cos] halves, but with
  frequencies ``10000 ** (-i / (d/2 - 1))`` and positions counted from 1 (tensor2tensor),
  where ours use ``10000 ** (-i / (d/2))`` from position 0. The converter therefore stores
  our own table (:func:`attnviz.model.transformer.sinusoids`, ``--max-positions`` rows) as
  explicit ``position_encodings``, which CTranslate2 adds as row ``step + t``;
- embeddings are scaled by sqrt(d_model) on both sides (``scale_embeddings``);
- q/k/v projections are fused the CTranslate2 way: [q; k; v] for self-attention, q and
  [k; v] for cross-attention, biases included;
- LayerNorm epsilon 1e-5 (PyTorch's) is written into the config;
- the output layer has no bias; a tied one is the target embedding (CTranslate2 stores
  the shared array once);
- special tokens: ``<unk>``, ``<s>`` (decoder start), ``</s>``; sources are given with
  their ``</s>`` as our model reads them (``add_source_eos`` stays off);
- ``return_attention`` averages every head (``alignment_heads=0``) of our alignment layer.

RNN models cannot be converted: CTranslate2 runs Transformer (and decoder-only) models
only, no recurrent encoder-decoder with additive/Luong attention.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attnviz.model.checkpoint import (  # noqa: E402
    CARD,
    CheckpointError,
    LoadedModel,
    load_checkpoint,
    read_card,
)
from attnviz.model.decoding import (  # noqa: E402
    DecodeOptions,
    DecodeResult,
    decode_batch,
    forced_batch,
    greedy_batch,
)
from attnviz.model.tokenize import tokenize  # noqa: E402
from attnviz.model.transformer import (  # noqa: E402
    DecoderLayer,
    EncoderLayer,
    FeedForward,
    MultiHeadAttention,
    Transformer,
    sinusoids,
)
from attnviz.model.translator import CHECKPOINTS_DIR, resolve_model_path  # noqa: E402
from attnviz.model.vocab import BOS, EOS, UNK  # noqa: E402
from bench.decode_speed import default_data  # noqa: E402
from bench.report import load_average, render_table, timed  # noqa: E402

TEN_WORDS = "The old teacher did not give the red book to my son."  # as bench/decode_speed.py
GOAL_MS = 3.0  # the in-process goal: 10-word greedy median, batch 1, one thread
DEFAULT_MODEL = CHECKPOINTS_DIR / "en-fr-transformer"


def default_model() -> Path:
    """checkpoints/en-fr-transformer, else the first Transformer folder under checkpoints/."""
    if (DEFAULT_MODEL / CARD).is_file():
        return DEFAULT_MODEL
    folders = sorted(CHECKPOINTS_DIR.iterdir()) if CHECKPOINTS_DIR.is_dir() else []
    for folder in folders:
        try:
            if read_card(folder)["config"].get("architecture") == "transformer":
                return folder
        except (CheckpointError, AttributeError):
            continue
    raise SystemExit(f"no Transformer model folder under {CHECKPOINTS_DIR}: give --model DIR")


# -- ctranslate2 ---------------------------------------------------------------------------


def ensure_ctranslate2(install: bool) -> ModuleType:
    """Import ctranslate2, pip-installing it into this interpreter's environment if needed."""
    try:
        return importlib.import_module("ctranslate2")
    except ImportError:
        if not install:
            raise SystemExit("ctranslate2 is not installed (and --no-install was given)") from None
    print(f"installing ctranslate2 with {sys.executable} -m pip ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "ctranslate2"], check=True)
    importlib.invalidate_caches()
    return importlib.import_module("ctranslate2")


def build_converter() -> type:
    """The ``AttnvizConverter`` class (defined once ctranslate2 can be imported)."""
    from ctranslate2.converters.converter import Converter
    from ctranslate2.specs import common_spec, transformer_spec

    def numpy(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float32).contiguous().numpy()

    def set_linear(spec: Any, layer: nn.Linear) -> None:
        spec.weight = numpy(layer.weight)
        if layer.bias is not None:
            spec.bias = numpy(layer.bias)

    def set_fused(spec: Any, layers: Sequence[nn.Linear]) -> None:
        spec.weight = np.concatenate([numpy(layer.weight) for layer in layers])
        spec.bias = np.concatenate([numpy(layer.bias) for layer in layers])

    def set_norm(spec: Any, norm: nn.LayerNorm) -> None:
        spec.gamma = numpy(norm.weight)
        spec.beta = numpy(norm.bias)

    def set_attention(spec: Any, mha: MultiHeadAttention, *, self_attention: bool) -> None:
        if self_attention:  # linear[0] = [q; k; v], linear[1] = out
            set_fused(spec.linear[0], (mha.q, mha.k, mha.v))
        else:  # linear[0] = q, linear[1] = [k; v] (over the encoder output), linear[2] = out
            set_linear(spec.linear[0], mha.q)
            set_fused(spec.linear[1], (mha.k, mha.v))
        set_linear(spec.linear[-1], mha.out)

    def set_ffn(spec: Any, norm: nn.LayerNorm, ff: FeedForward) -> None:
        set_norm(spec.layer_norm, norm)
        set_linear(spec.linear_0, cast(nn.Linear, ff.net[0]))  # Linear ReLU Dropout Linear
        set_linear(spec.linear_1, cast(nn.Linear, ff.net[3]))

    class AttnvizConverter(Converter):
        """Converts an attnviz Transformer (a loaded model folder) to a TransformerSpec."""

        def __init__(self, loaded: LoadedModel, max_positions: int) -> None:
            self.loaded = loaded
            self.max_positions = max_positions

        def _load(self) -> Any:
            model = self.loaded.model
            if not isinstance(model, Transformer):
                raise NotImplementedError(
                    f"{self.loaded.path} is an RNN model; CTranslate2 "
                    "has no recurrent encoder-decoder, only Transformers"
                )
            cfg = model.config
            spec = transformer_spec.TransformerSpec.from_config(
                cfg.layers,
                cfg.attention_heads,
                pre_norm=True,
                activation=common_spec.Activation.RELU,
                alignment_layer=cfg.alignment_layer,
                alignment_heads=0,  # 0 = average every head, like our head-averaged map
            )
            table = numpy(sinusoids(torch.arange(self.max_positions), cfg.hidden_dim))
            for side, embedding in (
                (spec.encoder, model.src_embedding),
                (spec.decoder, model.tgt_embedding),
            ):
                emb_spec = (
                    side.embeddings[0] if isinstance(side.embeddings, list) else side.embeddings
                )
                emb_spec.weight = numpy(embedding.weight)
                side.scale_embeddings = True  # x sqrt(d_model), as Transformer._embed
                side.position_encodings.encodings = table  # row p = our position p
            for layer_spec, module in zip(spec.encoder.layer, model.encoder_layers, strict=True):
                enc = cast(EncoderLayer, module)
                set_norm(layer_spec.self_attention.layer_norm, enc.norm1)
                set_attention(layer_spec.self_attention, enc.self_attn, self_attention=True)
                set_ffn(layer_spec.ffn, enc.norm2, enc.ff)
            for layer_spec, module in zip(spec.decoder.layer, model.decoder_layers, strict=True):
                dec = cast(DecoderLayer, module)
                set_norm(layer_spec.self_attention.layer_norm, dec.norm1)
                set_attention(layer_spec.self_attention, dec.self_attn, self_attention=True)
                set_norm(layer_spec.attention.layer_norm, dec.norm2)
                set_attention(layer_spec.attention, dec.cross_attn, self_attention=False)
                set_ffn(layer_spec.ffn, dec.norm3, dec.ff)
            set_norm(spec.encoder.layer_norm, model.encoder_norm)
            set_norm(spec.decoder.layer_norm, model.decoder_norm)
            set_linear(spec.decoder.projection, model.output)  # no bias; tied = tgt embedding
            config = spec.config
            config.unk_token, config.bos_token, config.eos_token = UNK, BOS, EOS
            config.decoder_start_token = BOS
            config.add_source_bos = config.add_source_eos = False
            config.layer_norm_epsilon = float(model.encoder_norm.eps)
            spec.register_source_vocabulary(list(self.loaded.src_vocab.tokens))
            spec.register_target_vocabulary(list(self.loaded.tgt_vocab.tokens))
            return spec

    return AttnvizConverter


def convert(loaded: LoadedModel, out_dir: Path, max_positions: int) -> float:
    """Write the CTranslate2 model of ``loaded`` into ``out_dir``; returns the seconds taken.

    An existing ``out_dir`` is replaced only if it holds a CTranslate2 model (model.bin)."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "model.bin").is_file():
        raise SystemExit(f"{out_dir} exists and is not a CTranslate2 model: not replacing it")
    start = time.perf_counter()
    converter = build_converter()(loaded, max_positions)
    converter.convert(str(out_dir), quantization=None, force=True)
    return time.perf_counter() - start


# -- data ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """Test sentences as our ids and as CTranslate2's token lists (same vocabulary)."""

    src_ids: list[list[int]]  # ending with eos
    src_tokens: list[list[str]]  # vocabulary tokens of src_ids (unknown words as <unk>)
    ref_ids: list[list[int]]  # reference translations, no eos
    ref_tokens: list[list[str]]


def read_sources(path: Path, limit: int) -> list[tuple[str, str]]:
    """The first ``limit`` (source, reference) pairs of a TSV test file."""
    pairs: list[tuple[str, str]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        cols = line.split("\t")
        if len(cols) >= 2 and cols[0].strip() and cols[1].strip():
            pairs.append((cols[0], cols[1]))
        if len(pairs) >= limit:
            break
    return pairs


def encode_source(loaded: LoadedModel, text: str) -> list[int]:
    """Source ids as the Translator makes them (tokenized, unknown words as <unk>, eos)."""
    tokens = tokenize(text, loaded.source_lang, lowercase=loaded.lowercase)
    return loaded.src_vocab.encode(tokens, add_eos=True)


def make_corpus(loaded: LoadedModel, pairs: Sequence[tuple[str, str]]) -> Corpus:
    src_ids = [encode_source(loaded, s) for s, _ in pairs]
    ref_ids = [
        loaded.tgt_vocab.encode(
            tokenize(t, loaded.target_lang, lowercase=loaded.lowercase), add_eos=False
        )
        for _, t in pairs
    ]
    src_words = loaded.src_vocab.tokens
    tgt_words = loaded.tgt_vocab.tokens
    return Corpus(
        src_ids=src_ids,
        src_tokens=[[src_words[i] for i in ids] for ids in src_ids],
        ref_ids=ref_ids,
        ref_tokens=[[tgt_words[i] for i in ids] for ids in ref_ids],
    )


# -- decoding on both sides ----------------------------------------------------------------


def ours_ids(result: DecodeResult, eos_id: int) -> list[int]:
    """The best hypothesis's ids without the end token (CTranslate2 leaves it out)."""
    ids = list(result.best.token_ids)
    return ids[:-1] if ids and ids[-1] == eos_id else ids


def ct2_ids(result: Any, loaded: LoadedModel) -> list[int]:
    """The best CTranslate2 hypothesis as our target ids."""
    return [loaded.tgt_vocab.id(t) for t in result.hypotheses[0]]


@dataclass(frozen=True)
class Check:
    """What the conversion check found."""

    sentences: int
    greedy_equal: int
    beam_equal: int
    max_logprob_diff: float  # per token, over the references (eos included)
    max_attention_diff: float  # head-averaged alignment layer, over equal greedy outputs
    unfinished: int  # greedy outputs that hit --max-length (ours)
    notes: list[str]


def check(
    model: Transformer,
    translator: Any,
    loaded: LoadedModel,
    corpus: Corpus,
    max_length: int,
) -> Check:
    """Compare scores, greedy and beam outputs, and attention on the given sentences."""
    eos = model.config.eos_id
    n = len(corpus.src_ids)
    # 1. teacher forcing on the references: the same numbers, up to float rounding
    targets = [[*ids, eos] for ids in corpus.ref_ids]
    ours_forced = forced_batch(model, corpus.src_ids, targets)
    theirs_forced = translator.score_batch(corpus.src_tokens, corpus.ref_tokens)
    lp_diff = 0.0
    for o, t in zip(ours_forced, theirs_forced, strict=True):
        a = np.asarray(o.best.token_logprobs)
        b = np.asarray(t.log_probs)
        if a.shape != b.shape:
            raise RuntimeError(f"score_batch returned {b.shape} log-probabilities, ours {a.shape}")
        lp_diff = max(lp_diff, float(np.abs(a - b).max()))
    # 2. greedy, one sentence at a time, with attention and our top-2 for near-ties
    greedy_equal = unfinished = 0
    att_diff = 0.0
    notes: list[str] = []
    opts = DecodeOptions(max_length=max_length, top_k=2)
    for i, (ids, toks) in enumerate(zip(corpus.src_ids, corpus.src_tokens, strict=True)):
        ours = decode_batch(model, [ids], opts)[0]
        theirs = translator.translate_batch(
            [toks],
            beam_size=1,
            max_decoding_length=max_length,
            min_decoding_length=0,
            return_attention=True,
        )[0]
        ours_out, theirs_out = ours_ids(ours, eos), ct2_ids(theirs, loaded)
        unfinished += not ours.best.finished
        if ours_out == theirs_out:
            greedy_equal += 1
            ours_att = ours.best.attention
            theirs_att = np.asarray(theirs.attention[0], dtype=np.float32)
            if ours_att is not None and len(theirs_att):
                mean = ours_att.mean(axis=1)[: len(theirs_att)]  # (tgt, src), heads averaged
                att_diff = max(att_diff, float(np.abs(mean - theirs_att).max()))
            continue
        pairs = zip(ours_out, theirs_out, strict=False)
        at = next((j for j, (x, y) in enumerate(pairs) if x != y), None)
        at = min(len(ours_out), len(theirs_out)) if at is None else at
        probs = ours.best.top_k_probs
        gap = (
            f", our top-2 probabilities there differ by {probs[at, 0] - probs[at, 1]:.2e}"
            if probs is not None and at < len(probs)
            else ""
        )
        notes.append(f"sentence {i}: outputs differ from token {at}{gap}")
    # 3. beam 5 (different search rules: informative only)
    ours_beam = decode_batch(
        model, corpus.src_ids, DecodeOptions(beam_size=5, max_length=max_length)
    )
    theirs_beam = translator.translate_batch(
        corpus.src_tokens, beam_size=5, max_decoding_length=max_length, min_decoding_length=0
    )
    beam_equal = sum(
        ours_ids(o, eos) == ct2_ids(t, loaded) for o, t in zip(ours_beam, theirs_beam, strict=True)
    )
    return Check(n, greedy_equal, beam_equal, lp_diff, att_diff, unfinished, notes)


# -- timing --------------------------------------------------------------------------------


def throughput(fn: Callable[[], object], sentences: int) -> float:
    """Sentences/s of one call of ``fn`` after a warm-up call."""
    fn()
    start = time.perf_counter()
    fn()
    return sentences / (time.perf_counter() - start)


@dataclass(frozen=True)
class Row:
    name: str
    unit: str  # "ms" (lower is better) or "sent/s" (higher is better)
    ours: float
    ct2: float
    ct2_attention: float
    ours_p90: float | None = None
    ct2_p90: float | None = None

    @property
    def ratio(self) -> float:
        """How many times faster CTranslate2 (without attention) is."""
        return self.ours / self.ct2 if self.unit == "ms" else self.ct2 / self.ours


def time_all(
    model: Transformer,
    translator: Any,
    loaded: LoadedModel,
    corpus: Corpus,
    *,
    runs: int,
    max_length: int,
    batch_size: int,
) -> tuple[list[Row], dict[str, int]]:
    """The timing table and the number of target tokens each side produced."""
    ids = encode_source(loaded, TEN_WORDS)
    toks = [loaded.src_vocab.tokens[i] for i in ids]
    rows: list[Row] = []
    lengths: dict[str, int] = {}

    def ct2_call(sources: list[list[str]], beam: int, attention: bool) -> Callable[[], Any]:
        return lambda: translator.translate_batch(
            sources,
            max_batch_size=batch_size,
            beam_size=beam,
            max_decoding_length=max_length,
            min_decoding_length=0,
            return_attention=attention,
        )

    for beam in (1, 5):
        opts = DecodeOptions(beam_size=beam, max_length=max_length)
        (med, p90), (c_med, c_p90), (a_med, _) = timed(
            [
                partial(decode_batch, model, [ids], opts),
                ct2_call([toks], beam, False),
                ct2_call([toks], beam, True),
            ],
            runs,
        )
        name = "10-word sentence, greedy" if beam == 1 else f"10-word sentence, beam {beam}"
        rows.append(Row(name, "ms", med, c_med, a_med, p90, c_p90))
        best = decode_batch(model, [ids], opts)[0].best
        lengths[f"ours_beam{beam}"] = len(best.token_ids) - best.finished  # without the end
        lengths[f"ours_beam{beam}_finished"] = int(best.finished)
        lengths[f"ct2_beam{beam}"] = len(ct2_call([toks], beam, False)()[0].hypotheses[0])

    order = sorted(range(len(corpus.src_ids)), key=lambda i: len(corpus.src_ids[i]))
    batches = [
        [corpus.src_ids[i] for i in order[s : s + batch_size]]
        for s in range(0, len(order), batch_size)
    ]

    def ours_all() -> list[DecodeResult]:
        return [r for b in batches for r in greedy_batch(model, b, max_length=max_length)]

    n = len(order)
    rows.append(
        Row(
            f"{n} sentences, greedy, batch {batch_size}",
            "sent/s",
            throughput(ours_all, n),
            throughput(ct2_call(corpus.src_tokens, 1, False), n),
            throughput(ct2_call(corpus.src_tokens, 1, True), n),
        )
    )
    eos = model.config.eos_id
    ours_out = {order[k]: ours_ids(r, eos) for k, r in enumerate(ours_all())}
    theirs_out = [ct2_ids(r, loaded) for r in ct2_call(corpus.src_tokens, 1, False)()]
    lengths["batch_ours_tokens"] = sum(len(v) for v in ours_out.values())
    lengths["batch_ct2_tokens"] = sum(len(v) for v in theirs_out)
    lengths["batch_equal"] = sum(ours_out[i] == theirs_out[i] for i in range(n))
    return rows, lengths


# -- output --------------------------------------------------------------------------------


def fmt(value: float, unit: str) -> str:
    return f"{value:.2f}" if unit == "ms" else f"{value:.0f}"


def table(rows: list[Row], markdown: bool, compute_type: str = "float32") -> str:
    ct2 = f"CTranslate2 ({compute_type})"
    header = ["", "attnviz (float32)", ct2, f"{ct2} + attention", "CT2 speed-up"]
    body: list[list[str]] = []
    for r in rows:
        ours = fmt(r.ours, r.unit) + (f" (p90 {fmt(r.ours_p90, r.unit)})" if r.ours_p90 else "")
        ct2 = fmt(r.ct2, r.unit) + (f" (p90 {fmt(r.ct2_p90, r.unit)})" if r.ct2_p90 else "")
        body.append(
            [f"{r.name} ({r.unit})", ours, ct2, fmt(r.ct2_attention, r.unit), f"{r.ratio:.1f}x"]
        )
    return render_table(header, body, markdown)


def describe(loaded: LoadedModel) -> str:
    cfg = loaded.model.config
    return (
        f"{loaded.path} (d_model {cfg.hidden_dim}, {cfg.layers}+{cfg.layers} layers, "
        f"{cfg.attention_heads} heads, ff {cfg.ff_dim}, vocab {cfg.src_vocab_size}/"
        f"{cfg.tgt_vocab_size}, tied {cfg.tie_embeddings}, "
        f"{loaded.model.num_parameters():,} parameters)"
    )


def main() -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        help="Transformer model folder or name under checkpoints/ (default: "
        "checkpoints/en-fr-transformer, else the first Transformer there)",
    )
    parser.add_argument("--data", type=Path, default=default_data(), help="TSV test file")
    parser.add_argument("--check", type=int, default=50, help="sentences for the equality check")
    parser.add_argument("--limit", type=int, default=2000, help="sentences for the batch timing")
    parser.add_argument("--runs", type=int, default=200, help="runs per latency figure")
    parser.add_argument("--batch-size", type=int, default=64, help="batch of the throughput run")
    parser.add_argument("--max-length", type=int, default=100, help="most target tokens")
    parser.add_argument(
        "--max-positions", type=int, default=1024, help="rows of the position table"
    )
    parser.add_argument(
        "--compute-type",
        default="float32",
        choices=["float32", "int8", "int8_float32"],
        help="CTranslate2's weights and products: float32 (ours), or int8 (its fastest on a "
        "CPU; changes its outputs, so the check then measures the quantisation)",
    )
    parser.add_argument("--output", type=Path, help="keep the CTranslate2 model in this folder")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--no-install", action="store_true", help="do not pip install ctranslate2")
    args = parser.parse_args()

    torch.set_num_threads(1)
    ct2 = ensure_ctranslate2(not args.no_install)
    loaded = load_checkpoint(
        resolve_model_path(args.model) if args.model else default_model(), "cpu"
    )
    model = loaded.model
    if not isinstance(model, Transformer):
        print(
            f"{loaded.path} is an RNN model: CTranslate2 runs "
            "Transformers only (no recurrent encoder-decoder), nothing to compare"
        )
        return 1
    print(f"model: {describe(loaded)}")
    print(
        f"torch {torch.__version__} (1 thread), ctranslate2 {ct2.__version__} "
        f"(intra_threads=1, inter_threads=1, {args.compute_type}), {os.cpu_count()} CPUs, "
        f"load average {load_average()}"
    )
    pairs = read_sources(args.data, max(args.check, args.limit))
    corpus = make_corpus(loaded, pairs)
    print(f"data: {args.data} ({len(pairs)} sentences read)")

    with tempfile.TemporaryDirectory(prefix="attnviz-ct2-") as tmp:
        out_dir = args.output or Path(tmp) / "model"
        took = convert(loaded, out_dir, args.max_positions)
        size = sum(f.stat().st_size for f in out_dir.iterdir()) / 1e6
        print(f"converted to {out_dir} in {took:.2f} s ({size:.1f} MB)")
        translator = ct2.Translator(
            str(out_dir),
            device="cpu",
            compute_type=args.compute_type,
            intra_threads=1,
            inter_threads=1,
        )

        n_check = min(args.check, len(pairs))
        sub = Corpus(
            corpus.src_ids[:n_check],
            corpus.src_tokens[:n_check],
            corpus.ref_ids[:n_check],
            corpus.ref_tokens[:n_check],
        )
        result = check(model, translator, loaded, sub, args.max_length)
        print(f"\n== conversion check on {result.sentences} sentences ==")
        print(
            f"reference log-probabilities (teacher forcing vs score_batch): max |diff| "
            f"{result.max_logprob_diff:.2e} per token"
        )
        print(
            f"greedy outputs equal token for token: {result.greedy_equal}/{result.sentences} "
            f"({100.0 * result.greedy_equal / max(1, result.sentences):.1f}%); "
            f"{result.unfinished} of ours hit --max-length {args.max_length}"
        )
        print(
            "alignment-layer cross-attention (heads averaged), equal outputs: max |diff| "
            f"{result.max_attention_diff:.2e}"
        )
        for note in result.notes:
            print(f"  {note}")
        print(
            f"beam 5 outputs equal: {result.beam_equal}/{result.sentences} (the two beam "
            "searches differ in their stopping and length-normalisation rules)"
        )

        limit = min(args.limit, len(pairs))
        timing = Corpus(
            corpus.src_ids[:limit],
            corpus.src_tokens[:limit],
            corpus.ref_ids[:limit],
            corpus.ref_tokens[:limit],
        )
        rows, lengths = time_all(
            model,
            translator,
            loaded,
            timing,
            runs=args.runs,
            max_length=args.max_length,
            batch_size=args.batch_size,
        )
    print(f"\n== timing: same process, one thread each, {args.runs} runs per latency ==")
    print(table(rows, args.markdown, args.compute_type))
    print()
    for beam in (1, 5):
        end = "then the end token" if lengths[f"ours_beam{beam}_finished"] else "unfinished"
        print(
            f"10-word sentence, beam {beam}: ours "
            f"{lengths[f'ours_beam{beam}']} target tokens ({end}), CTranslate2 "
            f"{lengths[f'ct2_beam{beam}']}"
        )
    print(
        f"batch run: {lengths['batch_ours_tokens']} / {lengths['batch_ct2_tokens']} target "
        f"tokens (end tokens left out), outputs equal for {lengths['batch_equal']}/{limit}"
    )
    greedy = rows[0].ours
    verdict = "met" if greedy <= GOAL_MS else "NOT met"
    print(f"goal: 10-word greedy median <= {GOAL_MS:.0f} ms: {greedy:.2f} ms, {verdict}")
    print(
        f"load average after: {load_average()} (other processes share the cores: figures "
        f"are noisy); the script took {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
