"""Tests for the config, encoder, decoder and Seq2Seq (tiny seeded models)."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attnviz.model.attention import ATTENTIONS
from attnviz.model.config import DECODER_STYLES, RNN_TYPES, ModelConfig
from attnviz.model.decoder import DecoderState
from attnviz.model.seq2seq import EncoderOutput, Seq2Seq

torch.set_num_threads(1)

PAD, BOS, EOS = 0, 2, 3
SRC_VOCAB, TGT_VOCAB = 20, 22
COMBOS = list(itertools.product(sorted(ATTENTIONS), DECODER_STYLES))
LENGTHS = (7, 5, 2)


def tiny_config(attention: str = "additive", style: str = "bahdanau", **extra: Any) -> ModelConfig:
    return ModelConfig(
        src_vocab_size=SRC_VOCAB,
        tgt_vocab_size=TGT_VOCAB,
        emb_dim=16,
        hidden_dim=16,
        attention=attention,
        decoder_style=style,
        attention_heads=4,
        local_window=3,
        dropout=0.1,
        **extra,
    )


def tiny_model(attention: str = "additive", style: str = "bahdanau", **extra: Any) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(tiny_config(attention, style, **extra))


def source_batch(lengths: tuple[int, ...] = LENGTHS, seed: int = 1) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    src_len = max(lengths)
    mask = torch.arange(src_len).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    src = torch.randint(4, SRC_VOCAB, (len(lengths), src_len), generator=gen)
    return src.masked_fill(~mask, PAD), mask


def target_batch(batch: int, tgt_len: int = 6, seed: int = 2) -> Tensor:
    gen = torch.Generator().manual_seed(seed)
    tgt = torch.randint(4, TGT_VOCAB, (batch, tgt_len), generator=gen)
    tgt[:, 0] = BOS
    return tgt


# --- forward, attention rows, blocking, padding -------------------------------------------


@pytest.mark.parametrize(("attention", "style"), COMBOS)
def test_forward_shapes_and_attention_rows(attention: str, style: str) -> None:
    model = tiny_model(attention, style).eval()
    src, mask = source_batch()
    tgt_in = target_batch(len(LENGTHS))
    with torch.no_grad():
        logits, attn = model(src, mask, tgt_in)
    assert logits.shape == (3, tgt_in.size(1), TGT_VOCAB)
    assert torch.isfinite(logits).all()
    if attention == "none":
        assert attn is None
        assert not model.has_attention and model.attention_heads == 0
        return
    assert attn is not None
    heads = 4 if attention == "multihead" else 1
    assert model.attention_heads == heads
    assert attn.shape == (3, tgt_in.size(1), heads, src.size(1))
    torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:3]), atol=1e-5, rtol=0)
    padding = (~mask)[:, None, None, :].expand_as(attn)
    assert (attn[padding] == 0).all()


@pytest.mark.parametrize(("attention", "style"), COMBOS)
def test_blocked_source_position_gets_exactly_zero(attention: str, style: str) -> None:
    model = tiny_model(attention, style).eval()
    src, mask = source_batch()
    tgt_in = target_batch(len(LENGTHS))
    blocked = torch.zeros_like(mask)
    blocked[0, 1] = True
    blocked[1, 4] = True
    with torch.no_grad():
        logits, attn = model(src, mask, tgt_in, blocked_mask=blocked)
        plain_logits, _ = model(src, mask, tgt_in)
    if attention == "none":  # nothing to block: the summary has read the whole source
        assert attn is None
        torch.testing.assert_close(logits, plain_logits)
        return
    assert attn is not None
    assert (attn[0, :, :, 1] == 0).all()
    assert (attn[1, :, :, 4] == 0).all()
    torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:3]), atol=1e-5, rtol=0)
    # an unblocked sentence is unaffected
    torch.testing.assert_close(logits[2], plain_logits[2], atol=1e-6, rtol=0)


@pytest.mark.parametrize(("attention", "style"), COMBOS)
def test_padding_does_not_change_a_sentence(attention: str, style: str) -> None:
    model = tiny_model(attention, style).eval()
    src, mask = source_batch()
    tgt_in = target_batch(len(LENGTHS))
    with torch.no_grad():
        logits, attn = model(src, mask, tgt_in)
        for row, length in enumerate(LENGTHS):
            alone_logits, alone_attn = model(
                src[row : row + 1, :length], mask[row : row + 1, :length], tgt_in[row : row + 1]
            )
            torch.testing.assert_close(logits[row : row + 1], alone_logits, atol=1e-5, rtol=0)
            if attn is not None:
                assert alone_attn is not None
                torch.testing.assert_close(
                    attn[row : row + 1, ..., :length], alone_attn, atol=1e-5, rtol=0
                )


@pytest.mark.parametrize("style", DECODER_STYLES)
def test_step_loop_matches_forward(style: str) -> None:
    model = tiny_model("local_m", style).eval()  # local_m also checks the step index
    src, mask = source_batch()
    tgt_in = target_batch(len(LENGTHS))
    with torch.no_grad():
        logits, attn = model(src, mask, tgt_in)
        enc = model.encode(src, mask)
        state = model.init_state(enc)
        for t in range(tgt_in.size(1)):
            step_logits, state, weights = model.step(tgt_in[:, t], state, enc, step_index=t)
            torch.testing.assert_close(step_logits, logits[:, t])
            assert attn is not None and weights is not None
            torch.testing.assert_close(weights, attn[:, t])


@pytest.mark.parametrize("style", DECODER_STYLES)
def test_index_select_reorders_encoder_output_and_state(style: str) -> None:
    model = tiny_model("multihead", style).eval()
    src, mask = source_batch()
    prev = torch.tensor([BOS, BOS, BOS])
    order = torch.tensor([2, 0, 0, 1])
    with torch.no_grad():
        enc = model.encode(src, mask)
        state = model.init_state(enc)
        logits, state2, weights = model.step(prev, state, enc, step_index=0)
        enc_r = enc.index_select(order)
        state_r = state.index_select(order)
        logits_r, state2_r, weights_r = model.step(prev[order], state_r, enc_r, step_index=0)
    assert isinstance(enc_r, EncoderOutput) and isinstance(state_r, DecoderState)
    torch.testing.assert_close(logits_r, logits[order])
    torch.testing.assert_close(state2_r.hidden, state2.hidden[order])
    assert weights is not None and weights_r is not None
    torch.testing.assert_close(weights_r, weights[order])
    assert (state.feed is None) == (style == "bahdanau")


def test_encoder_states_are_zero_on_padding_and_summary_is_from_real_ends() -> None:
    model = tiny_model().eval()
    src, mask = source_batch()
    with torch.no_grad():
        enc = model.encode(src, mask)
        hidden = model.config.hidden_dim
        assert enc.states.shape == (3, max(LENGTHS), 2 * hidden)
        assert (enc.states[~mask] == 0).all()
        for row, length in enumerate(LENGTHS):
            torch.testing.assert_close(
                enc.summary[row, :hidden], enc.states[row, length - 1, :hidden]
            )
            torch.testing.assert_close(enc.summary[row, hidden:], enc.states[row, 0, hidden:])


def test_none_decoder_sees_only_the_summary() -> None:
    model = tiny_model("none").eval()
    src, mask = source_batch()
    with torch.no_grad():
        enc = model.encode(src, mask)
    assert enc.values.shape == (3, 1, 2 * model.config.hidden_dim)
    assert torch.equal(enc.values[:, 0], enc.summary)
    assert enc.attn_mask.all() and enc.attn_mask.shape == (3, 1)


def test_blocked_mask_with_the_wrong_shape_is_rejected() -> None:
    model = tiny_model().eval()
    src, mask = source_batch()
    enc = model.encode(src, mask)
    state = model.init_state(enc)
    with pytest.raises(ValueError, match="blocked_mask"):
        model.step(torch.full((3,), BOS), state, enc, step_index=0, blocked_mask=mask[:, :2])


def test_empty_source_is_rejected() -> None:
    model = tiny_model().eval()
    src, mask = source_batch()
    mask = mask.clone()
    mask[2] = False
    with pytest.raises(ValueError, match="at least one real token"):
        model.encode(src, mask)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("style", DECODER_STYLES)
def test_lstm_encoder_trains(layers: int, style: str) -> None:
    model = tiny_model("general", style, rnn_type="lstm", enc_layers=layers).train()
    src, mask = source_batch()
    tgt_in = target_batch(3)
    logits, attn = model(src, mask, tgt_in)
    assert logits.shape == (3, tgt_in.size(1), TGT_VOCAB)
    assert attn is not None and (attn[(~mask)[:, None, None, :].expand_as(attn)] == 0).all()
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_tied_embeddings_share_the_output_weight() -> None:
    model = tiny_model(tie_embeddings=True)
    untied = tiny_model()
    assert model.decoder.output.weight is model.decoder.embedding.weight
    assert model.num_parameters() == untied.num_parameters() - TGT_VOCAB * 16


def test_num_parameters_counts_trainable_parameters() -> None:
    model = tiny_model()
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())
    assert model.num_parameters() > 0


# --- config -------------------------------------------------------------------------------


def test_config_round_trips_through_a_dict() -> None:
    config = tiny_config("multihead", "luong", rnn_type="lstm", enc_layers=2)
    data = config.to_dict()
    assert data["attention"] == "multihead"
    assert ModelConfig.from_dict(data) == config
    assert Seq2Seq(ModelConfig.from_dict(data)).config == config


def test_config_is_frozen() -> None:
    config = tiny_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.hidden_dim = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [
        ("rnn_type", "rnn", RNN_TYPES),
        ("decoder_style", "vaswani", DECODER_STYLES),
        ("attention", "bogus", tuple(ATTENTIONS)),
    ],
)
def test_config_rejects_unknown_choices_listing_valid_ones(
    field: str, value: str, valid: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError) as excinfo:
        ModelConfig.from_dict({**tiny_config().to_dict(), field: value})
    message = str(excinfo.value)
    assert repr(value) in message
    for choice in valid:
        assert choice in message


@pytest.mark.parametrize(
    "changes",
    [
        {"hidden_dim": 0},
        {"emb_dim": -1},
        {"dropout": 1.0},
        {"local_window": 0},
        {"attention_heads": 3, "attention": "multihead"},
        {"tie_embeddings": True, "emb_dim": 8},
        {"bos_id": 0},
        {"eos_id": 99},
    ],
)
def test_config_rejects_bad_values(changes: dict[str, Any]) -> None:
    data = {**tiny_config().to_dict(), **changes}
    with pytest.raises(ValueError):
        ModelConfig.from_dict(data)


def test_from_dict_rejects_unknown_keys_listing_valid_ones() -> None:
    data = {**tiny_config().to_dict(), "hiden_dim": 32}
    with pytest.raises(ValueError) as excinfo:
        ModelConfig.from_dict(data)
    message = str(excinfo.value)
    assert "hiden_dim" in message
    for name in ModelConfig.field_names():
        assert name in message


def test_from_dict_reports_missing_keys() -> None:
    with pytest.raises(ValueError, match="src_vocab_size"):
        ModelConfig.from_dict({"tgt_vocab_size": 10})


# --- learning: reverse random sequences ---------------------------------------------------

FIRST_SYMBOL, N_SYMBOLS = 4, 10
REV_VOCAB = FIRST_SYMBOL + N_SYMBOLS


def reverse_batch(gen: torch.Generator, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random sequences of 3-8 symbols and their reversals (+ eos), right-padded."""
    lengths = torch.randint(3, 9, (n,), generator=gen)  # (n,)
    src_len = int(lengths.max())
    symbols = torch.randint(FIRST_SYMBOL, REV_VOCAB, (n, src_len), generator=gen)
    positions = torch.arange(src_len).unsqueeze(0)  # (1, src_len)
    mask = positions < lengths.unsqueeze(1)  # (n, src_len)
    src = symbols.masked_fill(~mask, PAD)
    mirror = (lengths.unsqueeze(1) - 1 - positions).clamp(min=0)  # (n, src_len)
    reverse = symbols.gather(1, mirror).masked_fill(~mask, PAD)  # (n, src_len)
    tgt_out = torch.cat([reverse, torch.full((n, 1), PAD)], dim=1)  # (n, src_len + 1)
    tgt_out[torch.arange(n), lengths] = EOS
    tgt_in = torch.cat([torch.full((n, 1), BOS), reverse], dim=1)  # (n, src_len + 1)
    return src, mask, tgt_in, tgt_out


