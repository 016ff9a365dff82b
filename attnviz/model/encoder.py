"""Bidirectional RNN encoder over right-padded source batches (packed sequences)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnviz.model.config import ModelConfig


class Encoder(nn.Module):
    """Embedding + bidirectional GRU/LSTM.

    ``forward(src, mask)`` returns ``states`` (batch, src_len, 2 * hidden) — forward and
    backward states concatenated, exactly 0 on padding — and ``summary`` (batch, 2 * hidden):
    the top layer's forward state at the last real token and its backward state at the
    first token.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.src_vocab_size, config.emb_dim, config.pad_id)
        self.dropout = nn.Dropout(config.dropout)
        rnn_cls: type[nn.GRU] | type[nn.LSTM] = nn.LSTM if config.rnn_type == "lstm" else nn.GRU
        self.rnn = rnn_cls(
            config.emb_dim,
            config.hidden_dim,
            num_layers=config.enc_layers,
            batch_first=True,
            bidirectional=True,
            dropout=config.dropout if config.enc_layers > 1 else 0.0,
        )

    @property
    def out_dim(self) -> int:
        return 2 * self.config.hidden_dim

    def forward(self, src: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """src (batch, src_len) long, mask (batch, src_len) bool True = real token."""
        src_len = src.size(1)
        lengths = mask.sum(dim=1).cpu()  # (batch,) pack_padded_sequence wants CPU lengths
        if bool((lengths == 0).any()):
            raise ValueError("every source sentence needs at least one real token")
        embedded = self.dropout(self.embedding(src))  # (batch, src_len, emb)
        packed = pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)
        packed_out, final = self.rnn(packed)
        states, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src_len)
        # states: (batch, src_len, 2 * hidden), zeros on padding
        h_n = final[0] if isinstance(final, tuple) else final  # (layers * 2, batch, hidden)
        summary = torch.cat([h_n[-2], h_n[-1]], dim=1)  # (batch, 2 * hidden)
        return states, summary
