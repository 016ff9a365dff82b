"""Attention mechanisms for RNN encoder-decoders, one small module per score function.

Every mechanism has the same call::

    keys = attention.precompute_keys(states)          # once per sentence
    context, weights = attention(query, keys, values, mask, step=step)   # every step

* ``query``  (batch, query_dim): the decoder state that looks at the source.
* ``keys``   what ``precompute_keys`` returned for the encoder states (batch, src_len, ...).
  Mechanisms that score with a projection of the keys (additive, concat, general, ...) do
  that projection once there, so a decoder step only touches the query. For mechanisms
  with nothing to precompute it is the encoder states themselves.
  ``attend(...)`` does both calls at once for one-off use.
* ``values`` (batch, src_len, value_dim): what the context averages (the encoder states).
* ``mask``   (batch, src_len) bool, True = a real token the query may look at. Sources are
  right-padded: the real tokens of a row come first.
* ``step``   (batch,) long, the decoder step index; only ``local_m``/``local_p`` use it.

It returns ``context`` (batch, value_dim) and ``weights`` (batch, heads, src_len), with
heads = 1 for single-head mechanisms; ``none`` returns ``None`` weights. Weights are
exactly 0 on masked positions and every row sums to 1, except a row whose mask is all
False (everything blocked), which is all 0 with a zero context. Weights are return values
only: no module keeps anything between calls, so one module serves concurrent requests.

Mechanisms are registered by name in ``ATTENTIONS`` and built with ``build_attention``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class AttentionSpec:
    """Sizes a mechanism is built from.

    Attributes:
        query_dim: size of the decoder state that queries.
        key_dim: size of one encoder state used as key.
        value_dim: size of one encoder state used as value (= size of the context).
        attn_dim: hidden size of the score functions (additive, concat, local_p, multihead).
        heads: heads of ``multihead``.
        window: D of the local mechanisms (window of 2D + 1 positions).
        max_positions: source positions ``location`` has a score for.
    """

    query_dim: int
    key_dim: int
    value_dim: int
    attn_dim: int
    heads: int = 1
    window: int = 3
    max_positions: int = 128


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dim that gives masked positions exactly 0.

    scores: (..., src_len) float; mask: bool, broadcastable to scores, True = keep.
    Rows with no True position come back all 0 (not NaN).
    """
    mask = mask.expand_as(scores)  # (..., src_len)
    any_real = mask.any(dim=-1, keepdim=True)  # (..., 1)
    filled = scores.masked_fill(~mask, float("-inf"))  # (..., src_len)
    filled = filled.masked_fill(~any_real, 0.0)  # fully masked rows: finite, no NaN
    weights = torch.softmax(filled, dim=-1)  # (..., src_len)
    return weights.masked_fill(~mask, 0.0)


def _weighted_sum(weights: Tensor, values: Tensor) -> Tensor:
    """weights (batch, heads, src_len) x values (batch, src_len, dim) -> (batch, heads, dim)."""
    return torch.bmm(weights, values)


def _source_lengths(mask: Tensor) -> Tensor:
    """Index of the last True position + 1 for each row (batch,) long; 0 for an empty row.

    Unlike ``mask.sum``, blocking a word in the middle of a sentence does not shorten it.
    """
    src_len = mask.size(1)
    positions = torch.arange(1, src_len + 1, device=mask.device)  # (src_len,)
    return (positions * mask.long()).amax(dim=1)  # (batch,)


