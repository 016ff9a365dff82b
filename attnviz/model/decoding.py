"""Decoding: pure functions (model, source ids, options) -> DecodeResult.

    result = decode(model, src_ids, DecodeOptions(beam_size=5, n_best=3, top_k=5))
    results = decode_batch(model, many_src_ids, options)        # one padded batch
    reading = forced(model, src_ids, tgt_ids)                   # teacher forcing

Greedy, beam and forced decoding all return a :class:`DecodeResult`: hypotheses best
first, each with its target ids (ending with eos when it finished), per-token
log-probabilities, attention (tgt_len, heads, src_len) whose rows are the target tokens
(the end token included) and whose columns are the source ids (the source end token
included), and optionally the top-k candidates of every step. Beam search can also
return its whole search tree (:class:`BeamTree`).

Everything runs under ``torch.inference_mode()`` on the model's device. Per-step tensors
stay on the device and are moved to the host once, at the end; the only per-step
synchronisation is the one "how many sentences are finished?" that ends the loop (and
lets greedy decoding drop finished sentences from the batch). Call ``model.eval()`` first
(dropout would make decoding random); the functions never change the model.

Speed: for the RNN decoder in eval mode with a plain score-softmax-sum mechanism (all
but ``multihead``, ``local_m``, ``local_p`` and ``hard``), a step runs as a fused
rearrangement of ``Decoder.step`` (:class:`_FusedStepper`: context projections made once
per sentence, a per-token table for the embedding side, transposed weights, ~15 tensor
ops a step); other RNN models run ``Seq2Seq.step`` itself. The Transformer in eval mode
runs a fused rearrangement of its ``step`` (:class:`_FusedTransformerStepper`: no module
calls, one q/k/v product, cached self-attention keys and values); in training mode its
own ``step``. Fused and plain steps give the same numbers up to float rounding (tested).
At batch 1 a step is bound by memory bandwidth: every weight matrix is read once per step
(the output layer alone is vocab x hidden floats, 4.8 MB for en-fr-additive). Every entry
point takes an optional lexical ``shortlist`` (:mod:`attnviz.model.shortlist`, opt-in):
the output layer then scores the union of the batch's shortlists, each sentence masked to
its own (:class:`_OutputSpace`), and probabilities are normalised over it.

Beam search (``beam_size`` K > 1) follows fairseq: each step scores every extension of
the K live hypotheses by cumulative log-probability, takes the 2K best candidates, sends
those of them that end with eos and rank among the first K to the finished pool, and
keeps the K best others as the new beam. A sentence is done when K hypotheses have
finished (or at ``max_length``, where the live beams are added unfinished). The final
ranking uses *simple length normalisation*, not GNMT's penalty:
``norm_score = score / len ** length_penalty``, where ``score`` is the total
log-probability and ``len`` counts the target tokens including eos; ``length_penalty=0``
ranks by raw log-probability. With K = 1 this is exactly greedy decoding. The 2K best of
a sentence's K x vocab extensions are found in two passes: each beam's 2K best, then the
best 2K of those (the same candidates, a pass over the vocabulary fewer). A sentence's
beams share its source-side tensors (context projections, cross-attention keys and
values) in the fused steps: read once a step for the K beams, not K times.

In a batch, greedy and beam search both drop finished sentences as they accumulate (once a
quarter of the rows or sentences are done), so the rest run smaller; the results are those
of a run that keeps every sentence (tested).
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, Self, TypeVar, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnviz.model.attention import Attention, NoAttention
from attnviz.model.decoder import Decoder, DecoderState
from attnviz.model.factory import NMTModel
from attnviz.model.int8 import int8_output, output_layer
from attnviz.model.seq2seq import EncoderOutput, Seq2Seq, unblocked
from attnviz.model.shortlist import Shortlist
from attnviz.model.transformer import (
    Transformer,
    TransformerEncoderOutput,
    TransformerState,
    sinusoids,
)
from attnviz.model.vocab import UNK_ID

DEFAULT_MAX_LENGTH_CAP = 256  # the default max_length (2 * src_len + 10) is capped here


@dataclass(frozen=True, eq=False)
class Hypothesis:
    """One output sentence: target ids (ending with eos when it finished) and per step
    the log-probability and attention over the source.

    Attributes:
        token_ids: target ids, eos included when ``finished``.
        token_logprobs: log-probability of each token under the model at its step.
        attention: (tgt_len, heads, src_len) float32, row t = the step emitting token t,
            columns = the source ids (eos included); rows sum to 1. None without attention.
        score: total log-probability (sum of ``token_logprobs``).
        norm_score: the score hypotheses are ranked by: ``score / len ** length_penalty``.
        finished: the hypothesis ended with eos (False when it hit ``max_length``).
        top_k_ids: (tgt_len, k) int64, the k most likely tokens of each step, best first;
            None when ``top_k`` is 0.
        top_k_probs: (tgt_len, k) float32, their probabilities.
        node_ids: the path of this hypothesis in ``DecodeResult.beam`` (one node per token),
            when the beam was recorded.
        forced_steps: how many leading tokens were forced (prefix or forced decoding).
    """

    token_ids: tuple[int, ...]
    token_logprobs: tuple[float, ...]
    attention: np.ndarray | None  # (tgt_len, heads, src_len); rows sum to 1 over the source
    score: float  # total log-probability
    norm_score: float | None = None
    finished: bool = True
    top_k_ids: np.ndarray | None = None  # (tgt_len, k)
    top_k_probs: np.ndarray | None = None  # (tgt_len, k)
    node_ids: tuple[int, ...] | None = None
    forced_steps: int = 0


@dataclass(frozen=True)
class BeamNode:
    """One expanded candidate of beam search.

    Attributes:
        id: index of the node in ``BeamTree.nodes``.
        step: 0-based target position of ``token_id`` (-1 for the root, the bos token).
        token_id: the candidate token.
        parent: id of the node it extends (None for the root).
        score: cumulative log-probability of the path root..this node.
        logprob: log-probability of ``token_id`` given the parent's path.
        kept: survived pruning: stayed in the beam, or finished.
        finished: ends with eos and entered the finished pool.
    """

    id: int
    step: int
    token_id: int
    parent: int | None
    score: float
    logprob: float
    kept: bool
    finished: bool


@dataclass(frozen=True)
class BeamTree:
    """The search tree of one sentence: every candidate beam search looked at.

    At each step the 2K best extensions (K = beam size) of the live hypotheses are
    recorded; those not kept were pruned. Node 0 is the root (bos). A hypothesis's path
    is ``Hypothesis.node_ids``.
    """

    nodes: tuple[BeamNode, ...]
    beam_size: int

    def path(self, node_id: int) -> list[int]:
        """Node ids from the first token to ``node_id`` (the root excluded)."""
        out: list[int] = []
        current: int | None = node_id
        while current is not None and current != 0:
            out.append(current)
            current = self.nodes[current].parent
        return out[::-1]


@dataclass(frozen=True, eq=False)
class DecodeResult:
    hypotheses: tuple[Hypothesis, ...]  # best first
    source_ids: tuple[int, ...] = ()
    beam: BeamTree | None = None

    @property
    def best(self) -> Hypothesis:
        return self.hypotheses[0]


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode. Validated on construction (ValueError naming the field).

    Attributes:
        beam_size: 1 = greedy; K > 1 = beam search with K live hypotheses.
        n_best: hypotheses returned, 1..beam_size, best first.
        max_length: most target tokens per sentence (eos included); None = 2 * number
            of source ids + 10, at most 256.
        top_k: candidates (token id, probability) reported for every step; 0 = none.
        length_penalty: alpha of the simple length normalisation ``score / len ** alpha``
            used to rank finished hypotheses (0 = raw log-probability).
        forced_prefix: target ids forced first (no bos/eos/pad), then decoding is free.
        blocked_source: source positions (0-based, over the source ids, eos included)
            the decoder may not attend to; they get exactly 0 weight. Ignored by a model
            without attention.
        record_beam: return the beam search tree (forces the beam-search code path even
            for beam_size 1).
    """

    beam_size: int = 1
    n_best: int = 1
    max_length: int | None = None
    top_k: int = 0
    length_penalty: float = 1.0
    forced_prefix: tuple[int, ...] = ()
    blocked_source: tuple[int, ...] = ()
    record_beam: bool = False

    def __post_init__(self) -> None:
        _check_int("beam_size", self.beam_size, 1)
        _check_int("n_best", self.n_best, 1)
        if self.n_best > self.beam_size:
            raise ValueError(
                f"n_best ({self.n_best}) cannot exceed beam_size ({self.beam_size}): beam "
                "search only finds beam_size hypotheses"
            )
        if self.max_length is not None:
            _check_int("max_length", self.max_length, 1)
        _check_int("top_k", self.top_k, 0)
        lp = self.length_penalty
        if isinstance(lp, bool) or not isinstance(lp, int | float) or not math.isfinite(lp):
            raise ValueError(f"length_penalty must be a finite number, got {lp!r}")
        if lp < 0:
            raise ValueError(f"length_penalty must be >= 0, got {lp}")
        for name in ("forced_prefix", "blocked_source"):
            value = getattr(self, name)
            if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                raise ValueError(f"{name} must be a sequence of integers, got {value!r}")
            for i, item in enumerate(value):
                _check_int(f"{name}[{i}]", item, 0)
            object.__setattr__(self, name, tuple(int(v) for v in value))
        if not isinstance(self.record_beam, bool):
            raise ValueError(f"record_beam must be a bool, got {self.record_beam!r}")

    def max_length_for(self, num_source_ids: int) -> int:
        """The target length limit for a source of ``num_source_ids`` ids (eos included)."""
        if self.max_length is not None:
            return self.max_length
        return min(2 * num_source_ids + 10, DEFAULT_MAX_LENGTH_CAP)


