"""GRU decoder with attention, one token at a time, in Bahdanau or Luong style.

Bahdanau et al. (2015): attend with the previous state s_{t-1}; s_t = GRU([emb; c_t], s_{t-1});
logits from the readout tanh(W_r [s_t; c_t; emb]).

Luong et al. (2015): h_t = GRU([emb; h̃_{t-1}], h_{t-1}) (input feeding); attend with h_t;
h̃_t = tanh(W_c [c_t; h_t]); logits from h̃_t.

The same ``step`` serves teacher-forced training and every decoding algorithm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnviz.model.attention import Attention, AttentionSpec, build_attention
from attnviz.model.config import ModelConfig


@dataclass(frozen=True)
class DecoderState:
    """Recurrent state of a batch of hypotheses.

    Attributes:
        hidden: (batch, hidden) GRU state (s_t or h_t).
        feed: (batch, hidden) Luong's last attentional vector h̃_t (input feeding);
            None for the Bahdanau style.
    """

    hidden: Tensor
    feed: Tensor | None = None

    def index_select(self, indices: Tensor) -> DecoderState:
        """Rows ``indices`` (n,) long, e.g. to reorder or expand beams."""
        return DecoderState(
            hidden=self.hidden.index_select(0, indices),
            feed=None if self.feed is None else self.feed.index_select(0, indices),
        )


class Decoder(nn.Module):
    """Target embedding, GRU cell, attention mechanism and output layer."""

    def __init__(self, config: ModelConfig, key_dim: int) -> None:
        super().__init__()
        self.config = config
        self.style = config.decoder_style
        hidden, emb = config.hidden_dim, config.emb_dim
        self.embedding = nn.Embedding(config.tgt_vocab_size, emb, config.pad_id)
        self.dropout = nn.Dropout(config.dropout)
        self.bridge = nn.Linear(key_dim, hidden)
        self.attention: Attention = build_attention(
            config.attention,
            AttentionSpec(
                query_dim=hidden,
                key_dim=key_dim,
                value_dim=key_dim,
                attn_dim=hidden,
                heads=config.attention_heads,
                window=config.local_window,
                max_positions=config.max_src_positions,
            ),
        )
        if self.style == "bahdanau":
            self.cell = nn.GRUCell(emb + key_dim, hidden)
            self.readout = nn.Linear(hidden + key_dim + emb, hidden)
        else:
            self.cell = nn.GRUCell(emb + hidden, hidden)
            self.readout = nn.Linear(key_dim + hidden, hidden)  # W_c
        self.output = nn.Linear(hidden, config.tgt_vocab_size)
        if config.tie_embeddings:
            self.output.weight = self.embedding.weight

    def init_state(self, summary: Tensor) -> DecoderState:
        """summary (batch, key_dim) -> initial state tanh(W summary)."""
        hidden = torch.tanh(self.bridge(summary))  # (batch, hidden)
        feed = torch.zeros_like(hidden) if self.style == "luong" else None
        return DecoderState(hidden=hidden, feed=feed)

    def step(
        self,
        prev_tokens: Tensor,
        state: DecoderState,
        keys: Tensor,
        values: Tensor,
        mask: Tensor,
        step: Tensor,
        output: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """Advance one token.

        prev_tokens (batch,) long; keys = attention.precompute_keys(states); values
        (batch, src_len, key_dim); mask (batch, src_len) bool True = may attend; step
        (batch,) long; ``output`` a stand-in for the output layer (decoding's int8 copy).
        Returns logits (batch, tgt_vocab), the new state and the attention weights (batch,
        heads, src_len) or None.
        """
        emb = self.dropout(self.embedding(prev_tokens))  # (batch, emb)
        out, new_state, weights = self.advance(emb, state, keys, values, mask, step)
        return self.project(out, output), new_state, weights

    def project(self, out: Tensor, output: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Readout vectors (..., hidden) -> logits (..., tgt_vocab), through ``output``
        instead of the output layer when given.

        Teacher forcing projects every step at once: one large matrix product instead of
        one per step (and one gradient instead of a sum of per-step gradients).
        """
        return (self.output if output is None else output)(self.dropout(out))

    def advance(
        self,
        emb: Tensor,
        state: DecoderState,
        keys: Tensor,
        values: Tensor,
        mask: Tensor,
        step: Tensor,
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One step up to the readout: emb (batch, emb) of the previous token, dropout
        applied. Returns the readout (batch, hidden), the new state, the weights."""
        if self.style == "bahdanau":
            context, weights = self.attention(state.hidden, keys, values, mask, step=step)
            # context: (batch, key_dim)
            hidden = self.cell(torch.cat([emb, context], dim=1), state.hidden)  # (batch, hid)
            out = torch.tanh(self.readout(torch.cat([hidden, context, emb], dim=1)))
            new_state = DecoderState(hidden=hidden)
        else:
            assert state.feed is not None, "a Luong decoder state carries the attentional vector"
            hidden = self.cell(torch.cat([emb, state.feed], dim=1), state.hidden)  # (batch, hid)
            context, weights = self.attention(hidden, keys, values, mask, step=step)
            out = torch.tanh(self.readout(torch.cat([context, hidden], dim=1)))  # (batch, hid)
            new_state = DecoderState(hidden=hidden, feed=out)
        return out, new_state, weights  # out: (batch, hidden)
