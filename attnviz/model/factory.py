"""Build the model a config describes: ``build_model(config)`` -> Seq2Seq | Transformer.

Both classes share one interface (``encode``, ``init_state``, ``step``, ``forward``,
``has_attention``, ``attention_heads``, ``source_embedding``, ``num_parameters``), so
decoding, training, evaluation and the service take an :data:`NMTModel` and never ask
which one they hold, except to offer the Transformer's per-layer views.
"""

from __future__ import annotations

from typing import TypeAlias

from attnviz.model.config import ModelConfig
from attnviz.model.seq2seq import Seq2Seq
from attnviz.model.transformer import Transformer

NMTModel: TypeAlias = Seq2Seq | Transformer


def build_model(config: ModelConfig) -> NMTModel:
    """The model of ``config.architecture`` ("rnn" or "transformer")."""
    if config.architecture == "transformer":
        return Transformer(config)
    return Seq2Seq(config)