# -- shared preparation --------------------------------------------------------------------


def pad_batch(
    sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str
) -> tuple[Tensor, Tensor]:
    """Right-pad id lists into (batch, max_len) ids and a bool mask (True = real)."""
    longest = max(len(s) for s in sequences)
    host = np.full((len(sequences), longest), pad_id, dtype=np.int64)
    for row, seq in enumerate(sequences):
        host[row, : len(seq)] = seq
    ids = torch.from_numpy(host).to(device)
    return ids, ids != pad_id


def model_device(model: NMTModel) -> torch.device:
    """The device of the model's parameters (where decoding runs)."""
    return next(model.parameters()).device


@dataclass
class _Prepared:
    """A validated, padded batch of sources with its blocked positions and length limits."""

    sources: list[tuple[int, ...]]
    src: Tensor  # (batch, src_len) long
    src_mask: Tensor  # (batch, src_len) bool
    blocked: Tensor | None  # (batch, src_len) bool, True = may not attend
    max_lens: list[int]
    device: torch.device


def _check_sources(model: NMTModel, sources: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    if isinstance(sources, str | bytes) or len(sources) == 0:
        raise ValueError("sources must be a non-empty list of source id sequences")
    vocab = model.config.src_vocab_size
    pad = model.config.pad_id
    out: list[tuple[int, ...]] = []
    for n, seq in enumerate(sources):
        ids = tuple(int(i) for i in seq)
        if not ids:
            raise ValueError(f"source {n} is empty: a source needs at least one id (its eos)")
        bad = [i for i in ids if not 0 <= i < vocab or i == pad]
        if bad:
            raise ValueError(
                f"source {n} has id {bad[0]}, outside the source vocabulary 0..{vocab - 1} "
                f"or the padding id {pad}"
            )
        out.append(ids)
    return out


def _blocked_mask(
    blocked: tuple[int, ...], sources: list[tuple[int, ...]], src_len: int, device: torch.device
) -> Tensor | None:
    if not blocked:
        return None
    for n, seq in enumerate(sources):
        out_of_range = [p for p in blocked if p >= len(seq)]
        if out_of_range:
            raise ValueError(
                f"blocked_source position {out_of_range[0]} is out of range for source {n} "
                f"({len(seq)} positions, 0..{len(seq) - 1}, the end token included)"
            )
        if len(set(blocked)) >= len(seq):
            raise ValueError(
                f"blocked_source blocks every position of source {n}: the decoder must be "
                "able to attend to at least one source token"
            )
    mask = torch.zeros(len(sources), src_len, dtype=torch.bool)
    mask[:, list(blocked)] = True
    return mask.to(device)


def _prepare(
    model: NMTModel,
    sources: Sequence[Sequence[int]],
    blocked_source: tuple[int, ...],
    max_lens: list[int] | None,
    options: DecodeOptions | None,
) -> _Prepared:
    checked = _check_sources(model, sources)
    device = model_device(model)
    src, src_mask = pad_batch(checked, model.config.pad_id, device)
    blocked = _blocked_mask(blocked_source, checked, src.size(1), device)
    if max_lens is None:
        assert options is not None
        max_lens = [options.max_length_for(len(s)) for s in checked]
    return _Prepared(checked, src, src_mask, blocked, max_lens, device)


def _check_prefix(model: NMTModel, prefix: tuple[int, ...], max_lens: list[int]) -> None:
    cfg = model.config
    special = {cfg.pad_id: "pad", cfg.bos_id: "bos", cfg.eos_id: "eos"}
    for tok in prefix:
        if tok >= cfg.tgt_vocab_size:
            raise ValueError(
                f"forced_prefix id {tok} is outside the target vocabulary "
                f"0..{cfg.tgt_vocab_size - 1}"
            )
        if tok in special:
            raise ValueError(
                f"forced_prefix cannot contain the {special[tok]} token (id {tok}): it forces "
                "words, then decoding continues freely"
            )
    if prefix and min(max_lens) <= len(prefix):
        raise ValueError(
            f"forced_prefix has {len(prefix)} tokens but max_length is {min(max_lens)}: "
            "the limit must leave room for at least one free token"
        )


def _length_norm(score: float, length: int, alpha: float) -> float:
    return score / (max(length, 1) ** alpha) if alpha else score


def _to_numpy(tensors: list[Tensor], dtype: torch.dtype | None = None) -> np.ndarray:
    stacked = torch.stack(tensors, 0)
    if dtype is not None:
        stacked = stacked.to(dtype)
    return stacked.cpu().numpy()


_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)  # numpy has no bfloat16


def _row_max(scores: Tensor) -> tuple[Tensor, Tensor]:
    """scores (rows, n) -> each row's maximum and its first index, (rows,) each.

    On the CPU through numpy's argmax, which is ~15x faster than torch's ``max(dim)``
    for (64, 4692) log-probabilities here (32 against 500 us: a greedy batch-64 step's
    second cost after the output layer); the CPU tensor and the array share memory.
    """
    if scores.device.type != "cpu" or scores.dtype not in _NUMPY_FLOATS:
        return scores.max(dim=-1)
    index = torch.from_numpy(np.argmax(scores.numpy(), axis=-1))  # (rows,) int64
    return scores.gather(1, index.unsqueeze(1)).squeeze(1), index


@dataclass(frozen=True)
class _OutputSpace:
    """The target ids the output layer scores: the whole vocabulary (``ids`` None: column
    = id), or the union of a batch's shortlists (column c scores id ``ids[c]``), with
    ``bias`` (batch, size) 0 where the sentence's own shortlist holds the column's id and
    -inf elsewhere, so that each sentence is scored over its own shortlist: its result
    does not depend on the rest of the batch. The special tokens are always scored (as by
    the full output layer: a sentence can always end)."""

    size: int
    ids: Tensor | None  # (size,) int64, sorted
    bias: Tensor | None  # (batch, size) 0 | -inf; None: every row scores every column
    sizes: list[int] | None  # each sentence's own shortlist size; None: the vocabulary
    int8: nn.Module | None  # the int8 output layer (:mod:`attnviz.model.int8`)

    @classmethod
    def of(
        cls,
        model: NMTModel,
        shortlist: Shortlist | None,
        prep: _Prepared,
        extra: Sequence[Sequence[int]],
        int8: bool = False,
    ) -> _OutputSpace:
        """The space for a batch: every target id, or each source's shortlist plus
        ``extra[b]``, ids row b must be able to score (a forced prefix, forced targets);
        with ``int8``, scored by the model's int8 output layer."""
        cfg = model.config
        weights = _int8_output(model) if int8 else None
        if shortlist is None:
            return cls(cfg.tgt_vocab_size, None, None, None, weights)
        allowed = shortlist.allowed(prep.sources, cfg.tgt_vocab_size, extra)
        allowed[:, [cfg.pad_id, UNK_ID, cfg.bos_id, cfg.eos_id]] = True  # (batch, vocab)
        ids = np.flatnonzero(allowed.any(0))  # (size,) sorted: the batch's union
        own = allowed[:, ids]  # (batch, size)
        bias = None
        if not own.all():
            dtype = next(model.parameters()).dtype  # the output layer's
            bias = torch.from_numpy(np.where(own, 0.0, -np.inf)).to(prep.device, dtype)
        sizes = own.sum(1).tolist()
        return cls(len(ids), torch.from_numpy(ids).to(prep.device), bias, sizes, weights)

    def top_k(self, k: int, sentence: int) -> int:
        """How many of the ``k`` best candidates sentence ``sentence`` reports: at most its
        own shortlist's size (the other columns are the rest of the batch's, at -inf)."""
        return k if self.sizes is None else min(k, self.sizes[sentence])

    def to_vocab(self, columns: Tensor) -> Tensor:
        return columns if self.ids is None else self.ids[columns]

    def to_columns(self, vocab_ids: Tensor) -> Tensor:
        """Columns of ids that are in the space (forced ids are put there by ``of``)."""
        if self.ids is None:
            return vocab_ids
        return torch.searchsorted(self.ids, vocab_ids.contiguous())


