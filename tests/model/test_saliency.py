"""Tests for attnviz.model.saliency: a linear model worked by hand, IG completeness on a real
tiny Seq2Seq, model state left untouched, row normalisation and rank correlations."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from attnviz.model.alignment import head_mean
from attnviz.model.config import ModelConfig
from attnviz.model.decoding import forced
from attnviz.model.saliency import (
    METHODS,
    mean_rank_correlation,
    normalise_rows,
    rank_correlation,
    saliency,
)
from attnviz.model.seq2seq import Seq2Seq

torch.set_num_threads(1)

PAD, BOS, EOS = 0, 2, 3
SRC_VOCAB, TGT_VOCAB = 12, 10


# -- a model worked by hand ----------------------------------------------------------------


class LinearBag(nn.Module):
    """logits_t = (sum_s E[x_s]) @ W + U[tgt_in_t]: log p(y_t) is a log-softmax of a linear
    function of the summed source embeddings, so its gradient is known in closed form:
    d log p(y) / d e_s = W[:, y] - W @ softmax(logits) (the same for every s)."""

    def __init__(self, emb: np.ndarray, w: np.ndarray, u: np.ndarray) -> None:
        super().__init__()
        self.config = SimpleNamespace(bos_id=BOS, tgt_vocab_size=w.shape[1])
        self.embedding = nn.Embedding(emb.shape[0], emb.shape[1])
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float32))  # (emb, vocab)
        self.u = nn.Parameter(torch.tensor(u, dtype=torch.float32))  # (vocab, vocab)
        with torch.no_grad():
            self.embedding.weight.copy_(torch.tensor(emb, dtype=torch.float32))

    @property
    def source_embedding(self) -> nn.Embedding:
        return self.embedding

    def forward(self, src: Tensor, src_mask: Tensor, tgt_in: Tensor) -> tuple[Tensor, None]:
        bag = (self.embedding(src) * src_mask[..., None]).sum(dim=1)  # (batch, emb)
        logits = (bag @ self.w)[:, None, :] + self.u[tgt_in]  # (batch, tgt_len, vocab)
        return logits, None


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max())
    return z / z.sum()


def _expected(
    emb: np.ndarray,
    w: np.ndarray,
    u: np.ndarray,
    src: list[int],
    tgt: list[int],
    alphas: list[float],
) -> np.ndarray:
    """sum_emb e_s * mean_k (W[:, y_t] - W softmax(alpha_k * bag @ W + U[prev_t]))."""
    e = emb[src]  # (src_len, emb)
    prev = [BOS, *tgt[:-1]]
    out = np.zeros((len(tgt), len(src)))
    for t, y in enumerate(tgt):
        grads = [w[:, y] - w @ _softmax(a * e.sum(0) @ w + u[prev[t]]) for a in alphas]
        out[t] = e @ np.mean(grads, axis=0)  # (src_len,)
    return out


def _random_linear_bag(seed: int = 1) -> tuple[LinearBag, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(SRC_VOCAB, 4))
    w = rng.normal(size=(4, TGT_VOCAB))
    u = rng.normal(size=(TGT_VOCAB, TGT_VOCAB))
    return LinearBag(emb, w, u), emb, w, u


def test_input_x_gradient_matches_closed_form() -> None:
    model, emb, w, u = _random_linear_bag()
    src, tgt = [5, 7, 4, 3], [6, 8, 9, 3, 1]
    got = saliency(model, src, tgt)
    assert got.shape == (5, 4) and got.dtype == np.float64
    np.testing.assert_allclose(got, _expected(emb, w, u, src, tgt, [1.0]), atol=1e-5)


def test_integrated_gradients_matches_closed_form_midpoints() -> None:
    model, emb, w, u = _random_linear_bag(seed=2)
    src, tgt = [4, 9, 3], [7, 5, 3]
    got = saliency(model, src, tgt, method="integrated_gradients", steps=8)
    alphas = [(k + 0.5) / 8 for k in range(8)]
    np.testing.assert_allclose(got, _expected(emb, w, u, src, tgt, alphas), atol=1e-5)


def test_signs_follow_the_direction_of_the_embedding() -> None:
    # Only W[:, 1] = (1, 0) is nonzero: target token 1 goes up with the first coordinate.
    # Source 4 = (2, 0) pushes it up, 5 = (-1, 0) pushes it down, 6 = (0, 5) is orthogonal.
    emb = np.zeros((8, 2))
    emb[4], emb[5], emb[6] = (2.0, 0.0), (-1.0, 0.0), (0.0, 5.0)
    w = np.zeros((2, 4))
    w[:, 1] = (1.0, 0.0)
    model = LinearBag(emb, w, np.zeros((4, 4)))
    # bag = (1, 5), logits = (0, 1, 0, 0), p1 = e / (e + 3); the gradient is (1 - p1, 0)
    p1 = math.e / (math.e + 3)
    got = saliency(model, [4, 5, 6], [1])
    np.testing.assert_allclose(got, [[2 * (1 - p1), -(1 - p1), 0.0]], atol=1e-6)
    assert got[0, 0] > 0 > got[0, 1]


def test_unknown_method_lists_the_valid_ones() -> None:
    model, *_ = _random_linear_bag()
    with pytest.raises(ValueError, match="unknown saliency method 'gradcam'") as info:
        saliency(model, [4], [5], method="gradcam")
    for name in METHODS:
        assert name in str(info.value)
    assert set(METHODS) == {"input_x_gradient", "integrated_gradients"}


@pytest.mark.parametrize(
    ("src", "tgt", "steps", "message"),
    [
        ([], [5], 4, "source is empty"),
        ([4], [], 4, "target is empty"),
        ([SRC_VOCAB], [5], 4, "outside the source vocabulary"),
        ([4], [TGT_VOCAB], 4, "outside the target vocabulary"),
        ([4], [5], 0, "steps must be a positive integer"),
    ],
)
def test_bad_input_is_a_value_error(
    src: list[int], tgt: list[int], steps: int, message: str
) -> None:
    model, *_ = _random_linear_bag()
    with pytest.raises(ValueError, match=message):
        saliency(model, src, tgt, method="integrated_gradients", steps=steps)


def test_a_model_without_source_embedding_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="source_embedding"):
        saliency(nn.Linear(2, 2), [4], [5])


# -- a real tiny Seq2Seq -------------------------------------------------------------------


def tiny_seq2seq(attention: str = "additive", **extra: Any) -> Seq2Seq:
    torch.manual_seed(0)
    config = ModelConfig(
        src_vocab_size=SRC_VOCAB,
        tgt_vocab_size=TGT_VOCAB,
        emb_dim=8,
        hidden_dim=8,
        attention=attention,
        attention_heads=2,
        dropout=0.0,
        **extra,
    )
    model = Seq2Seq(config)
    with torch.no_grad():  # larger embeddings make the attributions far from zero
        model.source_embedding.weight.mul_(3.0)
    return model.eval()


def _target_logprobs(model: nn.Module, src: list[int], tgt: list[int]) -> np.ndarray:
    """log p(tgt_t | src, tgt_<t) by plain teacher forcing, (tgt_len,)."""
    with torch.no_grad():
        logits, _ = model(
            torch.tensor([src]),
            torch.ones(1, len(src), dtype=torch.bool),
            torch.tensor([[BOS, *tgt[:-1]]]),
        )
        logprobs = torch.log_softmax(logits[0], dim=-1)  # (tgt_len, vocab)
    return logprobs[torch.arange(len(tgt)), torch.tensor(tgt)].double().numpy()


def test_integrated_gradients_completeness_on_seq2seq() -> None:
    model = tiny_seq2seq()
    with torch.no_grad():  # sharper weights: log p(y) far from linear in the embeddings
        for p in model.parameters():
            p.mul_(3.0)
    src, tgt = [5, 9, 4, 7, EOS], [6, 4, 8, EOS]
    baseline = copy.deepcopy(model)
    with torch.no_grad():
        baseline.source_embedding.weight.zero_()  # the zero-embedding baseline
    expected = _target_logprobs(model, src, tgt) - _target_logprobs(baseline, src, tgt)
    assert np.abs(expected).min() > 0.15  # the check below is not trivially met
    fine = saliency(model, src, tgt, method="integrated_gradients", steps=64)
    assert fine.shape == (len(tgt), len(src))
    np.testing.assert_allclose(fine.sum(axis=1), expected, rtol=0.02, atol=1e-3)
    # the Riemann sum converges: 4 points are further off than 64
    coarse = saliency(model, src, tgt, method="integrated_gradients", steps=4)
    coarse_error = np.abs(coarse.sum(axis=1) - expected).max()
    assert coarse_error > 3 * np.abs(fine.sum(axis=1) - expected).max()
    # input x gradient is a one-point (alpha = 1) estimate: not complete here
    single = saliency(model, src, tgt)
    assert np.abs(single.sum(axis=1) - expected).max() > 0.05


@pytest.mark.parametrize("attention", ["additive", "multihead"])
@pytest.mark.parametrize("method", ["input_x_gradient", "integrated_gradients"])
def test_seq2seq_shapes_and_model_left_untouched(attention: str, method: str) -> None:
    extra = {"rnn_type": "lstm"} if attention == "multihead" else {}  # LSTM encoder too
    model = tiny_seq2seq(attention, **extra)
    model.train()
    model.decoder.attention.eval()  # a submodule in another mode keeps its own mode
    src, tgt = [4, 5, 6, EOS], [7, 8, 9, 4, EOS]
    got = saliency(model, src, tgt, method=method, steps=4)
    assert got.shape == (len(tgt), len(src))
    assert got.dtype == np.float64 and np.isfinite(got).all()
    assert np.abs(got).sum() > 0
    assert all(p.grad is None for p in model.parameters())
    assert model.training and model.encoder.training
    assert not model.decoder.attention.training
    with torch.inference_mode():
        again = saliency(model, src, tgt, method=method, steps=4)
    np.testing.assert_allclose(again, got, rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        np.testing.assert_allclose(saliency(model, src, tgt, method=method, steps=4), got)
    assert all(p.grad is None for p in model.parameters())


def test_dropout_does_not_make_it_random() -> None:
    torch.manual_seed(0)
    config = ModelConfig(SRC_VOCAB, TGT_VOCAB, emb_dim=8, hidden_dim=8, dropout=0.5)
    model = Seq2Seq(config).train()  # runs in eval mode inside, so dropout is off
    first = saliency(model, [4, 5, EOS], [6, EOS])
    second = saliency(model, [4, 5, EOS], [6, EOS])
    np.testing.assert_array_equal(first, second)
    assert model.training


def test_lines_up_with_forced_attention() -> None:
    model = tiny_seq2seq()
    src, tgt = [4, 5, 6, 7, EOS], [8, 9, 4, EOS]
    attention = forced(model, src, tgt).best.attention  # (tgt_len, heads, src_len)
    assert attention is not None
    sal = saliency(model, src, tgt)
    rho = rank_correlation(head_mean(attention), sal)
    assert rho.shape == (len(tgt),)
    assert np.all((rho >= -1 - 1e-9) & (rho <= 1 + 1e-9))
    assert -1.0 <= mean_rank_correlation(rho) <= 1.0


# -- normalise_rows, rank_correlation ------------------------------------------------------


def test_normalise_rows_sums_to_one_and_keeps_zero_rows() -> None:
    m = np.array([[1.0, -3.0, 0.0], [0.0, 0.0, 0.0], [-2.0, -2.0, 4.0]])
    got = normalise_rows(m)
    np.testing.assert_allclose(got, [[0.25, 0.75, 0.0], [0.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
    assert (got >= 0).all()


def test_rank_correlation_perfect_reversed_and_constant() -> None:
    att = np.array(
        [
            [0.1, 0.2, 0.7],  # saliency -3x: same ranks of |.|
            [0.5, 0.3, 0.2],  # saliency reversed
            [0.2, 0.3, 0.5],  # saliency row all zero: constant
            [1 / 3, 1 / 3, 1 / 3],  # attention constant
        ]
    )
    sal = np.array(
        [
            [-0.3, -0.6, -2.1],
            [0.1, 0.4, -0.9],
            [0.0, 0.0, 0.0],
            [0.1, 0.2, 0.3],
        ]
    )
    rho = rank_correlation(att, sal)
    np.testing.assert_allclose(rho[:2], [1.0, -1.0])
    assert np.isnan(rho[2]) and np.isnan(rho[3])
    assert mean_rank_correlation(rho) == pytest.approx(0.0)
    assert mean_rank_correlation(rho[:1]) == pytest.approx(1.0)


def test_rank_correlation_ties_use_average_ranks() -> None:
    # attention ranks (1.5, 1.5, 3), |saliency| ranks (1, 2, 3): Spearman = sqrt(3)/2
    rho = rank_correlation(np.array([[0.2, 0.2, 0.6]]), np.array([[1.0, -2.0, 3.0]]))
    assert rho[0] == pytest.approx(math.sqrt(3) / 2)


def test_rank_correlation_shape_mismatch_names_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 4\)"):
        rank_correlation(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"\(2, 2, 3\)"):  # heads must be averaged first
        rank_correlation(np.zeros((2, 2, 3)), np.zeros((2, 2, 3)))


def test_mean_rank_correlation_without_values_is_nan() -> None:
    assert math.isnan(mean_rank_correlation([math.nan, math.nan]))
    assert math.isnan(mean_rank_correlation([]))
    assert mean_rank_correlation([0.5, math.nan, -0.1]) == pytest.approx(0.2)
