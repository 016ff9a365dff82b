"""Tests for the int8 output layer (tiny seeded models, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnviz.model.decoding import DecodeOptions, beam_search, decode_batch, forced_batch
from attnviz.model.factory import NMTModel
from attnviz.model.int8 import Int8Output, int8_output
from tests.model.test_decoding import (
    SOURCES,
    SRC_VOCAB,
    TGT_VOCAB,
    assert_same_hypothesis,
    tiny_model,
)
from tests.model.test_transformer import tiny as tiny_transformer

KINDS = ["additive", "general", "local_m", "none", "transformer"]  # fused and model steps


def build(kind: str) -> NMTModel:
    if kind == "transformer":
        return tiny_transformer(src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB)
    return tiny_model(kind)


def test_the_int8_layer_is_close_to_the_model_s_and_leaves_it_untouched() -> None:
    model = tiny_model("additive")
    output = model.decoder.output
    before = {k: v.clone() for k, v in output.state_dict().items()}
    layer = int8_output(model)
    assert "qconfig" not in output.__dict__
    for key, value in output.state_dict().items():
        assert torch.equal(value, before[key])
    x = torch.randn(8, model.config.hidden_dim)
    with torch.inference_mode():
        exact, approx = output(x), layer(x)
    assert approx.shape == exact.shape == (8, TGT_VOCAB)
    err = (approx - exact).abs().max().item()
    assert 0 < err < 0.05 * exact.abs().max().item()  # quantised: close, not equal


@pytest.mark.parametrize("bounded", [False, True])
def test_a_row_s_logits_do_not_depend_on_the_rows_beside_it(bounded: bool) -> None:
    """fbgemm quantises a whole input with one scale: Int8Output makes each row's own."""
    gen = torch.Generator().manual_seed(2)
    weight, bias = torch.randn(50, 16, generator=gen), torch.randn(50, generator=gen)
    layer = Int8Output(weight, bias, bounded=bounded)
    x = torch.rand(6, 16, generator=gen) * 2 - 1  # within [-1, 1]
    if not bounded:
        x = x * torch.tensor([0.01, 1.0, 30.0, 0.5, 4.0, 100.0]).unsqueeze(1)
    with torch.inference_mode():
        together = layer(x)
        for i in range(6):
            assert torch.equal(layer(x[i : i + 1])[0], together[i])
            assert torch.equal(layer(x[[i, i, 0]])[0], together[i])
        exact = x @ weight.t() + bias
    err = (together - exact).abs() / exact.abs().amax(1, keepdim=True)
    assert float(err.max()) < 0.05


@pytest.mark.parametrize("kind", KINDS)
def test_int8_attention_is_the_fp32_attention_for_the_same_words(kind: str) -> None:
    """Only the output layer is int8: reading the fp32 translation with int8 gives the
    same attention (to float rounding) and log-probabilities within a few hundredths."""
    model = build(kind)
    full = decode_batch(model, SOURCES, DecodeOptions())
    targets = [r.best.token_ids for r in full]
    read = forced_batch(model, SOURCES, targets, top_k=3, int8=True)
    moved = 0.0
    for a, b in zip(full, read, strict=True):
        assert a.best.token_ids == b.best.token_ids
        if a.best.attention is None:
            assert b.best.attention is None
        else:
            assert b.best.attention is not None
            np.testing.assert_allclose(a.best.attention, b.best.attention, atol=1e-6)
        delta = np.abs(np.subtract(a.best.token_logprobs, b.best.token_logprobs))
        assert delta.max() < 0.1
        moved = max(moved, float(delta.max()))
    assert moved > 0  # int8 really ran


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("beam_size", [1, 3])
def test_int8_batch_equals_single_and_fused_equals_model_step(kind: str, beam_size: int) -> None:
    model = build(kind)
    opts = DecodeOptions(beam_size=beam_size, n_best=beam_size, top_k=2, blocked_source=(0,))
    batch = decode_batch(model, SOURCES, opts, int8=True)
    slow = beam_search(model, SOURCES, opts, fast=False, int8=True)
    fp32 = decode_batch(model, SOURCES, opts)
    moved = 0.0
    for src, res, ref, full in zip(SOURCES, batch, slow, fp32, strict=True):
        alone = decode_batch(model, [src], opts, int8=True)[0]
        for a, b, c in zip(res.hypotheses, alone.hypotheses, ref.hypotheses, strict=True):
            assert_same_hypothesis(a, b)
            if beam_size > 1:  # beam_search itself: the model's own step, same int8 layer
                assert_same_hypothesis(a, c)
        if res.best.token_ids == full.best.token_ids:
            delta = np.subtract(res.best.token_logprobs, full.best.token_logprobs)
            moved = max(moved, float(np.abs(delta).max()))
    assert moved > 1e-6  # the int8 layer really scored, in decode_batch and beam_search


def test_int8_is_refused_for_a_model_off_the_cpu() -> None:
    model = tiny_model("additive").to("meta")
    with pytest.raises(ValueError, match="CPU only"):
        int8_output(model)