class _Columns:
    """Logits over the whole vocabulary (rows, vocab) -> over the space (rows, space): the
    space's columns, plus each row's own shortlist bias (0 | -inf), which follows the
    rows as they are reordered. For steps whose output layer scored every id: the model's
    own step, the int8 layer (gathering int8 rows would mean repacking them every batch).
    Correct, not faster, with shortlists."""

    def __init__(self, space: _OutputSpace, expand: Tensor | None) -> None:
        self.ids = space.ids
        self.bias = None if space.bias is None else _rows_of(space.bias, expand)  # (rows, space)

    def __call__(self, logits: Tensor) -> Tensor:
        if self.ids is not None:
            logits = logits.index_select(1, self.ids)
        return logits if self.bias is None else logits + self.bias

    def reorder(self, rows: Tensor) -> None:
        if self.bias is not None:
            self.bias = self.bias.index_select(0, rows)


class _OutputLayer:
    """A fused stepper's output layer: readouts (rows, in) -> logits (rows, space).

    fp32: the space's columns of the weight, gathered once (all of them without
    shortlists), and their bias plus each row's own shortlist bias. int8: the whole
    vocabulary through the int8 layer (its bias included), then :class:`_Columns`.
    """

    def __init__(
        self,
        rows: Tensor,
        bias: Tensor | None,
        space: _OutputSpace,
        expand: Tensor | None,
        full_t: Tensor,
    ) -> None:
        # rows (vocab, in) the layer's own weight; full_t (in, vocab) its transposed copy;
        # bias (vocab,) | None
        self.int8 = space.int8
        self.columns = _Columns(space, expand)
        self.weight = full_t  # (in, space)
        self.bias = bias  # (space,) | (rows, space) | None
        if self.int8 is not None:
            return
        ids, row_bias = self.columns.ids, self.columns.bias
        if ids is not None:
            self.weight = _columns(rows, ids)
            bias = None if bias is None else bias.index_select(0, ids)
        if row_bias is not None:
            bias = row_bias if bias is None else bias + row_bias
        self.bias = bias

    def __call__(self, x: Tensor) -> Tensor:
        if self.int8 is not None:
            return self.columns(self.int8(x))
        if self.bias is None:
            return x @ self.weight
        return torch.addmm(self.bias, x, self.weight)

    def reorder(self, rows: Tensor) -> None:
        if self.int8 is not None:
            self.columns.reorder(rows)
        elif self.bias is not None and self.bias.dim() == 2:
            self.bias = self.bias.index_select(0, rows)


# -- one decoder step: the model's own, or a fused equivalent for the RNN decoder ----------


class _Stepper:
    """Runs decoder steps for ``group`` rows per sentence (beam search: its beams),
    sentence-major, keeping the recurrent state.

    Made from the sentences' encoder output, blocked mask and output space (one row each);
    ``step(prev, step_ids)`` -> logits (rows, space.size), weights (rows, heads, src_len)
    | None; ``reorder(rows)`` selects rows of the state (beam search: each new beam's
    parent, within its sentence); ``keep(rows, sentences)`` keeps only those rows and
    sentences, state and source alike (dropping finished sentences). The logits are over
    the output space's columns (all the vocabulary, or a batch's shortlists, whose
    output-layer columns the fused steppers select once), each row's own shortlist's bias
    added. The fused steppers keep what comes from the source once per sentence where a
    step can use it so (the Bahdanau/Luong context projections, the Transformer's
    cross-attention keys and values): a sentence's beams read it once, not once each.
    """

    def step(self, prev: Tensor, step_ids: Tensor) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def reorder(self, rows: Tensor) -> None:
        raise NotImplementedError

    def keep(self, rows: Tensor, sentences: Tensor) -> None:
        raise NotImplementedError


def _group_rows(sentences: int, group: int, device: torch.device) -> Tensor | None:
    """(sentences * group,) the sentence of each row, sentence-major; None when group is 1."""
    if group == 1:
        return None
    return torch.arange(sentences, device=device).repeat_interleave(group)


def _rows_of(tensor: Tensor, expand: Tensor | None) -> Tensor:
    return tensor if expand is None else tensor.index_select(0, expand)


class _Selectable(Protocol):
    def index_select(self, indices: Tensor) -> Self: ...


EncT = TypeVar("EncT", bound=_Selectable)
StateT = TypeVar("StateT", bound=_Selectable)
EncIn = TypeVar("EncIn", bound=_Selectable, contravariant=True)


class _StepModel(Protocol[EncIn, StateT]):
    """What decoding needs of a model: ``Seq2Seq`` and ``Transformer`` both are one."""

    def init_state(self, enc: EncIn, /) -> StateT: ...

    def step(
        self,
        prev_tokens: Tensor,
        state: StateT,
        enc: EncIn,
        *,
        step_index: int | Tensor,
        blocked_mask: Tensor | None = None,
        output: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, StateT, Tensor | None]: ...


class _ModelStepper(_Stepper, Generic[EncT, StateT]):
    """The model's own ``step`` as it is (any decoder, any attention, dropout honoured;
    the Transformer's cached self-attention keys and values follow the rows)."""

    def __init__(
        self,
        model: _StepModel[EncT, StateT],
        enc: EncT,
        blocked: Tensor | None,
        space: _OutputSpace,
        expand: Tensor | None,
    ) -> None:
        self.model = model
        self.enc = enc if expand is None else enc.index_select(expand)
        self.blocked = None if blocked is None else _rows_of(blocked, expand)
        self.columns = _Columns(space, expand)
        self.int8 = space.int8
        self.state: StateT = model.init_state(self.enc)

    def step(self, prev: Tensor, step_ids: Tensor) -> tuple[Tensor, Tensor | None]:
        logits, self.state, weights = self.model.step(
            prev,
            self.state,
            self.enc,
            step_index=step_ids,
            blocked_mask=self.blocked,
            output=self.int8,
        )
        return self.columns(logits), weights

    def reorder(self, rows: Tensor) -> None:
        self.state = self.state.index_select(rows)
        self.columns.reorder(rows)

    def keep(self, rows: Tensor, sentences: Tensor) -> None:
        self.reorder(rows)
        self.enc = self.enc.index_select(rows)
        if self.blocked is not None:
            self.blocked = self.blocked.index_select(0, rows)


@dataclass(frozen=True)
class _FusedWeights:
    """The decoder's weights rearranged for the fused step, made once per model.

    Matrices are stored transposed and contiguous, (in, out): BLAS multiplies a few rows
    by them much faster than by the (out, in) layout of ``nn.Linear`` (for the output
    layer and 5 beam rows, about twice as fast here). ``table`` holds the embedding-side
    pre-activations of every target token, so a step looks up one row instead of
    multiplying: Bahdanau ``[W_ie e + b_ih | W_re e + b_r]`` (vocab, 4h), Luong
    ``W_ie e + b_ih`` (vocab, 3h); None when it would exceed ``_TABLE_BYTES_MAX``.
    """

    table: Tensor | None
    ie_t: Tensor  # (emb, 3h) GRU input weights of the embedding (used without a table)
    re_t: Tensor | None  # (emb, h) Bahdanau readout weights of the embedding
    feed_t: Tensor | None  # (h, 3h) Luong GRU input weights of the attentional vector
    ctx_t: Tensor  # (key_dim, 4h) Bahdanau [GRU input | readout]; (key_dim, h) Luong readout
    hh_t: Tensor  # (h, 3h)
    rh_t: Tensor  # (h, h) readout weights of the decoder state
    out_t: Tensor  # (h, vocab)
    out_rows: Tensor  # (vocab, h) the output layer's own weight: shortlists gather its rows
    b_ih: Tensor  # (3h,)
    b_hh: Tensor  # (3h,)
    b_r: Tensor  # (h,)
    b_out: Tensor  # (vocab,)


# Fused weights cached per model: derived from its parameters, never written by decoding,
# rebuilt when a parameter changes (in place or replaced), dropped with the model.
_TABLE_BYTES_MAX = 64 * 2**20
_fused_cache: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[tuple[object, ...], object]]] = (
    weakref.WeakKeyDictionary()
)
_fused_lock = threading.Lock()
_build_lock = threading.Lock()
FusedT = TypeVar("FusedT")


def _cached(
    model: nn.Module, kind: str, params: Sequence[Tensor], build: Callable[[], FusedT]
) -> FusedT:
    """``build()`` once per model, ``kind`` and state of ``params`` (storage and version)."""
    signature = (
        _TABLE_BYTES_MAX,
        *((p.data_ptr(), p._version, p.device, p.dtype) for p in params),
    )
    with _fused_lock:
        cached = _fused_cache.get(model, {}).get(kind)
    if cached is not None and cached[0] == signature:
        return cast(FusedT, cached[1])
    # one build at a time (once per model and weights: the first request after a load),
    # so that threads arriving together share one copy of the fused weights
    with _build_lock:
        with _fused_lock:
            cached = _fused_cache.get(model, {}).get(kind)
        if cached is not None and cached[0] == signature:
            return cast(FusedT, cached[1])
        value = build()
        with _fused_lock:
            _fused_cache.setdefault(model, {})[kind] = (signature, value)
    return value


def _own_parameters(modules: Sequence[nn.Module]) -> list[Tensor]:
    """The parameters held by ``modules`` themselves, read directly: ``model.parameters()``
    walks the whole module tree, 0.37 ms a call for en-fr-transformer, on every decode."""
    return [p for m in modules for p in m._parameters.values() if p is not None]


def _int8_output(model: NMTModel) -> nn.Module:
    params = _own_parameters([output_layer(model)[0]])
    return _cached(model, "int8", params, lambda: int8_output(model))


