"""The Python API for notebooks and scripts: load a model, translate, look at the attention.

    from attnviz.model.translator import Translator, attention_figure

    tr = Translator.load("en-fr-additive")          # a folder, or a name under checkpoints/
    t = tr.translate("The cat sleeps.", beam_size=5, n_best=3, top_k=5)
    t.translation, t.alignment                      # 'Le chat dort.', '0-0 1-1 2-2 3-3'
    attention_figure(t).show()                      # heatmap: source across, target down
    tr.align("The cat sleeps.", "Le chat dort.")    # the model reading a given translation

A :class:`Translation` mirrors one response of the JSON API (DESIGN.md); ``to_dict()``
gives plain JSON-ready types. :func:`translate_command` is ``attnviz translate``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import torch

from attnviz.model.alignment import argmax_alignment, head_mean
from attnviz.model.checkpoint import CheckpointError, LoadedModel, load_checkpoint
from attnviz.model.decoding import (
    BeamTree,
    DecodeOptions,
    DecodeResult,
    Hypothesis,
    decode_batch,
    forced,
    pad_batch,
)
from attnviz.model.int8 import check_int8_device
from attnviz.model.saliency import normalise_rows, rank_correlation, saliency
from attnviz.model.shortlist import Shortlist
from attnviz.model.transformer import Transformer
from attnviz.model.vocab import BOS, EOS, UNK_ID
from attnviz.model.words import Span, WordSpan, with_end, word_alignment, word_matrix

if TYPE_CHECKING:
    import plotly.graph_objects as go

CHECKPOINTS_DIR = Path(__file__).resolve().parents[2] / "checkpoints"


@dataclass
class Candidate:
    """One of the top-k tokens of a step."""

    token: str
    prob: float


@dataclass
class Step:
    """One target token: its probability, the top-k alternatives, and whether it was forced."""

    token: str
    prob: float
    top_k: list[Candidate] = field(default_factory=list)
    forced: bool = False


@dataclass
class HeadViews:
    """Every head's attention behind one translation, layer by layer (plain nested lists).

    Attributes:
        cross: (layers, heads, target, source) target-to-source attention; an RNN
            multi-head model has one layer.
        alignment_layer: the layer whose head average is ``Translation.attention``.
        encoder_self: (layers, heads, source, source) source self-attention (Transformer).
        decoder_self: (layers, heads, target, target) causal target self-attention
            (Transformer): row t is the step emitting target token t, column u the decoder
            input u, i.e. ``decoder_tokens`` (``<s>`` then the target tokens but the last).
        decoder_tokens: the columns of ``decoder_self``.
    """

    cross: list[list[list[list[float]]]]
    alignment_layer: int = 0
    encoder_self: list[list[list[list[float]]]] | None = None
    decoder_self: list[list[list[list[float]]]] | None = None
    decoder_tokens: list[str] | None = None

    @property
    def layers(self) -> int:
        return len(self.cross)

    @property
    def heads(self) -> int:
        return len(self.cross[0]) if self.cross else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "layers": self.layers,
            "heads": self.heads,
            "alignment_layer": self.alignment_layer,
            "cross": self.cross,
            "encoder_self": self.encoder_self,
            "decoder_self": self.decoder_self,
            "decoder_tokens": self.decoder_tokens,
        }


@dataclass
class Translation:
    """One translation with everything the page draws (the API response, as Python).

    Attributes:
        model: the model's name.
        source_tokens: the source pieces (tokens) and ``"</s>"``: exactly the attention's
            columns (an unknown word is shown as written; see ``unknown_source_tokens``).
        target_tokens: the output pieces, ``"</s>"`` included when the sentence finished:
            exactly the attention's rows.
        source_words, target_words: the words (whitespace-separated, as typed or as
            written out) with the span of pieces each covers, ``"</s>"`` a word of its own;
            for a word-level (lab) model each word is one piece.
        word_attention: (target words, source words) attention: source pieces summed,
            target pieces averaged (:mod:`attnviz.model.words`); rows sum to 1.
        translation: the detokenized sentence, end token removed.
        attention: (target, source) weights averaged over heads, each row summing to 1;
            None for a model without attention.
        heads: every layer's and head's matrices (:class:`HeadViews`) when asked for with
            ``include_heads`` and the model has several heads or layers.
        saliency: when asked for with ``include_saliency``: (target, source) input x
            gradient attribution of each output token to the source tokens, |values|
            normalised so each row sums to 1 (drawn like the attention).
        saliency_correlation: per target token, Spearman's rank correlation between its
            attention row and its saliency row (None where undefined: a constant row, or
            a model without attention).
        alignment: Pharaoh links ``"i-j"`` (0-based source word i, target word j) from the
            argmax of each row of ``word_attention``, the end-token row and column excluded.
        steps: per target token its probability and top-k alternatives.
        score: total log-probability; ``normalized_score`` is what the n-best is ranked by.
        finished: the output ended with ``</s>`` (False when it hit the length limit).
        unknown_source_tokens: indices of source tokens the model sees as ``<unk>``.
        hypotheses: the n-best list (this one first) when more than one was asked for.
        beam: the search tree ``{"beam_size", "nodes": [...], "paths": [...]}`` when asked.
        timing_ms: ``{"total": ...}`` wall time of the call that produced it.
    """

    model: str
    source_tokens: list[str]
    target_tokens: list[str]
    translation: str
    attention: list[list[float]] | None
    alignment: str
    steps: list[Step]
    score: float
    normalized_score: float
    finished: bool
    unknown_source_tokens: list[int]
    source_words: list[WordSpan] = field(default_factory=list)
    target_words: list[WordSpan] = field(default_factory=list)
    word_attention: list[list[float]] | None = None
    heads: HeadViews | None = None
    saliency: list[list[float]] | None = None
    saliency_correlation: list[float | None] | None = None
    hypotheses: list[Translation] = field(default_factory=list)
    beam: dict[str, Any] | None = None
    timing_ms: dict[str, float] = field(default_factory=dict)

    def attention_array(self) -> np.ndarray | None:
        """The attention as a (target, source) float array, or None."""
        return None if self.attention is None else np.asarray(self.attention, dtype=np.float32)

    def alignment_links(self) -> list[tuple[int, int]]:
        """The alignment as (source, target) index pairs."""
        return [(int(i), int(j)) for i, j in (link.split("-") for link in self.alignment.split())]

    def to_dict(self, decimals: int | None = None, *, nested: bool = True) -> dict[str, Any]:
        """Plain JSON-ready types (lists, dicts, str, float, int, bool, None).

        ``decimals`` rounds the attention weights and probabilities (e.g. 6 for compact
        JSON); None keeps them as they are. ``nested=False`` leaves out what belongs to
        the whole translation, not to this hypothesis: ``hypotheses``, ``beam`` and
        ``timing_ms`` (the service builds those itself).
        """

        def num(x: float) -> float:
            return round(x, decimals) if decimals is not None else x

        def matrix(m: list[list[float]]) -> list[list[float]]:
            return [[num(x) for x in row] for row in m] if decimals is not None else m

        own = {
            "model": self.model,
            "source_tokens": list(self.source_tokens),
            "target_tokens": list(self.target_tokens),
            "translation": self.translation,
            "attention": None if self.attention is None else matrix(self.attention),
            "alignment": self.alignment,
            "steps": [
                {
                    "token": s.token,
                    "prob": num(s.prob),
                    "top_k": [{"token": c.token, "prob": num(c.prob)} for c in s.top_k],
                    "forced": s.forced,
                }
                for s in self.steps
            ],
            "score": self.score,
            "normalized_score": self.normalized_score,
            "finished": self.finished,
            "unknown_source_tokens": list(self.unknown_source_tokens),
            "source_words": [w.to_dict() for w in self.source_words],
            "target_words": [w.to_dict() for w in self.target_words],
            "word_attention": None if self.word_attention is None else matrix(self.word_attention),
            "heads": None if self.heads is None else self.heads.to_dict(),
            "saliency": None if self.saliency is None else matrix(self.saliency),
            "saliency_correlation": self.saliency_correlation,
        }
        if not nested:
            return own
        return {
            **own,
            "hypotheses": [h.to_dict(decimals) for h in self.hypotheses],
            "beam": self.beam,
            "timing_ms": dict(self.timing_ms),
        }


def resolve_model_path(path_or_name: str | Path) -> Path:
    """A model folder given as a path, or as a name under the repository's checkpoints/."""
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        return path
    named = CHECKPOINTS_DIR / str(path_or_name)
    if named.is_dir():
        return named
    available = (
        sorted(p.name for p in CHECKPOINTS_DIR.iterdir() if p.is_dir())
        if CHECKPOINTS_DIR.is_dir()
        else []
    )
    raise FileNotFoundError(
        f"no model {str(path_or_name)!r}: not a folder, nor a name under {CHECKPOINTS_DIR} "
        f"(available: {', '.join(available) or 'none'})"
    )


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class SourceText:
    """A text as the model reads it: pieces with ``"</s>"`` last, their ids, and the words
    (without the end token) with the span of pieces each covers."""

    tokens: list[str]
    ids: list[int]
    words: list[str]
    spans: list[Span]

    @property
    def positions(self) -> int:
        """Source positions the decoder attends over (the end token included)."""
        return len(self.ids)

    def word_pieces(self, word_indices: Sequence[int]) -> list[int]:
        """The piece positions of these words (index len(words) is the end token);
        IndexError naming the valid range."""
        out: list[int] = []
        for k in word_indices:
            if k == len(self.words):
                out.append(len(self.tokens) - 1)
            elif 0 <= k < len(self.words):
                out.extend(range(*self.spans[k]))
            else:
                raise IndexError(
                    f"word {k} is out of range: the source words are numbered "
                    f"0..{len(self.words)} (the end token </s> is {len(self.words)})"
                )
        return sorted(set(out))


