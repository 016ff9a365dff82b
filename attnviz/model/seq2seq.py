"""The recurrent attention encoder-decoder, built from one ``ModelConfig``.

    model = Seq2Seq(config)
    enc = model.encode(src, src_mask)                 # once per batch of sentences
    state = model.init_state(enc)
    logits, state, weights = model.step(prev, state, enc, step_index=t)   # per token

``forward`` is teacher forcing: the same ``step`` in a loop over the target prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnviz.model.attention import NoAttention
from attnviz.model.config import ModelConfig
from attnviz.model.decoder import Decoder, DecoderState
from attnviz.model.encoder import Encoder


def unblocked(mask: Tensor, blocked_mask: Tensor | None) -> Tensor:
    """(batch, src_len) padding mask without the what-if blocked positions (True = blocked)."""
    if blocked_mask is None:
        return mask
    if blocked_mask.shape != mask.shape:
        raise ValueError(
            f"blocked_mask must have shape {tuple(mask.shape)} (batch, src_len), "
            f"got {tuple(blocked_mask.shape)}"
        )
    return mask & ~blocked_mask.bool()


@dataclass(frozen=True)
class EncoderOutput:
    """Everything the decoder needs about a batch of source sentences, computed once.

    Attributes:
        states: (batch, src_len, 2 * hidden) encoder states, 0 on padding.
        summary: (batch, 2 * hidden) last forward state and first backward state.
        mask: (batch, src_len) bool, True = real source token.
        keys: the attention's ``precompute_keys(memory)`` (batch, ...), made once.
        values: (batch, mem_len, 2 * hidden) what the attention averages: ``states``, or
            for the ``none`` mechanism the summary as a single position (the bottleneck).
        attn_mask: (batch, mem_len) bool mask of ``values``: ``mask``, or all True for
            ``none``.
    """

    states: Tensor
    summary: Tensor
    mask: Tensor
    keys: Tensor
    values: Tensor
    attn_mask: Tensor

    def index_select(self, indices: Tensor) -> EncoderOutput:
        """Rows ``indices`` (n,) long, e.g. to expand each sentence to its beams."""
        return EncoderOutput(
            states=self.states.index_select(0, indices),
            summary=self.summary.index_select(0, indices),
            mask=self.mask.index_select(0, indices),
            keys=self.keys.index_select(0, indices),
            values=self.values.index_select(0, indices),
            attn_mask=self.attn_mask.index_select(0, indices),
        )


class Seq2Seq(nn.Module):
    """Bidirectional RNN encoder + GRU decoder with the configured attention."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config, key_dim=self.encoder.out_dim)

    @property
    def has_attention(self) -> bool:
        """False for the ``none`` mechanism (weights are None, ``blocked_mask`` is ignored)."""
        return not isinstance(self.decoder.attention, NoAttention)

    @property
    def attention_heads(self) -> int:
        """Heads of every returned weights tensor (0 when there is no attention)."""
        return self.decoder.attention.heads

    @property
    def source_embedding(self) -> nn.Embedding:
        """The source token embedding (where gradient saliency is read)."""
        return self.encoder.embedding

    def num_parameters(self) -> int:
        """Trainable parameters, tied weights counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def encode(self, src: Tensor, src_mask: Tensor) -> EncoderOutput:
        """src (batch, src_len) long, right-padded; src_mask (batch, src_len) bool."""
        src_mask = src_mask.bool()
        states, summary = self.encoder(src, src_mask)  # (batch, src_len, 2h), (batch, 2h)
        if self.has_attention:
            values, attn_mask = states, src_mask
        else:
            values = summary.unsqueeze(1)  # (batch, 1, 2h): the decoder sees only this
            attn_mask = torch.ones_like(src_mask[:, :1])  # (batch, 1)
        keys = self.decoder.attention.precompute_keys(values)  # (batch, mem_len, ...)
        return EncoderOutput(
            states=states,
            summary=summary,
            mask=src_mask,
            keys=keys,
            values=values,
            attn_mask=attn_mask,
        )

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        return self.decoder.init_state(enc.summary)

    def step(
        self,
        prev_tokens: Tensor,
        state: DecoderState,
        enc: EncoderOutput,
        *,
        step_index: int | Tensor,
        blocked_mask: Tensor | None = None,
        output: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """Advance every row of the batch by one token.

        prev_tokens (batch,) long: the previous target token (bos at step 0).
        step_index: the 0-based index of the token being predicted, an int or (batch,) long.
        blocked_mask (batch, src_len) bool: True = the decoder may NOT attend to that source
            position (a "what-if" view); combined with the padding mask. Ignored without
            attention (the summary has already read the whole source).
        output: a stand-in for the output layer (decoding's int8 copy).
        Returns logits (batch, tgt_vocab), the new state, and weights (batch, heads, src_len)
        or None.
        """
        mask = self._attention_mask(enc, blocked_mask)  # (batch, mem_len)
        if isinstance(step_index, int):
            step = torch.full_like(prev_tokens, step_index)  # (batch,)
        else:
            step = step_index
        return self.decoder.step(prev_tokens, state, enc.keys, enc.values, mask, step, output)

    def _attention_mask(self, enc: EncoderOutput, blocked_mask: Tensor | None) -> Tensor:
        """Padding mask combined with the what-if blocked positions (batch, mem_len)."""
        if not self.has_attention:
            return enc.attn_mask
        return unblocked(enc.attn_mask, blocked_mask)

    def forward(
        self,
        src: Tensor,
        src_mask: Tensor,
        tgt_in: Tensor,
        *,
        blocked_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing. tgt_in (batch, tgt_len) long starts with bos.

        Returns logits (batch, tgt_len, tgt_vocab) and attention
        (batch, tgt_len, heads, src_len), or None without attention.
        """
        enc = self.encode(src, src_mask)
        state = self.init_state(enc)
        batch, tgt_len = tgt_in.shape
        mask = self._attention_mask(enc, blocked_mask)  # (batch, mem_len)
        steps = torch.arange(tgt_len, device=tgt_in.device).unsqueeze(1).expand(tgt_len, batch)
        dec = self.decoder
        emb = dec.dropout(dec.embedding(tgt_in))  # (batch, tgt_len, emb)
        outs: list[Tensor] = []
        weights: list[Tensor] = []
        for t in range(tgt_len):
            out, state, step_weights = dec.advance(
                emb[:, t], state, enc.keys, enc.values, mask, steps[t]
            )
            outs.append(out)  # (batch, hidden)
            if step_weights is not None:
                weights.append(step_weights)  # (batch, heads, src_len)
        all_logits = dec.project(torch.stack(outs, dim=1))  # (batch, tgt_len, tgt_vocab)
        attention = torch.stack(weights, dim=1) if weights else None
        return all_logits, attention  # attention: (batch, tgt_len, heads, src_len) | None