def _fused_weights(model: Seq2Seq, key_dim: int) -> _FusedWeights:
    dec = model.decoder
    cell, readout, output = dec.cell, dec.readout, dec.output
    params = (
        dec.embedding.weight,
        cell.weight_ih,
        cell.bias_ih,
        cell.weight_hh,
        cell.bias_hh,
        readout.weight,
        readout.bias,
        output.weight,
        output.bias,
    )
    return _cached(model, "rnn", params, lambda: _build_fused_weights(model, key_dim))


def _build_fused_weights(model: Seq2Seq, key_dim: int) -> _FusedWeights:
    dec = model.decoder
    cell, readout, output = dec.cell, dec.readout, dec.output
    cfg = model.config
    hid, emb_dim = cfg.hidden_dim, cfg.emb_dim
    luong = dec.style == "luong"
    w_ih, w_r = cell.weight_ih, readout.weight
    ie_t = w_ih[:, :emb_dim].t().contiguous()  # (emb, 3h)
    emb = dec.embedding.weight  # (vocab, emb)
    if luong:  # GRU input [emb; feed]; readout [context; state]
        re_t = None
        feed_t = w_ih[:, emb_dim:].t().contiguous()  # (h, 3h)
        ctx_t = w_r[:, :key_dim].t().contiguous()  # (key_dim, h)
        rh_t = w_r[:, key_dim:].t().contiguous()  # (h, h)
        table_parts = [(ie_t, cell.bias_ih)]
    else:  # GRU input [emb; context]; readout [state; context; emb]
        re_t = w_r[:, hid + key_dim :].t().contiguous()  # (emb, h)
        feed_t = None
        ctx_t = torch.cat([w_ih[:, emb_dim:], w_r[:, hid : hid + key_dim]], 0).t().contiguous()
        rh_t = w_r[:, :hid].t().contiguous()  # (h, h)
        table_parts = [(ie_t, cell.bias_ih), (re_t, readout.bias)]
    width = sum(w.size(1) for w, _ in table_parts)
    table = None
    if cfg.tgt_vocab_size * width * emb.element_size() <= _TABLE_BYTES_MAX:
        table = torch.cat([torch.addmm(b, emb, w) for w, b in table_parts], 1)  # (vocab, w)
    return _FusedWeights(
        table=table,
        ie_t=ie_t,
        re_t=re_t,
        feed_t=feed_t,
        ctx_t=ctx_t,
        hh_t=cell.weight_hh.t().contiguous(),
        rh_t=rh_t,
        out_t=output.weight.t().contiguous(),
        out_rows=output.weight,
        b_ih=cell.bias_ih,
        b_hh=cell.bias_hh,
        b_r=readout.bias,
        b_out=output.bias,
    )


def _columns(rows: Tensor, ids: Tensor) -> Tensor:
    """(in, len(ids)): the output layer's columns for ``ids``, from its (vocab, in) weight:
    gathering whole rows, then transposing, is ~4x faster than gathering columns of the
    (in, vocab) copy (1 KB reads instead of 4-byte ones)."""
    return rows.index_select(0, ids).t().contiguous()


class _FusedStepper(_Stepper):
    """The same step as ``Decoder.step`` in eval mode, rearranged for speed.

    The context vector only ever enters linear maps (the GRU input and, for Bahdanau, the
    readout), and the context is a weighted sum of the encoder states, so
    ``W c_t = sum_s a_ts (W v_s)``: the products ``W v_s`` are computed once per sentence
    in one matrix product, and each step only mixes them with the new weights. The
    embedding-side products of the GRU input and the readout are looked up per token in a
    table made once per model (:class:`_FusedWeights`), the GRU gates are computed from the
    two pre-activations, and masking is an additive bias (0 or -inf, so masked positions
    get exactly 0). Same result as ``Decoder.step`` up to float rounding (tested against it
    for every mechanism it supports).
    """

    def __init__(
        self,
        model: Seq2Seq,
        enc: EncoderOutput,
        blocked: Tensor | None,
        space: _OutputSpace,
        expand: Tensor | None,
    ) -> None:
        dec = model.decoder
        key_dim = enc.values.size(-1)
        self.w = _fused_weights(model, key_dim)
        self.output = _OutputLayer(self.w.out_rows, self.w.b_out, space, expand, self.w.out_t)
        self.luong = dec.style == "luong"
        self.hid = model.config.hidden_dim
        self.embedding = dec.embedding.weight  # (vocab, emb)
        self.attention = model.has_attention
        self.score = dec.attention.score
        self.keys = _rows_of(enc.keys, expand)  # (rows, src_len, key_dim)
        proj = torch.matmul(enc.values, self.w.ctx_t)  # (sentences, mem_len, 4h | h)
        self.bias: Tensor | None = None  # None: nothing masked (one sentence, no blocking)
        if self.attention:
            mask = enc.attn_mask if blocked is None else enc.attn_mask & ~blocked
            if not bool(mask.all()):
                bias = torch.zeros(mask.shape, dtype=proj.dtype, device=proj.device)
                bias.masked_fill_(~mask, float("-inf"))  # (sentences, src_len)
                self.bias = _rows_of(bias, expand)  # (rows, src_len)
            self.ctx_proj = proj  # (sentences, src_len, 4h | h): shared by their rows
        else:
            # (rows, 4h | h): the summary is the only context
            self.ctx_const = _rows_of(proj[:, 0], expand)
        state = model.init_state(enc)
        self.hidden = _rows_of(state.hidden, expand)  # (rows, h)
        self.feed = None if state.feed is None else _rows_of(state.feed, expand)  # (rows, h)

    def _gru(self, gi: Tensor, h: Tensor) -> Tensor:
        """GRUCell from the input pre-activation gi (rows, 3h), bias included."""
        hid = self.hid
        gh = torch.addmm(self.w.b_hh, h, self.w.hh_t)  # (rows, 3h)
        rz = torch.sigmoid(gi[:, : 2 * hid] + gh[:, : 2 * hid])  # (rows, 2h)
        n = torch.tanh(torch.addcmul(gi[:, 2 * hid : 3 * hid], rz[:, :hid], gh[:, 2 * hid :]))
        return torch.lerp(n, h, rz[:, hid:])  # (1 - z) * n + z * h

    def _attend(self, query: Tensor, step_ids: Tensor) -> Tensor:
        scores = self.score(query, self.keys, step_ids)  # (rows, src_len)
        if self.bias is not None:
            scores = scores + self.bias
        return torch.softmax(scores, dim=-1).unsqueeze(1)  # (rows, 1, src_len)

    def _mix(self, base: Tensor, weights: Tensor) -> Tensor:
        """base (rows, n) + each row's weights (rows, 1, src_len) times its sentence's
        context projections: one product per sentence for all its rows."""
        sentences = self.ctx_proj.size(0)
        group = base.size(0) // sentences
        mixed = torch.baddbmm(
            base.view(sentences, group, -1), weights.view(sentences, group, -1), self.ctx_proj
        )  # (sentences, group, n)
        return mixed.view(base.shape)

    def step(self, prev: Tensor, step_ids: Tensor) -> tuple[Tensor, Tensor | None]:
        w = self.w
        h = self.hidden
        weights = None
        if self.luong:
            assert self.feed is not None and w.feed_t is not None
            if w.table is not None:
                row = F.embedding(prev, w.table)  # (rows, 3h) = W_ie e + b_ih
            else:
                row = torch.addmm(w.b_ih, F.embedding(prev, self.embedding), w.ie_t)
            h = self._gru(torch.addmm(row, self.feed, w.feed_t), h)  # (rows, h)
            pre = torch.addmm(w.b_r, h, w.rh_t)  # (rows, h)
            if self.attention:
                weights = self._attend(h, step_ids)
                pre = self._mix(pre, weights)
            else:
                pre = pre + self.ctx_const
            out = torch.tanh(pre)  # (rows, h)
            self.feed = out
        else:
            if w.table is not None:
                x = F.embedding(prev, w.table)  # (rows, 4h): [gru input | readout]
            else:
                assert w.re_t is not None
                emb = F.embedding(prev, self.embedding)  # (rows, emb)
                x = torch.cat(
                    [torch.addmm(w.b_ih, emb, w.ie_t), torch.addmm(w.b_r, emb, w.re_t)], 1
                )
            if self.attention:
                weights = self._attend(h, step_ids)
                x = self._mix(x, weights)
            else:
                x = x + self.ctx_const
            h = self._gru(x, h)
            out = torch.tanh(torch.addmm(x[:, 3 * self.hid :], h, w.rh_t))  # (rows, h)
        self.hidden = h
        return self.output(out), weights  # (rows, space)

    def reorder(self, rows: Tensor) -> None:
        self.hidden = self.hidden.index_select(0, rows)
        if self.feed is not None:
            self.feed = self.feed.index_select(0, rows)
        self.output.reorder(rows)

    def keep(self, rows: Tensor, sentences: Tensor) -> None:
        self.reorder(rows)
        self.keys = self.keys.index_select(0, rows)
        if self.bias is not None:
            self.bias = self.bias.index_select(0, rows)
        if self.attention:
            self.ctx_proj = self.ctx_proj.index_select(0, sentences)
        else:
            self.ctx_const = self.ctx_const.index_select(0, rows)


