"""The one typed, frozen configuration that builds a translation model (RNN or Transformer).

A checkpoint stores ``ModelConfig.to_dict()`` as JSON; loading calls ``ModelConfig.from_dict``
and rebuilds the model from it, so every architectural choice lives here and nowhere else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from attnviz.model.attention import ATTENTIONS

ARCHITECTURES: tuple[str, ...] = ("rnn", "transformer")
RNN_TYPES: tuple[str, ...] = ("gru", "lstm")
DECODER_STYLES: tuple[str, ...] = ("bahdanau", "luong")
LOCAL_ATTENTIONS: tuple[str, ...] = ("local_m", "local_p")


def _choices(values: Any) -> str:
    return ", ".join(sorted(values))


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an RNN encoder-decoder with attention, or of a Transformer.

    Attributes:
        architecture: "rnn" (:class:`~attnviz.model.seq2seq.Seq2Seq`) or "transformer"
            (:class:`~attnviz.model.transformer.Transformer`: d_model = hidden_dim = emb_dim,
            heads = attention_heads, attention "scaled_dot"; the RNN fields are unused).
        src_vocab_size: number of source token ids.
        tgt_vocab_size: number of target token ids.
        emb_dim: embedding size (source and target).
        hidden_dim: RNN size per direction in the encoder, decoder state size, and the
            hidden size of the attention score functions. Encoder states have 2 * hidden_dim.
        enc_layers: stacked bidirectional encoder layers.
        rnn_type: encoder cell, "gru" or "lstm" (the decoder is always a GRU).
        decoder_style: "bahdanau" (attend with s_{t-1}, readout from [s_t; c_t; emb]) or
            "luong" (input feeding, attend with h_t, attentional vector tanh(W_c[c_t; h_t])).
        attention: a name in ``attnviz.model.attention.ATTENTIONS``.
        attention_heads: heads of the "multihead" mechanism (ignored by the others).
        local_window: D of "local_m"/"local_p"; the window covers 2D + 1 source positions.
        max_src_positions: rows of the "location" mechanism's position scorer; longer
            sources reuse the last row for their tail (ignored by the others).
        dropout: dropout probability on embeddings and decoder outputs.
        pad_id, bos_id, eos_id: special token ids (shared by both vocabularies).
        tie_embeddings: share the target embedding with the output projection
            (needs emb_dim == hidden_dim).
        layers: Transformer encoder layers and decoder layers (each).
        ff_dim: Transformer feed-forward inner size.
        alignment_layer: the Transformer decoder layer whose cross-attention (averaged over
            heads) is the model's main attention matrix; negative counts from the end
            (-1 = the last layer).
    """

    src_vocab_size: int
    tgt_vocab_size: int
    emb_dim: int = 256
    hidden_dim: int = 256
    enc_layers: int = 1
    rnn_type: str = "gru"
    decoder_style: str = "bahdanau"
    attention: str = "additive"
    attention_heads: int = 4
    local_window: int = 3
    max_src_positions: int = 128
    dropout: float = 0.1
    pad_id: int = 0
    bos_id: int = 2
    eos_id: int = 3
    tie_embeddings: bool = False
    architecture: str = "rnn"
    layers: int = 3
    ff_dim: int = 1024
    alignment_layer: int = -1

    _POSITIVE: ClassVar[tuple[str, ...]] = (
        "src_vocab_size",
        "tgt_vocab_size",
        "emb_dim",
        "hidden_dim",
        "enc_layers",
        "attention_heads",
        "local_window",
        "max_src_positions",
        "layers",
        "ff_dim",
    )

    def __post_init__(self) -> None:
        for name in self._POSITIVE:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"unknown architecture {self.architecture!r}; valid: {_choices(ARCHITECTURES)}"
            )
        if self.architecture == "transformer":
            self._check_transformer()
        if self.rnn_type not in RNN_TYPES:
            raise ValueError(f"unknown rnn_type {self.rnn_type!r}; valid: {_choices(RNN_TYPES)}")
        if self.decoder_style not in DECODER_STYLES:
            raise ValueError(
                f"unknown decoder_style {self.decoder_style!r}; valid: {_choices(DECODER_STYLES)}"
            )
        if self.attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {self.attention!r}; valid: {_choices(ATTENTIONS)}")
        if self.attention == "multihead" and self.hidden_dim % self.attention_heads != 0:
            raise ValueError(
                f"hidden_dim ({self.hidden_dim}) must be divisible by attention_heads "
                f"({self.attention_heads}) for multihead attention"
            )
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, int | float):
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        special = {"pad_id": self.pad_id, "bos_id": self.bos_id, "eos_id": self.eos_id}
        for name, value in special.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
            if value >= min(self.src_vocab_size, self.tgt_vocab_size):
                raise ValueError(
                    f"{name} ({value}) must be smaller than both vocabulary sizes "
                    f"({self.src_vocab_size}, {self.tgt_vocab_size})"
                )
        if len(set(special.values())) != len(special):
            raise ValueError(f"pad_id, bos_id and eos_id must differ, got {special}")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"tie_embeddings must be a bool, got {self.tie_embeddings!r}")
        if self.tie_embeddings and self.emb_dim != self.hidden_dim:
            raise ValueError(
                f"tie_embeddings needs emb_dim == hidden_dim, got {self.emb_dim} and "
                f"{self.hidden_dim}"
            )

    def _check_transformer(self) -> None:
        if self.attention != "scaled_dot":
            raise ValueError(
                f"a transformer attends with 'scaled_dot' heads, got attention {self.attention!r}"
            )
        if self.emb_dim != self.hidden_dim:
            raise ValueError(
                f"a transformer needs emb_dim == hidden_dim (d_model), got {self.emb_dim} and "
                f"{self.hidden_dim}"
            )
        if self.hidden_dim % self.attention_heads != 0:
            raise ValueError(
                f"hidden_dim ({self.hidden_dim}) must be divisible by attention_heads "
                f"({self.attention_heads})"
            )
        if isinstance(self.alignment_layer, bool) or not isinstance(self.alignment_layer, int):
            raise ValueError(f"alignment_layer must be an integer, got {self.alignment_layer!r}")
        if not -self.layers <= self.alignment_layer < self.layers:
            raise ValueError(
                f"alignment_layer {self.alignment_layer} does not exist: the model has layers "
                f"0..{self.layers - 1} (or -1..-{self.layers} from the end)"
            )

    @property
    def enc_out_dim(self) -> int:
        """Size of one encoder state: forward and backward states concatenated."""
        return 2 * self.hidden_dim

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild a config; unknown or missing keys raise ValueError naming the valid ones."""
        valid = cls.field_names()
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown ModelConfig key(s) {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(valid)}"
            )
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [name for name in required if name not in data]
        if missing:
            raise ValueError(f"missing ModelConfig key(s): {', '.join(missing)}")
        return cls(**data)

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated like a new config)."""
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ValueError(
                f"unknown ModelConfig key(s) {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(self.field_names())}"
            )
        return dataclasses.replace(self, **changes)