class Attention(nn.Module):
    """Base class: one score function, masked softmax, weighted sum of the values."""

    heads: int = 1

    def __init__(self, spec: AttentionSpec) -> None:
        super().__init__()
        self.spec = spec

    def precompute_keys(self, keys: Tensor) -> Tensor:
        """Per-sentence work on the encoder states (batch, src_len, key_dim).

        The result is what ``forward`` takes as ``keys``. Default: the states themselves.
        """
        return keys

    def anneal(self, progress: float) -> None:
        """The trainer's schedule hook, ``progress`` from 0 to 1 over
        ``--attention-anneal-steps`` (1 from the start without them). A mechanism that
        learns badly from its first step changes its *training* pass here; at 1, and in
        eval mode always, it is the mechanism itself. Default: nothing to anneal."""

    def attend(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor,
        *,
        step: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``forward`` on raw encoder states (calls ``precompute_keys`` first)."""
        return self(query, self.precompute_keys(keys), values, mask, step=step)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor,
        *,
        step: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        scores = self.score(query, keys, step)  # (batch, src_len)
        weights = masked_softmax(scores, mask).unsqueeze(1)  # (batch, 1, src_len)
        context = _weighted_sum(weights, values).squeeze(1)  # (batch, value_dim)
        return context, weights

    def score(self, query: Tensor, keys: Tensor, step: Tensor | None) -> Tensor:
        """Unnormalised scores (batch, src_len)."""
        raise NotImplementedError


def _dot_scores(query: Tensor, keys: Tensor) -> Tensor:
    """query (batch, d) . keys (batch, src_len, d) -> (batch, src_len)."""
    return torch.bmm(keys, query.unsqueeze(2)).squeeze(2)


def fold_directions(keys: Tensor) -> Tensor:
    """(batch, src_len, 2d) bidirectional states -> (batch, src_len, d): forward + backward."""
    half = keys.size(-1) // 2
    return keys[..., :half] + keys[..., half:]


class DotAttention(Attention):
    """Luong dot: score = qᵀk, no parameters.

    qᵀk needs keys of the query's size. Keys twice that size are the concatenated forward
    and backward states of a bidirectional encoder: they are summed (once per sentence), so
    the score stays a plain dot product between the decoder state and the encoder state at
    each position. (A learned projection would make this ``general``.)
    """

    temperature: float = 1.0  # training only, set by ``anneal``

    def __init__(self, spec: AttentionSpec) -> None:
        super().__init__(spec)
        if spec.key_dim not in (spec.query_dim, 2 * spec.query_dim):
            raise ValueError(
                f"dot attention needs keys of the query's size ({spec.query_dim}) or twice it "
                f"(a bidirectional encoder), got key_dim {spec.key_dim}; use 'general' to learn "
                "a projection"
            )
        self.fold = spec.key_dim == 2 * spec.query_dim

    def precompute_keys(self, keys: Tensor) -> Tensor:
        return fold_directions(keys) if self.fold else keys  # (batch, src_len, query_dim)

    def anneal(self, progress: float) -> None:
        """Training scores are divided by sqrt(d) ** (1 - progress): ``scaled_dot`` at 0,
        plain qᵀk at 1. From the first step at 1, GRU states of 256 units gave near one-hot
        weights by step 500 (softmax gradients vanish there), and 79 test BLEU after 30
        minutes with either decoder (runs/failed)."""
        self.temperature = math.sqrt(self.spec.query_dim) ** (1.0 - progress)

    def score(self, query: Tensor, keys: Tensor, step: Tensor | None) -> Tensor:
        scores = _dot_scores(query, keys)  # (batch, src_len)
        if self.training and self.temperature != 1.0:
            scores = scores / self.temperature
        return scores


class ScaledDotAttention(Attention):
    """Scaled dot: score = qᵀ(W k) / √d, as one head of the Transformer's attention (keys
    projected to the query's size, once per sentence, by a bias-free linear map; none
    when the sizes already match)."""

    def __init__(self, spec: AttentionSpec) -> None:
        super().__init__(spec)
        self.key_proj: nn.Module = (
            nn.Identity()
            if spec.key_dim == spec.query_dim
            else nn.Linear(spec.key_dim, spec.query_dim, bias=False)
        )

    def precompute_keys(self, keys: Tensor) -> Tensor:
        return self.key_proj(keys)  # (batch, src_len, query_dim)

    def score(self, query: Tensor, keys: Tensor, step: Tensor | None) -> Tensor:
        return _dot_scores(query, keys) / math.sqrt(query.size(-1))  # (batch, src_len)


class CosineAttention(ScaledDotAttention):
    """Cosine similarity of query and (projected) key, times a learned sharpness β > 0
    (Graves et al.'s content addressing): cosines alone lie in [-1, 1], so softmax could
    never favour one position more than e² ≈ 7.4 times another. β starts at 10."""

    def __init__(self, spec: AttentionSpec) -> None:
        super().__init__(spec)
        self.log_beta = nn.Parameter(torch.tensor(math.log(10.0)))

    def precompute_keys(self, keys: Tensor) -> Tensor:
        return F.normalize(self.key_proj(keys), dim=-1)  # (batch, src_len, query_dim)

    def score(self, query: Tensor, keys: Tensor, step: Tensor | None) -> Tensor:
        cosine = _dot_scores(F.normalize(query, dim=-1), keys)  # (batch, src_len)
        return self.log_beta.exp() * cosine


class GeneralAttention(Attention):
    """Luong general: score = qᵀ W k, with W k computed once per sentence."""

    def __init__(self, spec: AttentionSpec) -> None:
        super().__init__(spec)
        self.W = nn.Linear(spec.key_dim, spec.query_dim, bias=False)

    def precompute_keys(self, keys: Tensor) -> Tensor:
        return self.W(keys)  # (batch, src_len, query_dim)

    def score(self, query: Tensor, keys: Tensor, step: Tensor | None) -> Tensor:
        return _dot_scores(query, keys)  # (batch, src_len)


class ConcatAttention(Attention):
    """Luong concat: score = vᵀ tanh(W [q; k]).

    W (attn_dim, query_dim + key_dim) is one matrix as in the paper; it is applied block-wise
    (W [q; k] = W_q q + W_k k) so the key half is computed once per sentence.
    """

    def __init__(self, spec: AttentionSpec) -> None:
        super().__init__(spec)
        self.W = nn.Linear(spec.query_dim + spec.key_dim, spec.attn_dim)
        self.v = nn.Linear(spec.attn_dim, 1, bias=False)

    def precompute_keys(self, keys: Tensor) -> Tensor:
        w_k = self.W.weight[:, self.spec.query_dim :]  # (attn_dim, key_dim)
        return F.linear(keys, w_k, self.W.bias)  # (batch, src_len, attn_dim)

    def score(self, query: Tensor, keys: Tensor, step: Tensor | None) -> Tensor:
        w_q = self.W.weight[:, : self.spec.query_dim]  # (attn_dim, query_dim)
        hidden = torch.tanh(keys + F.linear(query, w_q).unsqueeze(1))  # (batch, src_len, attn)
        return self.v(hidden).squeeze(2)  # (batch, src_len)


class AdditiveAttention(Attention):
    """Bahdanau: score = vᵀ tanh(W q + U k), with U k computed once per sentence."""

    def __init__(self, spec: AttentionSpec) -> None:
        super().__init__(spec)
        self.W = nn.Linear(spec.query_dim, spec.attn_dim, bias=False)
        self.U = nn.Linear(spec.key_dim, spec.attn_dim)
        self.v = nn.Linear(spec.attn_dim, 1, bias=False)

    def precompute_keys(self, keys: Tensor) -> Tensor:
        return self.U(keys)  # (batch, src_len, attn_dim)

    def score(self, query: Tensor, keys: Tensor, step: Tensor | None) -> Tensor:
        hidden = torch.tanh(keys + self.W(query).unsqueeze(1))  # (batch, src_len, attn_dim)
        return self.v(hidden).squeeze(2)  # (batch, src_len)


class LocationAttention(Attention):
    """Luong location: a = softmax(W q) over positions, from the query alone.

    W has one output per source position up to ``max_positions``; a shorter source uses
    the first src_len scores, a longer one reuses the last score for its tail. The keys
    are not read.
    """

    def __init__(self, spec: AttentionSpec) -> None:
        super().__init__(spec)
        self.W = nn.Linear(spec.query_dim, spec.max_positions)

    def score(self, query: Tensor, keys: Tensor, step: Tensor | None) -> Tensor:
        src_len = keys.size(1)
        scores = self.W(query)  # (batch, max_positions)
        if src_len <= scores.size(1):
            return scores[:, :src_len]  # (batch, src_len)
        index = torch.arange(src_len, device=query.device).clamp(max=scores.size(1) - 1)
        return scores.index_select(1, index)  # (batch, src_len)


class MultiHeadAttention(Attention):
    """h heads of scaled dot attention over the RNN states.

    Head i scores with (W_q^i q)ᵀ(W_k^i k) / √d_head, d_head = attn_dim / h. Its context is
    W_v^i Σ_s a_is v_s (the value projection commutes with the weighted sum, so it is applied
    after it), and the output is W_o [head_1; ...; head_h], of size value_dim.
    """

    def __init__(self, spec: AttentionSpec) -> None:
        super().__init__(spec)
        if spec.attn_dim % spec.heads != 0:
            raise ValueError(
                f"attn_dim ({spec.attn_dim}) must be divisible by heads ({spec.heads})"
            )
        self.heads = spec.heads
        self.d_head = spec.attn_dim // spec.heads
        self.q_proj = nn.Linear(spec.query_dim, spec.attn_dim, bias=False)
        self.k_proj = nn.Linear(spec.key_dim, spec.attn_dim, bias=False)
        self.v_proj = nn.Parameter(torch.empty(spec.heads, spec.value_dim, self.d_head))
        self.out_proj = nn.Linear(spec.attn_dim, spec.value_dim, bias=False)
        nn.init.xavier_uniform_(self.v_proj)

    def precompute_keys(self, keys: Tensor) -> Tensor:
        batch, src_len, _ = keys.shape
        k = self.k_proj(keys).view(batch, src_len, self.heads, self.d_head)
        return k.permute(0, 2, 3, 1).contiguous()  # (batch, heads, d_head, src_len)

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor,
        *,
        step: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        batch = query.size(0)
        q = self.q_proj(query).view(batch, self.heads, 1, self.d_head)  # (batch, h, 1, d)
        scores = torch.matmul(q, keys).squeeze(2) / math.sqrt(self.d_head)  # (batch, h, src)
        weights = masked_softmax(scores, mask.unsqueeze(1))  # (batch, h, src_len)
        mixed = _weighted_sum(weights, values)  # (batch, h, value_dim)
        heads = torch.einsum("bhv,hvd->bhd", mixed, self.v_proj)  # (batch, h, d_head)
        context = self.out_proj(heads.reshape(batch, -1))  # (batch, value_dim)
        return context, weights


def _require_step(name: str, step: Tensor | None) -> Tensor:
    if step is None:
        raise ValueError(f"attention {name!r} needs step= (batch,) decoder step indices")
    return step


class LocalMonotonicAttention(GeneralAttention):
    """Luong local-m: general scores inside the window [p_t - D, p_t + D], p_t = step
    clipped to the sentence; exactly 0 weight outside the window."""

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor,
        *,
        step: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        step = _require_step("local_m", step)
        lengths = _source_lengths(mask)  # (batch,)
        center = torch.minimum(step.to(lengths.dtype), lengths - 1).clamp(min=0)  # (batch,)
        positions = torch.arange(mask.size(1), device=mask.device)  # (src_len,)
        window = (positions.unsqueeze(0) - center.unsqueeze(1)).abs() <= self.spec.window
        scores = self.score(query, keys, step)  # (batch, src_len)
        weights = masked_softmax(scores, mask & window).unsqueeze(1)  # (batch, 1, src_len)
        context = _weighted_sum(weights, values).squeeze(1)  # (batch, value_dim)
        return context, weights


class LocalPredictiveAttention(GeneralAttention):
    """Luong local-p: predicted centre p_t = (S - 1)·sigmoid(v_pᵀ tanh(W_p q)), S the real
    source length (positions are 0-based, so p_t lies on a real token), general scores
    softmaxed inside the window of round(p_t) ± D, times exp(-(s - p_t)² / (2σ²)), σ = D/2,
    renormalised to sum to 1. Exactly 0 outside the window and on padding."""

    def __init__(self, spec: AttentionSpec) -> None:
        super().__init__(spec)
        self.W_p = nn.Linear(spec.query_dim, spec.attn_dim, bias=False)
        self.v_p = nn.Linear(spec.attn_dim, 1, bias=False)
        self.sigma = spec.window / 2.0

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor,
        *,
        step: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        last = (_source_lengths(mask) - 1).clamp(min=0).to(query.dtype)  # (batch,)
        gate = torch.sigmoid(self.v_p(torch.tanh(self.W_p(query)))).squeeze(1)  # (batch,)
        center = last * gate  # (batch,)
        positions = torch.arange(mask.size(1), device=mask.device, dtype=query.dtype)
        offset = positions.unsqueeze(0) - center.unsqueeze(1)  # (batch, src_len)
        window = (positions.unsqueeze(0) - center.round().unsqueeze(1)).abs() <= self.spec.window
        keep = mask & window  # (batch, src_len)
        scores = self.score(query, keys, step)  # (batch, src_len)
        gauss = torch.exp(-offset.pow(2) / (2.0 * self.sigma**2))  # (batch, src_len)
        weights = masked_softmax(scores, keep) * gauss  # (batch, src_len)
        total = weights.sum(dim=1, keepdim=True)  # (batch, 1)
        weights = weights / total.clamp(min=torch.finfo(weights.dtype).tiny)
        weights = weights.masked_fill(~keep, 0.0).unsqueeze(1)  # (batch, 1, src_len)
        context = _weighted_sum(weights, values).squeeze(1)  # (batch, value_dim)
        return context, weights


class HardAttention(GeneralAttention):
    """Hard (one position) attention with general scores.

    Training: straight-through Gumbel-softmax (one-hot forward, the soft sample's gradient).
    Eval: one-hot argmax of the scores. Weights are one-hot in eval, and in training once
    ``mix`` is 1.

    ``mix`` is the one-hot sample's share of the training forward pass, the rest being the
    plain softmax of the scores: the trainer ramps it from 0 (soft ``general`` attention)
    to 1 (pure straight-through Gumbel-softmax) over ``--attention-anneal-steps``. From the first
    step at 1, a freshly initialised model samples near-uniform random positions, learns to
    ignore its context, and needed ~1,000 steps to find it again (runs/failed: 7 BLEU at
    step 500, 33 after 15 minutes). It is a training-schedule setting, not per-request
    state: eval mode never reads it.
    """

    tau: float = 1.0
    mix: float = 1.0

    def anneal(self, progress: float) -> None:
        self.mix = progress

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor,
        *,
        step: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        scores = self.score(query, keys, step)  # (batch, src_len)
        if self.training:
            uniform = torch.rand_like(scores).clamp(min=1e-10, max=1.0 - 1e-7)
            gumbel = -torch.log(-torch.log(uniform))  # (batch, src_len)
            soft = masked_softmax((scores + gumbel) / self.tau, mask)  # (batch, src_len)
        else:
            soft = masked_softmax(scores, mask)  # (batch, src_len)
        index = soft.argmax(dim=1, keepdim=True)  # (batch, 1)
        hard = torch.zeros_like(soft).scatter_(1, index, 1.0)  # (batch, src_len)
        hard = hard.masked_fill(~mask.any(dim=1, keepdim=True), 0.0)  # blocked rows stay 0
        if self.training:
            weights = hard - soft.detach() + soft  # one-hot forward, soft gradient
            if self.mix < 1.0:
                weights = self.mix * weights + (1.0 - self.mix) * masked_softmax(scores, mask)
        else:
            weights = hard
        weights = weights.masked_fill(~mask, 0.0).unsqueeze(1)  # (batch, 1, src_len)
        context = _weighted_sum(weights, values).squeeze(1)  # (batch, value_dim)
        return context, weights


class NoAttention(Attention):
    """No attention: the Cho et al. / Sutskever et al. fixed-vector bottleneck.

    Returns the masked mean of ``values`` and ``None`` weights. ``Seq2Seq`` gives this
    mechanism a one-position memory holding the encoder's final summary, so the context
    is exactly that summary at every step and the decoder never sees individual states.
    """

    heads = 0

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor,
        *,
        step: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        weights = mask.to(values.dtype).unsqueeze(1)  # (batch, 1, src_len)
        count = weights.sum(dim=2).clamp(min=1.0)  # (batch, 1)
        context = _weighted_sum(weights, values).squeeze(1) / count  # (batch, value_dim)
        return context, None


ATTENTIONS: dict[str, type[Attention]] = {
    "additive": AdditiveAttention,
    "concat": ConcatAttention,
    "cosine": CosineAttention,
    "dot": DotAttention,
    "general": GeneralAttention,
    "hard": HardAttention,
    "local_m": LocalMonotonicAttention,
    "local_p": LocalPredictiveAttention,
    "location": LocationAttention,
    "multihead": MultiHeadAttention,
    "none": NoAttention,
    "scaled_dot": ScaledDotAttention,
}


def build_attention(name: str, spec: AttentionSpec) -> Attention:
    """The mechanism registered as ``name``; unknown names raise ValueError listing valid ones."""
    try:
        cls = ATTENTIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown attention {name!r}; valid: {', '.join(sorted(ATTENTIONS))}"
        ) from None
    return cls(spec)