@dataclass(frozen=True)
class _FusedLayer:
    """One Transformer decoder layer's weights for the fused step: matrices transposed to
    (in, out); self-attention's q, k, v projections in one (dim, 3 dim) matrix; both query
    projections (and biases) scaled by 1/sqrt(head_dim) beforehand."""

    norms: tuple[tuple[Tensor, Tensor], ...]  # norm1, norm2, norm3: (weight, bias)
    qkv_t: Tensor  # (dim, 3 dim)
    qkv_b: Tensor  # (3 dim,)
    self_out_t: Tensor  # (dim, dim)
    self_out_b: Tensor
    cross_q_t: Tensor  # (dim, dim)
    cross_q_b: Tensor
    cross_out_t: Tensor  # (dim, dim)
    cross_out_b: Tensor
    ff1_t: Tensor  # (dim, ff)
    ff1_b: Tensor
    ff2_t: Tensor  # (ff, dim)
    ff2_b: Tensor


@dataclass(frozen=True)
class _FusedTransformer:
    layers: tuple[_FusedLayer, ...]
    embed: Tensor  # (vocab, dim) target embeddings times sqrt(dim)
    positions: Tensor  # (_POSITIONS, dim) sinusoids of the first target positions
    final_norm: tuple[Tensor, Tensor]
    out_t: Tensor  # (dim, vocab)
    out_rows: Tensor  # (vocab, dim) the output layer's own weight: shortlists gather its rows


_POSITIONS = DEFAULT_MAX_LENGTH_CAP + 1  # later positions are computed when reached


def _transformer_weights(model: Transformer) -> _FusedTransformer:
    # the modules whose parameters _build_transformer_weights reads
    modules: list[nn.Module] = [model.tgt_embedding, model.decoder_norm, model.output]
    for layer in model._decoder():
        sa, ca, ff = layer.self_attn, layer.cross_attn, layer.ff.net
        modules += [layer.norm1, layer.norm2, layer.norm3, sa.q, sa.k, sa.v, sa.out]
        modules += [ca.q, ca.out, ff[0], ff[3]]
    return _cached(
        model, "transformer", _own_parameters(modules), lambda: _build_transformer_weights(model)
    )


