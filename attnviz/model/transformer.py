"""An encoder-decoder Transformer whose every attention is computed explicitly and returned.

    model = Transformer(config)                       # config.architecture == "transformer"
    enc = model.encode(src, src_mask)                 # once per batch of sentences
    state = model.init_state(enc)
    logits, state, weights = model.step(prev, state, enc, step_index=t)   # per token
    maps = model.attention_maps(src, src_mask, tgt_in)  # every layer and head, teacher forced

Pre-LayerNorm layers (Xiong et al. 2020), sinusoidal positions, separate source and target
embeddings (the target one tied to the output layer when ``tie_embeddings``). The model has
the same interface as :class:`~attnviz.model.seq2seq.Seq2Seq`, so decoding, evaluation and
the service use it unchanged. ``step`` and ``forward`` return the cross-attention of one
layer — ``config.alignment_layer`` (the last by default) — as *the* attention, with its
heads (batch, heads, src_len); :meth:`Transformer.attention_maps` returns all of them,
encoder self-attention, causal decoder self-attention and cross-attention, for every layer
and head. Incremental decoding caches each decoder layer's self-attention keys and values,
so step t attends over the t previous positions without recomputing them; both paths give
the same numbers up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from attnviz.model.attention import masked_softmax
from attnviz.model.config import ModelConfig
from attnviz.model.seq2seq import unblocked


def sinusoids(positions: Tensor, dim: int) -> Tensor:
    """positions (...,) long -> (..., dim) sinusoidal encodings (Vaswani et al. 2017)."""
    half = dim // 2
    freq = torch.exp(
        torch.arange(half, device=positions.device, dtype=torch.float32)
        * (-math.log(10000.0) / half)
    )  # (half,)
    angles = positions.to(torch.float32).unsqueeze(-1) * freq  # (..., half)
    enc = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # (..., 2 * half)
    if dim % 2:
        enc = torch.cat([enc, torch.zeros_like(enc[..., :1])], dim=-1)
    return enc


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention with h heads; the weights are returned, never kept."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def split(self, x: Tensor) -> Tensor:
        """(batch, len, dim) -> (batch, heads, len, head_dim)."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """memory (batch, len, dim) -> keys, values (batch, heads, len, head_dim)."""
        return self.split(self.k(memory)), self.split(self.v(memory))

    def attend(
        self, x: Tensor, keys: Tensor, values: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """x (batch, q_len, dim) queries; keys/values (batch, heads, k_len, head_dim); mask
        bool broadcastable to (batch, heads, q_len, k_len), True = may attend.

        Returns the output (batch, q_len, dim) and the weights (batch, heads, q_len, k_len),
        each row summing to 1 over the allowed positions (0 elsewhere)."""
        q = self.split(self.q(x))  # (batch, heads, q_len, head_dim)
        scores = q @ keys.transpose(-1, -2) / math.sqrt(self.head_dim)  # (b, h, q, k)
        weights = masked_softmax(scores, mask)  # (batch, heads, q_len, k_len)
        mixed = self.dropout(weights) @ values  # (batch, heads, q_len, head_dim)
        batch, _, q_len, _ = mixed.shape
        merged = mixed.transpose(1, 2).reshape(batch, q_len, self.heads * self.head_dim)
        return self.out(merged), weights


class FeedForward(nn.Module):
    def __init__(self, dim: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # (..., dim)


class EncoderLayer(nn.Module):
    """x + SelfAttention(LN(x)), then x + FeedForward(LN(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, config.attention_heads, config.dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, config.ff_dim, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x (batch, src_len, dim); mask (batch, 1, 1, src_len). Returns x and the
        self-attention weights (batch, heads, src_len, src_len)."""
        h = self.norm1(x)
        keys, values = self.self_attn.project_kv(h)
        out, weights = self.self_attn.attend(h, keys, values, mask)
        x = x + self.dropout(out)
        x = x + self.dropout(self.ff(self.norm2(x)))
        return x, weights


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention over the source, feed-forward (pre-LN)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        dim = config.hidden_dim
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, config.attention_heads, config.dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.cross_attn = MultiHeadAttention(dim, config.attention_heads, config.dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, config.ff_dim, config.dropout)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: Tensor,
        past_kv: tuple[Tensor, Tensor] | None,
        self_mask: Tensor,
        cross_kv: tuple[Tensor, Tensor],
        cross_mask: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, tuple[Tensor, Tensor]]:
        """x (batch, new_len, dim): the whole target (teacher forcing, ``past_kv`` None) or
        one new token after the cached keys and values ``past_kv`` (batch, heads, steps,
        head_dim) of the earlier ones, so one code serves both.

        Returns x, self weights (batch, heads, new_len, k_len), cross weights
        (batch, heads, new_len, src_len), and the self-attention keys and values so far."""
        h = self.norm1(x)
        keys, values = self.self_attn.project_kv(h)  # (batch, heads, new_len, head_dim)
        if past_kv is not None:
            keys = torch.cat([past_kv[0], keys], dim=2)  # (batch, heads, steps, head_dim)
            values = torch.cat([past_kv[1], values], dim=2)
        out, self_w = self.self_attn.attend(h, keys, values, self_mask)
        x = x + self.dropout(out)
        out, cross_w = self.cross_attn.attend(self.norm2(x), *cross_kv, cross_mask)
        x = x + self.dropout(out)
        x = x + self.dropout(self.ff(self.norm3(x)))
        return x, self_w, cross_w, (keys, values)


@dataclass(frozen=True)
class TransformerEncoderOutput:
    """The encoded source batch, computed once.

    Attributes:
        states: (batch, src_len, dim) the encoder's output (final LayerNorm applied).
        mask: (batch, src_len) bool, True = real source token.
        attn_mask: ``mask`` (the name decoding reads for every model).
        cross_keys, cross_values: per decoder layer (batch, heads, src_len, head_dim).
    """

    states: Tensor
    mask: Tensor
    attn_mask: Tensor
    cross_keys: tuple[Tensor, ...]
    cross_values: tuple[Tensor, ...]

    def index_select(self, indices: Tensor) -> TransformerEncoderOutput:
        """Rows ``indices`` (n,) long, e.g. to expand each sentence to its beams."""
        return TransformerEncoderOutput(
            states=self.states.index_select(0, indices),
            mask=self.mask.index_select(0, indices),
            attn_mask=self.attn_mask.index_select(0, indices),
            cross_keys=tuple(k.index_select(0, indices) for k in self.cross_keys),
            cross_values=tuple(v.index_select(0, indices) for v in self.cross_values),
        )


@dataclass(frozen=True)
class TransformerState:
    """Per decoder layer, the self-attention keys and values of the tokens read so far,
    (batch, heads, steps, head_dim) each."""

    keys: tuple[Tensor, ...]
    values: tuple[Tensor, ...]

    def index_select(self, indices: Tensor) -> TransformerState:
        return TransformerState(
            keys=tuple(k.index_select(0, indices) for k in self.keys),
            values=tuple(v.index_select(0, indices) for v in self.values),
        )


@dataclass(frozen=True)
class AttentionMaps:
    """Every attention of a teacher-forced pass, per layer and head.

    Attributes:
        encoder: (batch, layers, heads, src_len, src_len) source self-attention.
        decoder: (batch, layers, heads, tgt_len, tgt_len) causal target self-attention.
        cross: (batch, layers, heads, tgt_len, src_len) target-to-source attention.
    """

    encoder: Tensor
    decoder: Tensor
    cross: Tensor


class Transformer(nn.Module):
    """Pre-LN encoder-decoder Transformer with explicit, returned attention."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.architecture != "transformer":
            raise ValueError(f"Transformer needs architecture 'transformer', got {config}")
        self.config = config
        dim = config.hidden_dim
        self.scale = math.sqrt(dim)
        self.src_embedding = nn.Embedding(config.src_vocab_size, dim, config.pad_id)
        self.tgt_embedding = nn.Embedding(config.tgt_vocab_size, dim, config.pad_id)
        for emb in (self.src_embedding, self.tgt_embedding):
            nn.init.normal_(emb.weight, std=dim**-0.5)
            with torch.no_grad():
                emb.weight[config.pad_id].zero_()
        self.dropout = nn.Dropout(config.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.layers))
        self.encoder_norm = nn.LayerNorm(dim)
        self.decoder_norm = nn.LayerNorm(dim)
        self.output = nn.Linear(dim, config.tgt_vocab_size, bias=False)
        if config.tie_embeddings:
            self.output.weight = self.tgt_embedding.weight

    def _decoder(self) -> list[DecoderLayer]:
        return [cast(DecoderLayer, layer) for layer in self.decoder_layers]

    # -- the interface shared with Seq2Seq -------------------------------------------------
    @property
    def has_attention(self) -> bool:
        return True

    @property
    def attention_heads(self) -> int:
        return self.config.attention_heads

    @property
    def alignment_layer(self) -> int:
        """0-based index of the decoder layer whose cross-attention is *the* attention."""
        return self.config.alignment_layer % self.config.layers

    @property
    def source_embedding(self) -> nn.Embedding:
        return self.src_embedding

    def num_parameters(self) -> int:
        """Trainable parameters, tied weights counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _embed(self, embedding: nn.Embedding, ids: Tensor, positions: Tensor) -> Tensor:
        """ids (batch, len), positions broadcastable to it -> (batch, len, dim)."""
        x = embedding(ids) * self.scale + sinusoids(positions, self.config.hidden_dim)
        return self.dropout(x)

    def _encode(self, src: Tensor, src_mask: Tensor) -> tuple[Tensor, list[Tensor]]:
        """-> states (batch, src_len, dim) and per layer (batch, heads, src_len, src_len)."""
        positions = torch.arange(src.size(1), device=src.device)  # (src_len,)
        x = self._embed(self.src_embedding, src, positions)
        mask = src_mask[:, None, None, :]  # (batch, 1, 1, src_len)
        maps: list[Tensor] = []
        for layer in self.encoder_layers:
            x, weights = layer(x, mask)
            maps.append(weights)
        return self.encoder_norm(x), maps

    def encode(self, src: Tensor, src_mask: Tensor) -> TransformerEncoderOutput:
        """src (batch, src_len) long, right-padded; src_mask (batch, src_len) bool."""
        src_mask = src_mask.bool()
        if bool((~src_mask).all(dim=1).any()):
            raise ValueError("every source sentence needs at least one real token")
        states, _ = self._encode(src, src_mask)
        keys, values = zip(
            *(layer.cross_attn.project_kv(states) for layer in self._decoder()), strict=True
        )
        return TransformerEncoderOutput(
            states=states, mask=src_mask, attn_mask=src_mask, cross_keys=keys, cross_values=values
        )

    def init_state(self, enc: TransformerEncoderOutput) -> TransformerState:
        batch = enc.states.size(0)
        cfg = self.config
        empty = enc.states.new_zeros(
            batch, cfg.attention_heads, 0, cfg.hidden_dim // cfg.attention_heads
        )
        n = len(self.decoder_layers)
        return TransformerState(keys=(empty,) * n, values=(empty,) * n)

    def step(
        self,
        prev_tokens: Tensor,
        state: TransformerState,
        enc: TransformerEncoderOutput,
        *,
        step_index: int | Tensor,
        blocked_mask: Tensor | None = None,
        output: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, TransformerState, Tensor]:
        """Advance every row by one token (see ``Seq2Seq.step``).

        prev_tokens (batch,) long; step_index the 0-based position of prev_tokens in the
        target input (0 = bos), an int or (batch,) long. Returns logits (batch, tgt_vocab),
        the state with this token's keys and values appended, and the alignment layer's
        cross-attention (batch, heads, src_len). ``output`` stands in for the output layer
        (decoding's int8 copy).
        """
        if isinstance(step_index, int):
            positions = torch.full_like(prev_tokens, step_index)  # (batch,)
        else:
            positions = step_index
        x = self._embed(self.tgt_embedding, prev_tokens[:, None], positions[:, None])
        cross_mask = unblocked(enc.mask, blocked_mask)[:, None, None, :]
        self_mask = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=x.device)
        keys: list[Tensor] = []
        values: list[Tensor] = []
        align: Tensor | None = None
        for i, layer in enumerate(self._decoder()):
            past = (state.keys[i], state.values[i])
            cross_kv = (enc.cross_keys[i], enc.cross_values[i])
            x, _, cross, (k, v) = layer(x, past, self_mask, cross_kv, cross_mask)
            keys.append(k)  # (batch, heads, steps, head_dim)
            values.append(v)
            if i == self.alignment_layer:
                align = cross[:, :, 0]  # (batch, heads, src_len)
        assert align is not None
        project = self.output if output is None else output
        logits = project(self.decoder_norm(x[:, 0]))  # (batch, tgt_vocab)
        return logits, TransformerState(tuple(keys), tuple(values)), align

    def _decode(
        self, tgt_in: Tensor, states: Tensor, cross_mask: Tensor
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Teacher forcing over the whole target: -> output (batch, tgt_len, dim), per layer
        self weights (batch, heads, tgt_len, tgt_len) and cross weights (b, h, tgt, src)."""
        tgt_len = tgt_in.size(1)
        positions = torch.arange(tgt_len, device=tgt_in.device)
        x = self._embed(self.tgt_embedding, tgt_in, positions)
        causal = torch.ones(tgt_len, tgt_len, dtype=torch.bool, device=x.device).tril()
        self_mask = causal[None, None]  # (1, 1, tgt_len, tgt_len)
        mask = cross_mask[:, None, None, :]  # (batch, 1, 1, src_len)
        selfs: list[Tensor] = []
        crosses: list[Tensor] = []
        for layer in self._decoder():
            cross_kv = layer.cross_attn.project_kv(states)
            x, self_w, cross_w, _ = layer(x, None, self_mask, cross_kv, mask)
            selfs.append(self_w)
            crosses.append(cross_w)
        return self.decoder_norm(x), selfs, crosses

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor,
        tgt_in: Tensor,
        *,
        blocked_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Teacher forcing. tgt_in (batch, tgt_len) long starts with bos.

        Returns logits (batch, tgt_len, tgt_vocab) and the alignment layer's cross-attention
        (batch, tgt_len, heads, src_len), like ``Seq2Seq.forward``.
        """
        src_mask = src_mask.bool()
        states, _ = self._encode(src, src_mask)
        out, _, crosses = self._decode(tgt_in, states, unblocked(src_mask, blocked_mask))
        attention = crosses[self.alignment_layer].transpose(1, 2)  # (b, tgt, heads, src)
        return self.output(out), attention

    def attention_maps(
        self,
        src: Tensor,
        src_mask: Tensor,
        tgt_in: Tensor,
        *,
        blocked_mask: Tensor | None = None,
    ) -> AttentionMaps:
        """Every layer's and head's attention while reading ``tgt_in`` (teacher forcing).

        Row t of the decoder and cross maps is the step that reads tgt_in[:, t] and
        predicts the next token, so the rows match the decoder's output tokens.
        """
        return self.read(src, src_mask, tgt_in, blocked_mask=blocked_mask)[1]

    def read(
        self,
        src: Tensor,
        src_mask: Tensor,
        tgt_in: Tensor,
        *,
        blocked_mask: Tensor | None = None,
    ) -> tuple[Tensor, AttentionMaps]:
        """One teacher-forced pass: logits (batch, tgt_len, tgt_vocab) and every map."""
        src_mask = src_mask.bool()
        states, enc_maps = self._encode(src, src_mask)
        out, selfs, crosses = self._decode(tgt_in, states, unblocked(src_mask, blocked_mask))
        maps = AttentionMaps(
            encoder=torch.stack(enc_maps, dim=1),  # (batch, layers, heads, src, src)
            decoder=torch.stack(selfs, dim=1),  # (batch, layers, heads, tgt, tgt)
            cross=torch.stack(crosses, dim=1),  # (batch, layers, heads, tgt, src)
        )
        return self.output(out), maps