@dataclass(frozen=True)
class Views:
    """What to compute besides the translation (each costs extra passes)."""

    heads: bool = False  # every layer's and head's matrices
    saliency: bool = False  # input x gradient attribution (one backward pass per token)
    blocked: tuple[int, ...] = ()  # the what-if blocked source positions, for the views


class Translator:
    """A loaded model with its vocabularies and languages, ready to translate.

    One Translator serves any number of calls (also from several threads): decoding
    keeps nothing on the model.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.src_vocab = loaded.src_vocab
        self.tgt_vocab = loaded.tgt_vocab
        self._tgt_tokens = loaded.tgt_vocab.tokens

    @classmethod
    def load(cls, path_or_name: str | Path, device: str | torch.device | None = None) -> Translator:
        """Load a model folder (a path, or a name under checkpoints/) onto ``device``
        (None or ``"auto"``: CUDA when available, else CPU)."""
        if device is None or device == "auto":
            device = default_device()
        return cls(load_checkpoint(resolve_model_path(path_or_name), device))

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def source_lang(self) -> str:
        return self.loaded.source_lang

    @property
    def target_lang(self) -> str:
        return self.loaded.target_lang

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        return (
            f"Translator({self.name!r}, {self.source_lang}->{self.target_lang}, "
            f"device={self.device})"
        )

    def shortlist(self) -> Shortlist:
        """The model's lexical shortlist; ValueError saying how to build one if it has none."""
        if self.loaded.shortlist is None:
            raise ValueError(
                f"model {self.name!r} has no lexical shortlist: build one with "
                f"`attnviz shortlist --model {self.name}`, or decode without it"
            )
        return self.loaded.shortlist

    # -- text <-> ids ------------------------------------------------------------------

    def source(self, text: str) -> SourceText:
        """The text's pieces (``"</s>"`` last), ids and words; ValueError for empty text."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        seg = self.loaded.src_tokenizer.segment(text)
        if not seg.pieces:
            raise ValueError("the text to translate is empty")
        ids = self.src_vocab.encode(seg.pieces, add_eos=True)
        return SourceText([*seg.pieces, EOS], ids, seg.words, seg.spans)

    def _target(self, text: str) -> tuple[list[str], list[int], list[str], list[Span]]:
        """Pieces, ids (no end token), words and spans of a target-language text."""
        seg = self.loaded.tgt_tokenizer.segment(text)
        return seg.pieces, self.tgt_vocab.encode(seg.pieces, add_eos=False), seg.words, seg.spans

    def detokenize(self, pieces: Sequence[str]) -> str:
        """The target text that output pieces spell."""
        return self.loaded.tgt_tokenizer.detokenize(pieces)

    def word_alignment(
        self, attention: np.ndarray | None, source: SourceText, ids: Sequence[int]
    ) -> str:
        """Pharaoh word links of an output (token ids, end token or not) from its attention
        (target pieces, [heads,] source pieces)."""
        if attention is None:
            return ""
        eos_id = self.model.config.eos_id
        n = len(ids) - 1 if ids and ids[-1] == eos_id else len(ids)
        _, spans = self.loaded.tgt_tokenizer.group([self._tgt_tokens[i] for i in ids[:n]])
        return word_alignment(head_mean(attention), source.spans, spans)

    def _options(
        self,
        beam_size: int,
        n_best: int,
        top_k: int,
        max_length: int | None,
        length_penalty: float,
        forced_prefix: str | None,
        blocked_source: Sequence[int] | None,
        record_beam: bool,
    ) -> DecodeOptions:
        prefix: tuple[int, ...] = ()
        if forced_prefix is not None and forced_prefix.strip():
            prefix = tuple(self._target(forced_prefix)[1])
        return DecodeOptions(
            beam_size=beam_size,
            n_best=n_best,
            max_length=max_length,
            top_k=top_k,
            length_penalty=length_penalty,
            forced_prefix=prefix,
            blocked_source=tuple(blocked_source or ()),
            record_beam=record_beam,
        )

    # -- results -----------------------------------------------------------------------

    def _hypothesis(
        self,
        hyp: Hypothesis,
        source: SourceText,
        target: tuple[list[str], list[Span]] | None = None,
        views: Views | None = None,
    ) -> Translation:
        """``target``: the given target's pieces (``"</s>"`` last) and word spans (forced
        decoding); None: the words are grouped from the output pieces."""
        vocab = self._tgt_tokens
        ids = hyp.token_ids
        source_tokens, source_ids = source.tokens, source.ids
        eos_id = self.model.config.eos_id
        words = [vocab[i] for i in ids]
        n_words = len(ids) - 1 if ids and ids[-1] == eos_id else len(ids)
        tgt_tok = self.loaded.tgt_tokenizer
        if target is None:
            target_tokens = words
            tgt_words, tgt_spans = tgt_tok.group(words[:n_words])
        else:
            target_tokens, tgt_spans = target
            tgt_words = [tgt_tok.detokenize(target_tokens[a:b]) for a, b in tgt_spans]
        matrix = None if hyp.attention is None else head_mean(hyp.attention)  # (tgt, src)
        source_words = with_end(source.words, source.spans, len(source_tokens), EOS)
        target_words = with_end(tgt_words, tgt_spans, len(target_tokens), EOS)
        words_matrix = None
        if matrix is not None:
            words_matrix = word_matrix(
                matrix,
                [(w.start, w.end) for w in source_words],
                [(w.start, w.end) for w in target_words],
            ).tolist()
        views = views or Views()
        heads = self._head_views(hyp, source_ids, target_tokens, views) if views.heads else None
        sal = corr = None
        if views.saliency and ids:
            raw = saliency(self.model, source_ids, ids)  # (tgt, src), signed
            sal = normalise_rows(raw).tolist()
            if matrix is not None:
                rho = rank_correlation(matrix, raw)
                corr = [None if np.isnan(r) else float(r) for r in rho]
        probs = np.exp(np.asarray(hyp.token_logprobs, dtype=np.float64)).tolist()
        top_ids = hyp.top_k_ids.tolist() if hyp.top_k_ids is not None else None
        top_probs = hyp.top_k_probs.tolist() if hyp.top_k_probs is not None else None
        steps = [
            Step(
                token=target_tokens[t],
                prob=probs[t],
                top_k=(
                    [Candidate(vocab[i], p) for i, p in zip(top_ids[t], top_probs[t], strict=True)]
                    if top_ids is not None and top_probs is not None
                    else []
                ),
                forced=t < hyp.forced_steps,
            )
            for t in range(len(ids))
        ]
        return Translation(
            model=self.name,
            source_tokens=source_tokens,
            target_tokens=target_tokens,
            translation=tgt_tok.detokenize(words[:n_words]),
            attention=None if matrix is None else matrix.tolist(),
            alignment=word_alignment(matrix, source.spans, tgt_spans),
            steps=steps,
            score=hyp.score,
            normalized_score=hyp.norm_score if hyp.norm_score is not None else hyp.score,
            finished=hyp.finished,
            unknown_source_tokens=[i for i, s in enumerate(source_ids) if s == UNK_ID],
            source_words=source_words,
            target_words=target_words,
            word_attention=words_matrix,
            heads=heads,
            saliency=sal,
            saliency_correlation=corr,
        )

    def _head_views(
        self,
        hyp: Hypothesis,
        source_ids: Sequence[int],
        target_tokens: list[str],
        views: Views,
    ) -> HeadViews | None:
        """Per-layer, per-head matrices: the decoder's own for an RNN with several heads; a
        teacher-forced pass over the output for the Transformer (the same numbers the
        incremental decoder computed, and its self-attention besides)."""
        if hyp.attention is None:
            return None
        if not isinstance(self.model, Transformer):
            if hyp.attention.shape[1] < 2:
                return None
            return HeadViews(cross=[hyp.attention.transpose(1, 0, 2).tolist()])
        cfg = self.model.config
        ids = list(hyp.token_ids)
        src, src_mask = pad_batch([list(source_ids)], cfg.pad_id, self.device)
        tgt_in = torch.tensor([[cfg.bos_id, *ids[:-1]]], device=self.device)  # (1, tgt)
        blocked = None
        if views.blocked:
            blocked = torch.zeros_like(src_mask)
            blocked[0, list(views.blocked)] = True
        with torch.inference_mode():
            maps = self.model.attention_maps(src, src_mask, tgt_in, blocked_mask=blocked)
        return HeadViews(
            cross=maps.cross[0].float().cpu().numpy().tolist(),
            alignment_layer=self.model.alignment_layer,
            encoder_self=maps.encoder[0].float().cpu().numpy().tolist(),
            decoder_self=maps.decoder[0].float().cpu().numpy().tolist(),
            decoder_tokens=[BOS, *target_tokens[:-1]],
        )

    def _beam(self, tree: BeamTree, result: DecodeResult, n: int) -> dict[str, Any]:
        vocab = self._tgt_tokens
        nodes = [
            {
                "id": node.id,
                "step": node.step,
                "token": BOS if node.parent is None else vocab[node.token_id],
                "token_id": node.token_id,
                "parent": node.parent,
                "score": node.score,
                "logprob": node.logprob,
                "kept": node.kept,
                "finished": node.finished,
            }
            for node in tree.nodes
        ]
        paths = [list(h.node_ids or ()) for h in result.hypotheses[:n]]
        return {"beam_size": tree.beam_size, "nodes": nodes, "paths": paths}

    def _translation(
        self,
        result: DecodeResult,
        source: SourceText,
        options: DecodeOptions,
        elapsed_ms: float,
        views: Views,
    ) -> Translation:
        best = self._hypothesis(result.best, source, views=views)
        if options.n_best > 1:  # the n-best list repeats the best one (without the list)
            best.hypotheses = [dataclasses.replace(best)] + [
                self._hypothesis(h, source, views=views) for h in result.hypotheses[1:]
            ]
        if result.beam is not None:
            best.beam = self._beam(result.beam, result, len(result.hypotheses))
        best.timing_ms = {"total": elapsed_ms}
        return best

    # -- public calls ------------------------------------------------------------------

    def translate(
        self,
        text: str,
        *,
        beam_size: int = 1,
        n_best: int = 1,
        top_k: int = 0,
        max_length: int | None = None,
        length_penalty: float = 1.0,
        forced_prefix: str | None = None,
        blocked_source: Sequence[int] | None = None,
        record_beam: bool = False,
        include_heads: bool = False,
        include_saliency: bool = False,
        shortlist: bool = False,
        int8: bool = False,
    ) -> Translation:
        """Translate one sentence.

        ``forced_prefix`` (target-language text) is forced first, then decoding is free.
        ``blocked_source`` lists source token positions (0-based over ``source_tokens``,
        ``</s>`` included) the decoder may not attend to. ``include_heads`` fills
        ``heads`` (every layer and head), ``include_saliency`` fills ``saliency`` and
        ``saliency_correlation``. ``shortlist`` scores only the model's lexical shortlist
        (faster; probabilities normalised over it: see :mod:`attnviz.model.shortlist`).
        ``int8`` scores with an int8 copy of the output layer (CPU only; faster for the
        RNN models, about even for the Transformer; probabilities within a few
        hundredths: see :mod:`attnviz.model.int8`; saliency stays the fp32 model's).
        ValueError for bad options or empty text.
        """
        return self.translate_batch(
            [text],
            beam_size=beam_size,
            n_best=n_best,
            top_k=top_k,
            max_length=max_length,
            length_penalty=length_penalty,
            forced_prefix=forced_prefix,
            blocked_source=blocked_source,
            record_beam=record_beam,
            include_heads=include_heads,
            include_saliency=include_saliency,
            shortlist=shortlist,
            int8=int8,
        )[0]

    def translate_batch(
        self,
        texts: Sequence[str],
        *,
        beam_size: int = 1,
        n_best: int = 1,
        top_k: int = 0,
        max_length: int | None = None,
        length_penalty: float = 1.0,
        forced_prefix: str | None = None,
        blocked_source: Sequence[int] | None = None,
        record_beam: bool = False,
        include_heads: bool = False,
        include_saliency: bool = False,
        shortlist: bool = False,
        int8: bool = False,
        batch_size: int = 64,
    ) -> list[Translation]:
        """Translate many sentences, in order (batched internally, sorted by length).

        The options apply to every sentence; each result is the same as translating
        the sentence alone.
        """
        if isinstance(texts, str):
            raise TypeError("translate_batch takes a list of sentences, got one string")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        options = self._options(
            beam_size,
            n_best,
            top_k,
            max_length,
            length_penalty,
            forced_prefix,
            blocked_source,
            record_beam,
        )
        views = Views(include_heads, include_saliency, options.blocked_source)
        lexical = self.shortlist() if shortlist else None
        if int8:
            check_int8_device(self.device)
        start = time.perf_counter()
        sources = [self.source(t) for t in texts]
        out: list[Translation | None] = [None] * len(sources)
        order = sorted(range(len(sources)), key=lambda i: len(sources[i].ids))
        for lo in range(0, len(order), batch_size):
            idx = order[lo : lo + batch_size]
            batch = [sources[i].ids for i in idx]
            results = decode_batch(self.model, batch, options, shortlist=lexical, int8=int8)
            for i, res in zip(idx, results, strict=True):
                out[i] = self._translation(res, sources[i], options, 0.0, views)
        elapsed = (time.perf_counter() - start) * 1000.0
        done: list[Translation] = []
        for t in out:
            assert t is not None
            t.timing_ms = {"total": elapsed}
            done.append(t)
        return done

    def align(
        self,
        text: str,
        target: str,
        *,
        top_k: int = 0,
        blocked_source: Sequence[int] | None = None,
        include_heads: bool = False,
        include_saliency: bool = False,
    ) -> Translation:
        """Forced decoding: the model reading ``target`` as the translation of ``text``.

        Returns the attention and per-token probabilities of that reading (the end token
        is appended and scored); ``target_tokens`` are the given words (a word outside
        the vocabulary is read as ``<unk>``).
        """
        start = time.perf_counter()
        source = self.source(text)
        tgt_tokens, tgt_ids, _, tgt_spans = self._target(target)
        if not tgt_tokens:
            raise ValueError("the target translation to align is empty")
        result = forced(
            self.model,
            source.ids,
            [*tgt_ids, self.model.config.eos_id],
            top_k=top_k,
            blocked_source=tuple(blocked_source or ()),
        )
        views = Views(include_heads, include_saliency, tuple(blocked_source or ()))
        t = self._hypothesis(result.best, source, ([*tgt_tokens, EOS], tgt_spans), views)
        t.timing_ms = {"total": (time.perf_counter() - start) * 1000.0}
        return t


# -- figure -------------------------------------------------------------------------------


def attention_figure(
    translation: Translation, head: int | None = None, layer: int | None = None
) -> go.Figure:
    """A Plotly heatmap of the attention: source tokens across (x), target tokens down (y,
    first at the top), hover showing both tokens and the weight, argmax links marked.

    ``head`` picks one head (None: the average), ``layer`` one layer of a Transformer
    (None: the alignment layer); both need a translation made with ``include_heads``.
    Shows in Jupyter with ``fig.show()``. ValueError for a model without attention or a
    head or layer that does not exist.
    """
    import plotly.graph_objects as go

    if translation.attention is None:
        raise ValueError(
            f"model {translation.model!r} has no attention (a fixed-vector encoder-decoder): "
            "there is nothing to draw"
        )
    views = translation.heads
    if views is None:
        if (head or 0) != 0 or (layer or 0) != 0:
            raise ValueError(
                "this translation has a single matrix: translate with include_heads=True to "
                "draw one head or layer of a multi-head model"
            )
        layer = None
        head = None
    elif layer is not None and not 0 <= layer < views.layers:
        raise ValueError(
            f"layer {layer} does not exist: the model has layers 0..{views.layers - 1}"
        )
    if views is not None and head is not None and not 0 <= head < views.heads:
        raise ValueError(f"head {head} does not exist: the model has heads 0..{views.heads - 1}")
    title_head = ""
    main = views is None or (head is None and layer in (None, views.alignment_layer))
    if main:
        z = np.asarray(translation.attention, dtype=np.float64)
    else:
        assert views is not None
        at = views.alignment_layer if layer is None else layer
        layer_heads = np.asarray(views.cross[at], dtype=np.float64)  # (heads, tgt, src)
        z = layer_heads.mean(axis=0) if head is None else layer_heads[head]
        title_head = f" — layer {at}" if views.layers > 1 else ""
    if head is not None:
        title_head += f" — head {head}"
    src = translation.source_tokens
    tgt = translation.target_tokens
    xs = list(range(len(src)))
    ys = list(range(len(tgt)))
    hover = [[f"{tgt[j]} → {src[i]}" for i in xs] for j in ys]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=xs,
            y=ys,
            zmin=0.0,
            zmax=1.0,
            colorscale="Blues",
            colorbar={"title": {"text": "weight"}},
            customdata=hover,
            hovertemplate="%{customdata}<br>weight %{z:.3f}<extra></extra>",
            xgap=1,
            ygap=1,
        )
    )
    links = translation.alignment_links() if main else _links_of(z, translation)
    if links:
        fig.add_trace(
            go.Scatter(
                x=[i for i, _ in links],
                y=[j for _, j in links],
                mode="markers",
                marker={
                    "symbol": "square-open",
                    "size": 14,
                    "color": "#d62728",
                    "line": {"width": 2},
                },
                name="argmax alignment",
                hoverinfo="skip",
            )
        )
    cell = 34
    fig.update_layout(
        title={"text": f"{translation.translation}{title_head}"},
        xaxis={
            "tickmode": "array",
            "tickvals": xs,
            "ticktext": src,
            "side": "top",
            "tickangle": -45,
            "title": {"text": "source"},
        },
        yaxis={
            "tickmode": "array",
            "tickvals": ys,
            "ticktext": tgt,
            "autorange": "reversed",
            "title": {"text": "target"},
        },
        width=max(420, 180 + cell * len(src)),
        height=max(360, 200 + cell * len(tgt)),
        showlegend=False,
        plot_bgcolor="white",
    )
    return fig


def _links_of(z: np.ndarray, translation: Translation) -> list[tuple[int, int]]:
    n_rows = len(translation.target_tokens) - (1 if translation.finished else 0)
    return argmax_alignment(z[:n_rows, : len(translation.source_tokens) - 1]) if n_rows else []


# -- attnviz translate --------------------------------------------------------------------


def _progress(total: int, stdin: IO[str]) -> Callable[[int], None]:
    """A tqdm bar on stderr when reading a file (not a terminal) of more than a screenful."""
    try:
        interactive = stdin.isatty()
    except (AttributeError, ValueError):
        interactive = False
    if interactive or total <= shutil.get_terminal_size().lines:
        return lambda n: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="sent", file=sys.stderr, desc="translate")

    def update(n: int) -> None:
        bar.update(n)
        if bar.n >= total:
            bar.close()

    return update


def usable_cores() -> int:
    """Cores this process may run on (its affinity where the OS tells it, Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(device: torch.device) -> int:
    """Batches to decode at the same time: on the CPU, the cores this process may use
    divided by torch's threads (busy cores count too); one on a GPU."""
    if device.type != "cpu":
        return 1
    return max(1, usable_cores() // torch.get_num_threads())


def translate_command(
    model: str,
    beam_size: int,
    alignment: bool,
    as_json: bool,
    batch_size: int,
    device: str | None,
    stdin: IO[str],
    stdout: IO[str],
    *,
    workers: int = 0,
    shortlist: bool = False,
    int8: bool = False,
) -> int:
    """``attnviz translate``: one sentence per line from ``stdin``, one translation per line
    to ``stdout``, in order. ``alignment`` appends `` ||| 0-0 1-2 ...`` (Pharaoh, 0-based
    source-target, as Marian and OpenNMT print it); ``as_json`` writes one JSON object per
    line (``Translation.to_dict``). An empty line gives an empty line (``{}`` in JSON).
    ``workers`` batches are decoded at the same time, each in its own thread (torch releases
    the GIL inside its operations; the model is shared read-only, as the service shares it):
    on a CPU two one-thread workers beat one two-thread worker, whose small matrix products
    spend much of their time handing work between threads. 0 = :func:`default_workers`
    (the cores this process may use / torch threads on the CPU, one on a GPU).
    ``shortlist`` scores only the model's lexical shortlist (faster, approximate);
    ``int8`` an int8 copy of the output layer (faster for RNN models, approximate).
    Returns the exit status (2 with a message on stderr for a bad model or option).
    """
    if batch_size < 1:
        print(f"attnviz translate: --batch-size must be >= 1, got {batch_size}", file=sys.stderr)
        return 2
    if workers < 0:
        print(f"attnviz translate: --workers must be >= 0, got {workers}", file=sys.stderr)
        return 2
    try:
        DecodeOptions(beam_size=beam_size)
        translator = Translator.load(model, device)
        lexical = translator.shortlist() if shortlist else None
        if int8:
            check_int8_device(translator.device)
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        print(f"attnviz translate: {e}", file=sys.stderr)
        return 2
    workers = workers or default_workers(translator.device)
    lines = [line.rstrip("\r\n") for line in stdin]
    update = _progress(len(lines), stdin)
    sources: dict[int, SourceText] = {}
    for n, line in enumerate(lines):
        if line.strip():
            sources[n] = translator.source(line)
    options = DecodeOptions(beam_size=beam_size)
    order = sorted(sources, key=lambda n: len(sources[n].ids))
    empty = "{}" if as_json else (" ||| " if alignment else "")
    out: list[str] = [empty] * len(lines)
    update(len(lines) - len(sources))
    tokens = translator._tgt_tokens
    eos_id = translator.model.config.eos_id

    def run(idx: list[int]) -> tuple[list[int], list[DecodeResult], float]:
        start = time.perf_counter()
        batch = [sources[n].ids for n in idx]
        results = decode_batch(translator.model, batch, options, shortlist=lexical, int8=int8)
        return idx, results, (time.perf_counter() - start) * 1000.0

    def write(idx: list[int], results: list[DecodeResult], elapsed: float) -> None:
        for n, res in zip(idx, results, strict=True):
            if as_json:
                t = translator._translation(res, sources[n], options, elapsed, Views())
                out[n] = json.dumps(t.to_dict(decimals=6), ensure_ascii=False)
                continue
            ids = res.best.token_ids
            n_words = len(ids) - 1 if ids and ids[-1] == eos_id else len(ids)
            text = translator.detokenize([tokens[i] for i in ids[:n_words]])
            if alignment:
                links = translator.word_alignment(res.best.attention, sources[n], ids)
                text = f"{text} ||| {links}"
            out[n] = text
        update(len(idx))

    batches = [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]
    with ThreadPoolExecutor(workers, thread_name_prefix="attnviz-translate") as pool:
        done = pool.map(run, batches)  # in order, `workers` batches at a time
        for idx, results, elapsed in done:
            write(idx, results, elapsed)
    for text in out:
        stdout.write(text + "\n")
    stdout.flush()
    return 0