def _build_transformer_weights(model: Transformer) -> _FusedTransformer:
    cfg = model.config
    scale = 1.0 / math.sqrt(cfg.hidden_dim // cfg.attention_heads)

    def t(linear: nn.Linear, factor: float = 1.0) -> tuple[Tensor, Tensor]:
        return (linear.weight * factor).t().contiguous(), linear.bias * factor

    layers = []
    for layer in model._decoder():
        sa, ca, ff = layer.self_attn, layer.cross_attn, layer.ff.net
        (q_t, q_b), (k_t, k_b), (v_t, v_b) = t(sa.q, scale), t(sa.k), t(sa.v)
        cross_q_t, cross_q_b = t(ca.q, scale)
        ff1, ff2 = cast(nn.Linear, ff[0]), cast(nn.Linear, ff[3])
        layers.append(
            _FusedLayer(
                norms=tuple((n.weight, n.bias) for n in (layer.norm1, layer.norm2, layer.norm3)),
                qkv_t=torch.cat([q_t, k_t, v_t], 1).contiguous(),
                qkv_b=torch.cat([q_b, k_b, v_b]),
                self_out_t=t(sa.out)[0],
                self_out_b=sa.out.bias,
                cross_q_t=cross_q_t,
                cross_q_b=cross_q_b,
                cross_out_t=t(ca.out)[0],
                cross_out_b=ca.out.bias,
                ff1_t=t(ff1)[0],
                ff1_b=ff1.bias,
                ff2_t=t(ff2)[0],
                ff2_b=ff2.bias,
            )
        )
    device = model.output.weight.device
    return _FusedTransformer(
        layers=tuple(layers),
        embed=model.tgt_embedding.weight * model.scale,
        positions=sinusoids(torch.arange(_POSITIONS, device=device), cfg.hidden_dim),
        final_norm=(model.decoder_norm.weight, model.decoder_norm.bias),
        out_t=model.output.weight.t().contiguous(),
        out_rows=model.output.weight,
    )


class _FusedTransformerStepper(_Stepper):
    """The same step as ``Transformer.step`` in eval mode, with plain tensor operations:
    no module calls or dropout, one matrix product for the self-attention's q, k and v,
    the query scaling folded into the weights, masking as an additive bias (0 or -inf,
    so masked positions get exactly 0). Same result as ``Transformer.step`` up to float
    rounding (tested against it)."""

    def __init__(
        self,
        model: Transformer,
        enc: TransformerEncoderOutput,
        blocked: Tensor | None,
        space: _OutputSpace,
        expand: Tensor | None,
    ) -> None:
        self.w = _transformer_weights(model)
        self.output = _OutputLayer(self.w.out_rows, None, space, expand, self.w.out_t)
        cfg = model.config
        self.dim, self.heads = cfg.hidden_dim, cfg.attention_heads
        self.head_dim = self.dim // self.heads
        self.align_layer = model.alignment_layer
        # per layer, shared by a sentence's rows and laid out once for the step's products
        # (the encoder's are transposed views of its heads: a product would copy them at
        # every step): keys (sentences, heads, head_dim, src_len), values (sentences,
        # heads, src_len, head_dim)
        self.cross_keys = [k.transpose(-1, -2).contiguous() for k in enc.cross_keys]
        self.cross_values = [v.contiguous() for v in enc.cross_values]
        mask = unblocked(enc.mask, blocked)  # (sentences, src_len)
        self.bias: Tensor | None = None  # None: nothing masked
        if not bool(mask.all()):
            bias = torch.zeros(mask.shape, dtype=enc.states.dtype, device=mask.device)
            self.bias = bias.masked_fill_(~mask, float("-inf"))[:, None, None, :]
        state = model.init_state(enc)
        if expand is not None:
            state = state.index_select(expand)
        self.keys = list(state.keys)  # per layer (rows, heads, steps, head_dim)
        self.values = list(state.values)

    def _positions(self, step_ids: Tensor) -> Tensor:
        # the table on the CPU; computed past it, and on a GPU (no host sync a step there)
        if step_ids.device.type == "cpu" and int(step_ids.max()) < self.w.positions.size(0):
            return F.embedding(step_ids, self.w.positions)  # (rows, dim)
        return sinusoids(step_ids, self.dim)

    def step(self, prev: Tensor, step_ids: Tensor) -> tuple[Tensor, Tensor | None]:
        w, dim, heads, head_dim = self.w, self.dim, self.heads, self.head_dim
        rows = prev.size(0)
        sentences = self.cross_keys[0].size(0)
        group = rows // sentences  # rows per sentence (its beams)
        x = F.embedding(prev, w.embed) + self._positions(step_ids)  # (rows, dim)
        align: Tensor | None = None
        for i, lw in enumerate(w.layers):
            h = F.layer_norm(x, (dim,), *lw.norms[0])
            qkv = torch.addmm(lw.qkv_b, h, lw.qkv_t).view(rows, 3, heads, 1, head_dim)
            keys = torch.cat([self.keys[i], qkv[:, 1]], 2)  # (rows, heads, steps, head_dim)
            values = torch.cat([self.values[i], qkv[:, 2]], 2)
            self.keys[i], self.values[i] = keys, values
            weights = torch.softmax(qkv[:, 0] @ keys.transpose(-1, -2), -1)  # (r, h, 1, steps)
            mixed = (weights @ values).reshape(rows, dim)  # heads side by side
            x = torch.addmm(x, mixed, lw.self_out_t).add_(lw.self_out_b)
            h = F.layer_norm(x, (dim,), *lw.norms[1])
            q = torch.addmm(lw.cross_q_b, h, lw.cross_q_t).view(sentences, group, heads, head_dim)
            q = q.transpose(1, 2)  # (sentences, heads, group, head_dim)
            scores = q @ self.cross_keys[i]  # (sentences, heads, group, src)
            if self.bias is not None:
                scores = scores + self.bias
            cross = torch.softmax(scores, -1)
            # (sentences, group, heads, head_dim): each row's heads side by side
            mixed = (cross @ self.cross_values[i]).transpose(1, 2).reshape(rows, dim)
            x = torch.addmm(x, mixed, lw.cross_out_t).add_(lw.cross_out_b)
            h = F.layer_norm(x, (dim,), *lw.norms[2])
            inner = torch.relu_(torch.addmm(lw.ff1_b, h, lw.ff1_t))  # (rows, ff)
            x = torch.addmm(x, inner, lw.ff2_t).add_(lw.ff2_b)
            if i == self.align_layer:
                align = cross.transpose(1, 2).reshape(rows, heads, -1)  # (rows, heads, src)
        h = F.layer_norm(x, (dim,), *w.final_norm)
        return self.output(h), align  # (rows, space)

    def reorder(self, rows: Tensor) -> None:
        self.keys = [k.index_select(0, rows) for k in self.keys]
        self.values = [v.index_select(0, rows) for v in self.values]
        self.output.reorder(rows)

    def keep(self, rows: Tensor, sentences: Tensor) -> None:
        self.reorder(rows)
        self.cross_keys = [k.index_select(0, sentences) for k in self.cross_keys]
        self.cross_values = [v.index_select(0, sentences) for v in self.cross_values]
        if self.bias is not None:
            self.bias = self.bias.index_select(0, sentences)


def _fusable(model: NMTModel) -> bool:
    """The fused step reproduces the model's: an eval-mode ``Decoder`` with a GRU cell and a
    mechanism whose forward is the plain score -> masked softmax -> weighted sum."""
    dec = getattr(model, "decoder", None)
    if model.training or type(dec) is not Decoder:
        return False
    att = dec.attention
    plain = type(att).forward is Attention.forward
    return isinstance(dec.cell, nn.GRUCell) and (plain or isinstance(att, NoAttention))


def _stepper(
    model: NMTModel,
    enc: EncoderOutput | TransformerEncoderOutput,
    blocked: Tensor | None,
    fast: bool,
    space: _OutputSpace,
    group: int = 1,
) -> _Stepper:
    """A stepper for ``group`` rows per sentence of ``enc`` (and of ``blocked`` (sentences,
    src_len) and ``space``)."""
    expand = _group_rows(enc.mask.size(0), group, enc.mask.device)
    if isinstance(model, Transformer):
        assert isinstance(enc, TransformerEncoderOutput)
        if fast and not model.training:
            return _FusedTransformerStepper(model, enc, blocked, space, expand)
        return _ModelStepper[TransformerEncoderOutput, TransformerState](
            model, enc, blocked, space, expand
        )
    assert isinstance(enc, EncoderOutput)
    if fast and _fusable(model):
        return _FusedStepper(model, enc, blocked, space, expand)
    return _ModelStepper[EncoderOutput, DecoderState](model, enc, blocked, space, expand)


# -- greedy and forced decoding ------------------------------------------------------------


@dataclass
class _Segment:
    """Steps recorded while the set of rows stayed the same (rows = original indices)."""

    start: int
    rows: list[int]
    tokens: list[Tensor]
    logprobs: list[Tensor]
    weights: list[Tensor]
    top_ids: list[Tensor]
    top_lps: list[Tensor]


# Drop finished sentences from a greedy batch once this share of its rows is done (and the
# batch has at least _COMPACT_MIN_ROWS rows): the rest of the batch then runs smaller.
_COMPACT_SHARE = 0.25
_COMPACT_MIN_ROWS = 8


@torch.inference_mode()
def _greedy_core(
    model: NMTModel,
    prep: _Prepared,
    *,
    forced: Tensor | None,
    forced_lens: list[int] | None,
    forced_ids: Sequence[Sequence[int]],
    stop_at_eos: bool,
    top_k: int,
    length_penalty: float,
    fast: bool,
    shortlist: Shortlist | None,
    int8: bool,
) -> list[DecodeResult]:
    """One token per step for every row: the forced token while there is one, else the
    most likely. ``forced`` (batch, P) long is the same width for every row; rows stop
    at eos (when ``stop_at_eos``, never inside the forced part) or at their max length.
    Finished rows are dropped from the batch as they accumulate."""
    cfg = model.config
    device = prep.device
    batch = prep.src.size(0)
    space = _OutputSpace.of(model, shortlist, prep, forced_ids, int8)
    enc = model.encode(prep.src, prep.src_mask)
    stepper = _stepper(model, enc, prep.blocked, fast, space)
    max_lens = prep.max_lens
    steps_max = max(max_lens)
    n_forced = 0 if forced is None else forced.size(1)
    expired = (
        None
        if min(max_lens) == steps_max
        else (
            torch.arange(1, steps_max + 1).unsqueeze(1) >= torch.tensor(max_lens).unsqueeze(0)
        ).to(device)  # (steps, batch) True once row b has used up its length
    )
    k = min(top_k, space.size)
    eos = cfg.eos_id
    step_ids = torch.arange(steps_max, device=device).unsqueeze(1).expand(steps_max, batch)
    prev = torch.full((batch,), cfg.bos_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    seg = _Segment(0, list(range(batch)), [], [], [], [], [])
    segments = [seg]
    for t in range(steps_max):
        logits, w = stepper.step(prev, step_ids[t])
        lp = torch.log_softmax(logits, dim=-1)  # (rows, space)
        if t < n_forced:
            assert forced is not None
            tok = forced[:, t]  # (rows,)
            tok_lp = lp.gather(1, space.to_columns(tok).unsqueeze(1)).squeeze(1)  # (rows,)
        else:
            tok_lp, column = _row_max(lp)  # (rows,)
            tok = space.to_vocab(column)
        seg.tokens.append(tok)
        seg.logprobs.append(tok_lp)
        if w is not None:
            seg.weights.append(w)  # (rows, heads, src_len)
        if k:
            v, i = lp.topk(k, dim=-1)  # (rows, k)
            seg.top_lps.append(v)
            seg.top_ids.append(space.to_vocab(i))
        prev = tok
        if t == steps_max - 1:
            break
        finished = None
        if stop_at_eos and t >= n_forced:
            finished = tok == eos
        if expired is not None:
            finished = expired[t] if finished is None else finished | expired[t]
        if finished is None:
            continue
        done = done | finished
        rows = done.size(0)
        if rows < _COMPACT_MIN_ROWS:
            if bool(done.all()):
                break
            continue
        n_done = int(done.sum())
        if n_done == rows:
            break
        if n_done >= _COMPACT_SHARE * rows:  # drop the finished rows
            keep = (~done).nonzero().squeeze(1)  # (kept,)
            kept = keep.tolist()
            stepper.keep(keep, keep)
            prev, done = prev[keep], done[keep]
            step_ids = step_ids[:, keep]
            if expired is not None:
                expired = expired[:, keep]
            if forced is not None:
                forced = forced[keep]
            seg = _Segment(t + 1, [seg.rows[i] for i in kept], [], [], [], [], [])
            segments.append(seg)
    # one transfer to the host per recorded quantity and segment
    pieces: dict[int, list[tuple[int, dict[str, np.ndarray]]]] = {}
    for sg in segments:
        if not sg.tokens:
            continue
        host = {
            "tok": _to_numpy(sg.tokens),  # (steps, rows)
            "lp": _to_numpy(sg.logprobs, torch.float32),
        }
        if sg.weights:
            host["att"] = _to_numpy(sg.weights, torch.float32)  # (steps, rows, heads, src)
        if k:
            host["top_ids"] = _to_numpy(sg.top_ids)  # (steps, rows, k)
            host["top_p"] = np.exp(_to_numpy(sg.top_lps, torch.float32))
        for pos, b in enumerate(sg.rows):
            pieces.setdefault(b, []).append((pos, host))

    def gather(b: int, name: str) -> np.ndarray | None:
        parts = [h[name][:, pos] for pos, h in pieces[b] if name in h]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else np.concatenate(parts, 0)

    results: list[DecodeResult] = []
    for b in range(batch):
        tok_b = gather(b, "tok")
        lps_b = gather(b, "lp")
        assert tok_b is not None and lps_b is not None
        row = tok_b.tolist()
        limit = max_lens[b] if forced_lens is None else forced_lens[b]
        n = min(limit, len(row))
        if stop_at_eos:
            for j in range(n_forced, n):
                if row[j] == eos:
                    n = j + 1
                    break
        att_b = gather(b, "att")
        k_b = space.top_k(k, b)
        top_ids_b = gather(b, "top_ids")
        top_p_b = gather(b, "top_p")
        lp_row = lps_b[:n]
        score = float(lp_row.sum(dtype=np.float64))
        src_len = len(prep.sources[b])
        hyp = Hypothesis(
            token_ids=tuple(row[:n]),
            token_logprobs=tuple(lp_row.tolist()),
            attention=None if att_b is None else np.ascontiguousarray(att_b[:n, :, :src_len]),
            score=score,
            norm_score=_length_norm(score, n, length_penalty),
            finished=n > 0 and row[n - 1] == eos,
            top_k_ids=None if top_ids_b is None else np.ascontiguousarray(top_ids_b[:n, :k_b]),
            top_k_probs=None if top_p_b is None else np.ascontiguousarray(top_p_b[:n, :k_b]),
            forced_steps=min(n, n_forced if forced_lens is None else forced_lens[b]),
        )
        results.append(DecodeResult((hyp,), prep.sources[b]))
    return results


def greedy_search(
    model: NMTModel,
    sources: Sequence[Sequence[int]],
    options: DecodeOptions = DecodeOptions(),
    *,
    fast: bool = True,
    shortlist: Shortlist | None = None,
    int8: bool = False,
) -> list[DecodeResult]:
    """Greedy decoding of many sentences in one batch (``beam_size``/``n_best``/
    ``record_beam`` are ignored: one hypothesis per sentence, no tree).

    ``fast=False`` runs ``Seq2Seq.step`` itself instead of the fused RNN step (same
    result up to float rounding; for checking and benchmarking). ``shortlist`` restricts
    the output layer to the batch's shortlist (see :mod:`attnviz.model.shortlist`)."""
    prep = _prepare(model, sources, options.blocked_source, None, options)
    prefix = options.forced_prefix
    _check_prefix(model, prefix, prep.max_lens)
    forced_t = None
    if prefix:
        forced_t = (
            torch.tensor(prefix, dtype=torch.long, device=prep.device)
            .unsqueeze(0)
            .expand(len(prep.sources), len(prefix))
        )  # (batch, prefix_len)
    return _greedy_core(
        model,
        prep,
        forced=forced_t,
        forced_lens=None,
        forced_ids=[prefix] * len(prep.sources),
        stop_at_eos=True,
        top_k=options.top_k,
        length_penalty=options.length_penalty,
        fast=fast,
        shortlist=shortlist,
        int8=int8,
    )


def forced_batch(
    model: NMTModel,
    sources: Sequence[Sequence[int]],
    targets: Sequence[Sequence[int]],
    *,
    top_k: int = 0,
    blocked_source: Sequence[int] = (),
    fast: bool = True,
    shortlist: Shortlist | None = None,
    int8: bool = False,
) -> list[DecodeResult]:
    """Teacher-forced reading of given translations: for each target token, its
    log-probability, the attention of the step that emits it, and the top-k alternatives.

    ``targets`` are target id lists, taken as they are (end them with eos to score the
    end of the sentence too). The result has one hypothesis per sentence with exactly the
    given tokens. With a ``shortlist``, the given tokens are scored among the shortlist
    and themselves.
    """
    if len(targets) != len(sources):
        raise ValueError(f"got {len(sources)} sources but {len(targets)} targets")
    opts = DecodeOptions(top_k=top_k, blocked_source=tuple(blocked_source))
    cfg = model.config
    tgt_lists: list[list[int]] = []
    for n, seq in enumerate(targets):
        ids = [int(i) for i in seq]
        if not ids:
            raise ValueError(f"target {n} is empty: forced decoding needs at least one token")
        bad = [i for i in ids if not 0 <= i < cfg.tgt_vocab_size]
        if bad:
            raise ValueError(
                f"target {n} has id {bad[0]}, outside the target vocabulary "
                f"0..{cfg.tgt_vocab_size - 1}"
            )
        tgt_lists.append(ids)
    lens = [len(t) for t in tgt_lists]
    prep = _prepare(model, sources, opts.blocked_source, lens, None)
    forced_t, _ = pad_batch(tgt_lists, cfg.pad_id, prep.device)  # (batch, tgt_len)
    return _greedy_core(
        model,
        prep,
        forced=forced_t,
        forced_lens=lens,
        forced_ids=tgt_lists,
        stop_at_eos=False,
        top_k=opts.top_k,
        length_penalty=opts.length_penalty,
        fast=fast,
        shortlist=shortlist,
        int8=int8,
    )


def forced(
    model: NMTModel,
    source_ids: Sequence[int],
    target_ids: Sequence[int],
    *,
    top_k: int = 0,
    blocked_source: Sequence[int] = (),
    shortlist: Shortlist | None = None,
    int8: bool = False,
) -> DecodeResult:
    """Teacher-forced reading of one translation (see :func:`forced_batch`)."""
    return forced_batch(
        model,
        [source_ids],
        [target_ids],
        top_k=top_k,
        blocked_source=blocked_source,
        shortlist=shortlist,
        int8=int8,
    )[0]


# -- beam search ---------------------------------------------------------------------------


# Finished sentences leave a beam batch once this many are left (and _COMPACT_SHARE of them
# are done): each then costs its beam rows at every step until the last sentence ends.
_BEAM_COMPACT_MIN_SENTENCES = 2
_PER_ROW = ("att", "top_ids", "top_lps")  # recorded per beam row, not per sentence
# what a sentence's steps hold after it left the batch (never read: it is done there)
_FILL: dict[str, float | bool] = {"score": -math.inf, "top_lps": -math.inf, "done": True}


@dataclass(frozen=True)
class _BeamSegment:
    """Beam-search steps from ``start`` on, with ``sentences`` (original indices) alive."""

    start: int
    sentences: list[int]


def _merge_segments(
    recorded: list[Tensor], segments: list[_BeamSegment], batch: int, group: int, name: str
) -> np.ndarray:
    """One recorded quantity, a tensor per step over the alive sentences' rows (``group``
    rows per sentence), as one host array (steps, batch * group, ...): one transfer per
    segment, rows of sentences that had left filled with ``_FILL`` (0 by default)."""
    dtype = torch.float32 if recorded[0].is_floating_point() else None
    if len(segments) == 1:
        return _to_numpy(recorded, dtype)
    parts = []
    for n, seg in enumerate(segments):
        stop = segments[n + 1].start if n + 1 < len(segments) else len(recorded)
        if seg.start < len(recorded):
            part = _to_numpy(recorded[seg.start : stop], dtype)  # (steps, alive * group, ...)
            parts.append((seg, part.reshape(part.shape[0], len(seg.sentences), -1)))
    first = parts[0][1]
    out = np.full((len(recorded), batch, first.shape[2]), _FILL.get(name, 0), first.dtype)
    for seg, part in parts:
        out[seg.start : seg.start + part.shape[0], seg.sentences] = part
    return out.reshape(len(recorded), batch * group, *recorded[0].shape[1:])


@torch.inference_mode()
def beam_search(
    model: NMTModel,
    sources: Sequence[Sequence[int]],
    options: DecodeOptions = DecodeOptions(),
    *,
    fast: bool = True,
    shortlist: Shortlist | None = None,
    int8: bool = False,
) -> list[DecodeResult]:
    """Beam search over many sentences at once (batch x beam rows flattened).

    See the module docstring for the algorithm. With ``record_beam`` each result carries
    its :class:`BeamTree` and each hypothesis its path in it. ``shortlist`` restricts the
    output layer to the batch's shortlist (see :mod:`attnviz.model.shortlist`).
    """
    prep = _prepare(model, sources, options.blocked_source, None, options)
    prefix = options.forced_prefix
    _check_prefix(model, prefix, prep.max_lens)
    cfg = model.config
    device = prep.device
    batch = len(prep.sources)
    beam = options.beam_size
    space = _OutputSpace.of(model, shortlist, prep, [prefix] * batch, int8)
    vocab = space.size  # the columns scored: the vocabulary or the shortlist
    rows = batch * beam  # at the first step; finished sentences then leave
    n_cand = min(2 * beam, beam * vocab)
    row_cand = min(n_cand, vocab)  # a sentence's candidates may all extend one beam
    k = min(options.top_k, vocab)
    max_lens = prep.max_lens
    steps_max = max(max_lens)
    eos = cfg.eos_id

    enc = model.encode(prep.src, prep.src_mask)
    stepper = _stepper(model, enc, prep.blocked, fast, space, group=beam)
    prefix_columns = space.to_columns(torch.tensor(prefix, dtype=torch.long, device=device))
    expired = (
        torch.arange(1, steps_max + 1).unsqueeze(1) >= torch.tensor(max_lens).unsqueeze(0)
    ).to(device)  # (steps, batch)
    base = (torch.arange(batch, device=device) * beam).unsqueeze(1)  # (alive, 1)
    rank = torch.arange(n_cand, device=device).unsqueeze(0)  # (1, n_cand)
    rank_eos = rank + n_cand  # eos candidates sort after all others when filling the beam
    step_ids = torch.arange(steps_max, device=device).unsqueeze(1).expand(steps_max, rows)
    scores = torch.full((batch, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0  # only the first slot is alive at the start: no duplicate beams
    scores = scores.view(rows)
    prev = torch.full((rows,), cfg.bos_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    count = torch.zeros(batch, dtype=torch.long, device=device)
    # finished sentences leave the batch as they accumulate: a segment is a run of steps
    # with the same sentences alive (original indices), and its recordings have those rows
    segments = [_BeamSegment(0, list(range(batch)))]
    rec: dict[str, list[Tensor]] = {
        "score": [],
        "token": [],
        "parent": [],
        "lp": [],
        "sel": [],
        "done": [],
        "att": [],
        "top_ids": [],
        "top_lps": [],
    }
    for t in range(steps_max):
        alive = len(segments[-1].sentences)
        logits, w = stepper.step(prev, step_ids[t, : alive * beam])
        lp = torch.log_softmax(logits, dim=-1)  # (alive * beam, vocab)
        # each row's best extensions, best first (one pass over the vocabulary): the
        # sentence's n_cand best are among its rows' row_cand best
        row_lp, row_col = lp.topk(max(row_cand, k), dim=-1)  # (alive * beam, R)
        if k:
            rec["top_lps"].append(row_lp[:, :k])
            rec["top_ids"].append(space.to_vocab(row_col[:, :k]))
        if w is not None:
            rec["att"].append(w)  # (alive * beam, heads, src_len)
        if t < len(prefix):  # the prefix's token is every row's one finite extension
            column = prefix_columns[t]
            allowed = torch.full_like(lp, float("-inf"))
            allowed[:, column] = lp[:, column]
            row_lp, row_col = allowed.topk(row_cand, dim=-1)
        else:
            row_lp, row_col = row_lp[:, :row_cand], row_col[:, :row_cand]
        cand = (scores.unsqueeze(1) + row_lp).view(alive, beam * row_cand)
        top_scores, top_idx = cand.topk(n_cand, dim=1)  # (alive, C)
        parent = top_idx // row_cand  # (alive, C) beam slot
        token = space.to_vocab(row_col.reshape(alive, -1).gather(1, top_idx))  # (alive, C) ids
        tok_lp = row_lp.reshape(alive, -1).gather(1, top_idx)  # (alive, C)
        is_eos = token == eos
        # the new beam: the first `beam` candidates that do not end the sentence
        sel = torch.where(is_eos, rank_eos, rank).topk(beam, dim=1, largest=False).indices
        rec["score"].append(top_scores)
        rec["token"].append(token)
        rec["parent"].append(parent)
        rec["lp"].append(tok_lp)
        rec["sel"].append(sel)
        rec["done"].append(done)  # before this step
        if t == steps_max - 1:
            break
        # finished: eos among the first `beam` candidates (a done sentence stays done)
        fin = is_eos[:, :beam] & (top_scores[:, :beam] > float("-inf"))  # (alive, beam)
        count = count + fin.sum(dim=1)
        done = done | (count >= beam) | expired[t]
        n_done = int(done.sum())
        if n_done == alive:
            break
        scores = top_scores.gather(1, sel)  # (alive, beam)
        prev = token.gather(1, sel)
        order = parent.gather(1, sel) + base  # (alive, beam) the rows the new beams extend
        if alive >= _BEAM_COMPACT_MIN_SENTENCES and n_done >= _COMPACT_SHARE * alive:
            keep = (~done).nonzero().squeeze(1)  # (kept,) drop the finished sentences
            kept = keep.tolist()
            stepper.keep(order[keep].view(-1), keep)
            scores, prev, count, done = scores[keep], prev[keep], count[keep], done[keep]
            expired = expired[:, keep]
            base = base[: len(kept)]
            segments.append(_BeamSegment(t + 1, [segments[-1].sentences[i] for i in kept]))
        else:
            stepper.reorder(order.view(-1))
        scores, prev = scores.view(-1), prev.view(-1)  # (alive * beam,)

    host = {
        name: _merge_segments(ts, segments, batch, beam if name in _PER_ROW else 1, name)
        for name, ts in rec.items()
        if ts
    }
    host["active"] = ~host.pop("done")  # (steps, batch)
    if "top_lps" in host:
        host["top_probs"] = np.exp(host.pop("top_lps"))
    results = []
    for b in range(batch):
        top_k_b = space.top_k(k, b)
        results.append(_finalize_beam(b, host, prep, options, cfg.bos_id, eos, beam, top_k_b))
    return results


def _finalize_beam(
    b: int,
    host: dict[str, np.ndarray],
    prep: _Prepared,
    options: DecodeOptions,
    bos: int,
    eos: int,
    beam: int,
    top_k: int,
) -> DecodeResult:
    """Collect sentence ``b``'s hypotheses (and tree) from the recorded steps (``top_k``
    candidates a step: at most its own shortlist's size)."""
    scores = host["score"][:, b]  # (steps, C)
    tokens = host["token"][:, b]
    parents = host["parent"][:, b]
    lps = host["lp"][:, b]
    sels = host["sel"][:, b]  # (steps, beam)
    active = host["active"][:, b]  # (steps,)
    end = int(np.flatnonzero(active)[-1])  # last step this sentence was searched
    finite = np.isfinite(scores)
    ends: list[tuple[int, int]] = []  # (step, candidate) of each complete hypothesis
    for t in range(end + 1):
        for c in range(beam):
            if tokens[t, c] == eos and finite[t, c]:
                ends.append((t, c))
    if len(ends) < beam:  # stopped by max_length: the live beams count, unfinished
        ends.extend((end, int(c)) for c in sels[end] if finite[end, c] and tokens[end, c] != eos)
    alpha = options.length_penalty
    ranked = sorted(
        ends, key=lambda tc: -_length_norm(float(scores[tc[0], tc[1]]), tc[0] + 1, alpha)
    )[: options.n_best]

    node_of: dict[tuple[int, int], int] | None = None
    tree: BeamTree | None = None
    if options.record_beam:
        node_of, tree = _build_tree(tokens, parents, scores, lps, sels, end, bos, eos, beam, ends)

    src_len = len(prep.sources[b])
    att = host.get("att")  # (steps, rows, heads, src)
    top_ids = host.get("top_ids")  # (steps, rows, k)
    top_probs = host.get("top_probs")
    hyps = []
    for t_end, c_end in ranked:
        path: list[tuple[int, int]] = []  # (step, candidate), last first
        slots: list[int] = []  # the live slot each step extended
        c = c_end
        for t in range(t_end, -1, -1):
            path.append((t, c))
            slot = int(parents[t, c])
            slots.append(slot)
            if t:
                c = int(sels[t - 1, slot])
        path.reverse()
        slots.reverse()
        steps = np.arange(t_end + 1)
        cands = np.array([c for _, c in path])
        rows = b * beam + np.array(slots)
        toks = tokens[steps, cands]
        tok_lps = lps[steps, cands]
        score = float(scores[t_end, c_end])
        n = t_end + 1
        hyps.append(
            Hypothesis(
                token_ids=tuple(toks.tolist()),
                token_logprobs=tuple(tok_lps.tolist()),
                attention=att[steps, rows, :, :src_len] if att is not None else None,
                score=score,
                norm_score=_length_norm(score, n, alpha),
                finished=bool(toks[-1] == eos),
                top_k_ids=top_ids[steps, rows, :top_k] if top_ids is not None else None,
                top_k_probs=top_probs[steps, rows, :top_k] if top_probs is not None else None,
                node_ids=tuple(node_of[p] for p in path) if node_of is not None else None,
                forced_steps=min(n, len(options.forced_prefix)),
            )
        )
    return DecodeResult(tuple(hyps), prep.sources[b], tree)


def _build_tree(
    tokens: np.ndarray,
    parents: np.ndarray,
    scores: np.ndarray,
    lps: np.ndarray,
    sels: np.ndarray,
    end: int,
    bos: int,
    eos: int,
    beam: int,
    ends: list[tuple[int, int]],
) -> tuple[dict[tuple[int, int], int], BeamTree]:
    """Nodes for every finite candidate of steps 0..end; (step, candidate) -> node id."""
    bos_node = BeamNode(0, -1, bos, None, 0.0, 0.0, True, False)
    nodes = [bos_node]
    node_of: dict[tuple[int, int], int] = {}
    finished = set(ends)
    slot_node: list[int | None] = [0] + [None] * (beam - 1)
    for t in range(end + 1):
        kept = {int(c) for c in sels[t]} if t < end else set()
        for c in range(tokens.shape[1]):
            score = float(scores[t, c])
            parent = slot_node[int(parents[t, c])]
            if not math.isfinite(score) or parent is None:
                continue
            tok = int(tokens[t, c])
            is_done = (t, c) in finished
            node = BeamNode(
                id=len(nodes),
                step=t,
                token_id=tok,
                parent=parent,
                score=score,
                logprob=float(lps[t, c]),
                kept=is_done or (c in kept and tok != eos),
                finished=is_done and tok == eos,
            )
            node_of[(t, c)] = node.id
            nodes.append(node)
        slot_node = [node_of.get((t, int(c))) for c in sels[t]]
    return node_of, BeamTree(tuple(nodes), beam)


# -- entry points --------------------------------------------------------------------------


def decode_batch(
    model: NMTModel,
    sources: Sequence[Sequence[int]],
    options: DecodeOptions = DecodeOptions(),
    *,
    shortlist: Shortlist | None = None,
    int8: bool = False,
) -> list[DecodeResult]:
    """Decode many sentences in one padded batch; one result per source, in order.

    A sentence's result does not depend on the others in the batch (up to float
    rounding, ~1e-6 on attention), also with a ``shortlist``: the output layer scores the
    union of the batch's shortlists, and each sentence only its own. ``beam_size`` 1
    without ``record_beam`` takes the greedy path, which gives the same result as beam
    search with one beam.
    """
    if options.beam_size == 1 and not options.record_beam:
        return greedy_search(model, sources, options, shortlist=shortlist, int8=int8)
    return beam_search(model, sources, options, shortlist=shortlist, int8=int8)


def decode(
    model: NMTModel,
    source_ids: Sequence[int],
    options: DecodeOptions = DecodeOptions(),
    *,
    shortlist: Shortlist | None = None,
    int8: bool = False,
) -> DecodeResult:
    """Decode one sentence (source ids ending with eos, as the model was trained)."""
    return decode_batch(model, [source_ids], options, shortlist=shortlist, int8=int8)[0]


def greedy_batch(
    model: NMTModel, sources: Sequence[Sequence[int]], *, max_length: int = 100
) -> list[DecodeResult]:
    """Greedy decoding of many sentences in one padded batch.

    ``sources`` are source id lists (ending with eos, as the model was trained).
    Returns one DecodeResult per source, in order.
    """
    return greedy_search(model, sources, DecodeOptions(max_length=max_length))