def greedy(model: Seq2Seq, src: Tensor, mask: Tensor, max_len: int) -> Tensor:
    enc = model.encode(src, mask)
    state = model.init_state(enc)
    prev = torch.full((src.size(0),), BOS)
    out = []
    for t in range(max_len):
        logits, state, _ = model.step(prev, state, enc, step_index=t)
        prev = logits.argmax(dim=-1)  # (batch,)
        out.append(prev)
    return torch.stack(out, dim=1)  # (batch, max_len)


def train_reverser(attention: str, steps: int) -> float:
    """Train a tiny model on reversal, return greedy token accuracy on held-out data."""
    torch.manual_seed(0)
    config = ModelConfig(
        src_vocab_size=REV_VOCAB,
        tgt_vocab_size=REV_VOCAB,
        emb_dim=16,
        hidden_dim=32,
        attention=attention,
        dropout=0.0,
    )
    model = Seq2Seq(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        src, mask, tgt_in, tgt_out = reverse_batch(gen, 64)
        logits, _ = model(src, mask, tgt_in)
        loss = F.cross_entropy(logits.reshape(-1, REV_VOCAB), tgt_out.reshape(-1), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    model.eval()
    src, mask, _, tgt_out = reverse_batch(torch.Generator().manual_seed(99), 300)
    with torch.no_grad():
        predicted = greedy(model, src, mask, tgt_out.size(1))
    real = tgt_out != PAD
    return ((predicted == tgt_out) & real).sum().item() / real.sum().item()


@pytest.mark.slow
def test_additive_attention_learns_to_reverse() -> None:
    accuracy = train_reverser("additive", steps=300)
    assert accuracy >= 0.95, f"token accuracy {accuracy:.3f}"


@pytest.mark.slow
def test_no_attention_runs_on_the_reversal_task() -> None:
    accuracy = train_reverser("none", steps=60)  # the bottleneck is expected to do worse
    assert 0.0 <= accuracy <= 1.0
