"""Unit tests for every registered attention mechanism (tiny, seeded)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from attnviz.model.attention import (
    ATTENTIONS,
    Attention,
    AttentionSpec,
    LocalMonotonicAttention,
    LocalPredictiveAttention,
    build_attention,
    masked_softmax,
)

torch.set_num_threads(1)

SPEC = AttentionSpec(
    query_dim=6, key_dim=12, value_dim=12, attn_dim=8, heads=2, window=1, max_positions=16
)
LENGTHS = (9, 5, 2)  # real tokens per row; src_len = 9
STEPS = (0, 3, 6)  # decoder step per row; row 2's step is past its sentence end
WEIGHTED = sorted(name for name in ATTENTIONS if name != "none")


def make(name: str, spec: AttentionSpec = SPEC, seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    return build_attention(name, spec)


def inputs(
    lengths: tuple[int, ...] = LENGTHS, seed: int = 1, spec: AttentionSpec = SPEC
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """query (batch, q), keys = values (batch, src_len, k) with garbage on padding, mask."""
    gen = torch.Generator().manual_seed(seed)
    batch, src_len = len(lengths), max(lengths)
    query = torch.randn(batch, spec.query_dim, generator=gen)
    states = torch.randn(batch, src_len, spec.key_dim, generator=gen) * 2.0
    mask = torch.arange(src_len).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    step = torch.tensor(STEPS[:batch])
    return query, states, mask, step


def run(module: Attention, lengths: tuple[int, ...] = LENGTHS) -> tuple[Tensor, Tensor | None]:
    query, states, mask, step = inputs(lengths)
    keys = module.precompute_keys(states)
    return module(query, keys, states, mask, step=step)


def window_of(module: Attention, query: Tensor, mask: Tensor, step: Tensor) -> Tensor:
    """(batch, src_len) bool: the positions a local mechanism may use (recomputed here)."""
    lengths = mask.sum(dim=1)
    d = module.spec.window
    if isinstance(module, LocalMonotonicAttention):
        center = torch.minimum(step, lengths - 1).float()
    else:
        assert isinstance(module, LocalPredictiveAttention)
        gate = torch.sigmoid(module.v_p(torch.tanh(module.W_p(query)))).squeeze(1)
        center = ((lengths - 1).float() * gate).round()
    positions = torch.arange(mask.size(1)).float()
    return (positions.unsqueeze(0) - center.unsqueeze(1)).abs() <= d


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_shapes(name: str) -> None:
    module = make(name).eval()
    context, weights = run(module)
    assert context.shape == (len(LENGTHS), SPEC.value_dim)
    assert torch.isfinite(context).all()
    if name == "none":
        assert weights is None
    else:
        assert weights is not None
        assert weights.shape == (len(LENGTHS), module.heads, max(LENGTHS))
        assert module.heads == (SPEC.heads if name == "multihead" else 1)


@pytest.mark.parametrize("name", WEIGHTED)
@pytest.mark.parametrize("training", [False, True])
def test_rows_sum_to_one_and_padding_is_exactly_zero(name: str, training: bool) -> None:
    module = make(name).train(training)
    _, weights = run(module)
    assert weights is not None
    _, _, mask, _ = inputs()
    torch.testing.assert_close(
        weights.sum(dim=-1), torch.ones(weights.shape[:2]), atol=1e-5, rtol=0
    )
    padding = (~mask).unsqueeze(1).expand_as(weights)
    assert (weights[padding] == 0).all()
    assert (weights >= 0).all()


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_gradients_reach_every_parameter(name: str) -> None:
    module = make(name).train()  # hard: straight-through Gumbel-softmax in training mode
    query, states, mask, step = inputs()
    query.requires_grad_(True)
    states.requires_grad_(True)
    torch.manual_seed(3)
    context, _ = module(query, module.precompute_keys(states), states, mask, step=step)
    direction = torch.randn(context.shape, generator=torch.Generator().manual_seed(4))
    (context * direction).sum().backward()
    for pname, param in module.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {pname}"
        assert param.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"
    assert states.grad is not None and states.grad.abs().sum() > 0
    if name != "none":
        assert query.grad is not None and query.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_deterministic_under_seed(name: str) -> None:
    results = []
    for _ in range(2):
        module = make(name, seed=7).train()
        torch.manual_seed(11)  # hard samples Gumbel noise in training mode
        results.append(run(module))
    (c1, w1), (c2, w2) = results
    assert torch.equal(c1, c2)
    assert (w1 is None and w2 is None) or (
        w1 is not None and w2 is not None and torch.equal(w1, w2)
    )


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_padding_content_is_ignored(name: str) -> None:
    """A padded row gives the same context and weights as the same sentence alone."""
    module = make(name).eval()
    query, states, mask, step = inputs()
    context, weights = module(query, module.precompute_keys(states), states, mask, step=step)
    for row, length in enumerate(LENGTHS):
        alone_states = states[row : row + 1, :length]
        alone_context, alone_weights = module(
            query[row : row + 1],
            module.precompute_keys(alone_states),
            alone_states,
            mask[row : row + 1, :length],
            step=step[row : row + 1],
        )
        torch.testing.assert_close(context[row : row + 1], alone_context, atol=1e-5, rtol=0)
        if weights is not None:
            assert alone_weights is not None
            torch.testing.assert_close(
                weights[row : row + 1, :, :length], alone_weights, atol=1e-6, rtol=0
            )


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_attend_equals_precompute_then_forward(name: str) -> None:
    module = make(name).eval()
    query, states, mask, step = inputs()
    c1, w1 = module.attend(query, states, states, mask, step=step)
    c2, w2 = module(query, module.precompute_keys(states), states, mask, step=step)
    assert torch.equal(c1, c2)
    assert (w1 is None and w2 is None) or (w1 is not None and w2 is not None)


@pytest.mark.parametrize("name", WEIGHTED)
def test_fully_blocked_row_gives_zeros_not_nan(name: str) -> None:
    module = make(name).eval()
    query, states, mask, step = inputs()
    mask = mask.clone()
    mask[1] = False
    context, weights = module(query, module.precompute_keys(states), states, mask, step=step)
    assert weights is not None
    assert torch.isfinite(weights).all() and torch.isfinite(context).all()
    assert (weights[1] == 0).all()
    torch.testing.assert_close(weights[0].sum(-1), torch.ones(module.heads), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["local_m", "local_p"])
@pytest.mark.parametrize("training", [False, True])
def test_local_weights_are_exactly_zero_outside_the_window(name: str, training: bool) -> None:
    module = make(name).train(training)
    query, states, mask, step = inputs()
    _, weights = module(query, module.precompute_keys(states), states, mask, step=step)
    assert weights is not None
    window = window_of(module, query, mask, step)  # (batch, src_len)
    assert (weights[:, 0][~window] == 0).all()
    assert (weights[:, 0][window & mask] > 0).any()
    support = weights[:, 0] > 0
    for row in range(len(LENGTHS)):
        positions = support[row].nonzero().squeeze(1)
        assert positions.max() - positions.min() <= 2 * SPEC.window
        assert positions.max() < LENGTHS[row]


def test_local_m_window_follows_the_step() -> None:
    module = make("local_m").eval()
    query, states, mask, _ = inputs()
    for t in range(12):
        step = torch.full((len(LENGTHS),), t)
        _, weights = module(query, module.precompute_keys(states), states, mask, step=step)
        assert weights is not None
        for row, length in enumerate(LENGTHS):
            center = min(t, length - 1)
            support = (weights[row, 0] > 0).nonzero().squeeze(1).tolist()
            allowed = set(
                range(max(0, center - SPEC.window), min(length, center + SPEC.window + 1))
            )
            assert set(support) <= allowed and support


@pytest.mark.parametrize("name", ["local_m", "local_p"])
def test_local_needs_a_step(name: str) -> None:
    module = make(name)
    query, states, mask, _ = inputs()
    if name == "local_m":
        with pytest.raises(ValueError, match="step"):
            module(query, module.precompute_keys(states), states, mask)
    else:  # local_p predicts its own centre and ignores the step
        module(query, module.precompute_keys(states), states, mask)


def test_hard_is_one_hot_in_eval() -> None:
    module = make("hard").eval()
    context, weights = run(module)
    assert weights is not None
    _, states, mask, _ = inputs()
    assert ((weights == 0) | (weights == 1)).all()
    assert (weights.sum(-1) == 1).all()
    index = weights[:, 0].argmax(dim=1)
    assert mask[torch.arange(len(LENGTHS)), index].all()
    torch.testing.assert_close(context, states[torch.arange(len(LENGTHS)), index])


def test_hard_is_one_hot_in_training_forward() -> None:
    module = make("hard").train()
    torch.manual_seed(0)
    _, weights = run(module)
    assert weights is not None
    rounded = weights.round()
    torch.testing.assert_close(weights, rounded, atol=1e-6, rtol=0)
    assert (rounded.sum(-1) == 1).all()


def test_hard_mix_blends_the_soft_scores_into_the_training_pass() -> None:
    """mix 0 is the plain softmax of the scores (soft ``general``), mix 1 the one-hot
    sample; in between, the blend, rows still summing to 1 and padding still 0."""
    module = make("hard").train()
    query, states, mask, _ = inputs()
    keys = module.precompute_keys(states)
    soft = masked_softmax(module.score(query, keys, None), mask)  # (batch, src_len)
    blends = {}
    for mix in (0.0, 0.25, 1.0):
        module.anneal(mix)
        torch.manual_seed(3)  # the same Gumbel sample for every mix
        _, weights = module(query, keys, states, mask)
        assert weights is not None
        blends[mix] = weights[:, 0]
        torch.testing.assert_close(weights.sum(-1), torch.ones(len(LENGTHS), 1))
        assert (weights[:, 0][~mask] == 0).all()
    torch.testing.assert_close(blends[0.0], soft)
    one_hot = blends[1.0].round()
    torch.testing.assert_close(blends[0.25], 0.25 * one_hot + 0.75 * soft)
    module.eval()  # eval ignores mix: one-hot argmax whatever the schedule left behind
    module.anneal(0.0)
    _, weights = module(query, keys, states, mask)
    assert weights is not None and ((weights == 0) | (weights == 1)).all()


def test_dot_anneals_from_scaled_scores_in_training_only() -> None:
    """anneal(0): training scores are qᵀk / sqrt(d); anneal(1): plain qᵀk; eval mode is
    plain qᵀk whatever the schedule left behind."""
    module = make("dot").train()
    query, states, mask, _ = inputs()
    keys = module.precompute_keys(states)
    plain = (keys @ query.unsqueeze(-1)).squeeze(-1)  # (batch, src_len)
    d = SPEC.query_dim
    for progress, divisor in ((0.0, d**0.5), (0.5, d**0.25), (1.0, 1.0)):
        module.anneal(progress)
        _, weights = module(query, keys, states, mask)
        assert weights is not None
        torch.testing.assert_close(weights[:, 0], masked_softmax(plain / divisor, mask))
    module.anneal(0.0)
    _, weights = module.eval()(query, keys, states, mask)
    assert weights is not None
    torch.testing.assert_close(weights[:, 0], masked_softmax(plain, mask))


def test_location_handles_short_and_long_sources() -> None:
    spec = AttentionSpec(query_dim=6, key_dim=8, value_dim=8, attn_dim=8, max_positions=4)
    module = make("location", spec).eval()
    for lengths in ((3, 2), (4, 4), (7, 5)):  # shorter than, equal to, longer than 4
        query, states, mask, _ = inputs(lengths, spec=spec)
        _, weights = module(query, states, states, mask)
        assert weights is not None
        assert weights.shape == (2, 1, max(lengths))
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 1), atol=1e-5, rtol=0)
        assert (weights[:, 0][~mask] == 0).all()


def test_location_ignores_the_keys() -> None:
    module = make("location").eval()
    query, states, mask, _ = inputs()
    _, w1 = module(query, states, states, mask)
    _, w2 = module(query, torch.randn_like(states), states, mask)
    assert w1 is not None and w2 is not None
    assert torch.equal(w1, w2)


def test_none_returns_no_weights_and_the_single_memory_vector() -> None:
    module = make("none")
    assert list(module.parameters()) == []
    summary = torch.randn(3, SPEC.value_dim)
    memory = summary.unsqueeze(1)  # (batch, 1, value_dim): how Seq2Seq calls it
    context, weights = module(
        torch.randn(3, SPEC.query_dim), memory, memory, torch.ones(3, 1, dtype=torch.bool)
    )
    assert weights is None
    assert torch.equal(context, summary)


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError) as excinfo:
        build_attention("bogus", SPEC)
    message = str(excinfo.value)
    assert "'bogus'" in message
    for name in ATTENTIONS:
        assert name in message


def test_masked_softmax_exact_zeros_and_empty_rows() -> None:
    scores = torch.tensor([[1.0, 2.0, 3.0], [5.0, -1.0, 0.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    weights = masked_softmax(scores, mask)
    assert weights[0, 2] == 0 and weights[1, 1] == 0 and weights[1, 2] == 0
    assert weights[1, 0] == 1
    assert (weights[2] == 0).all()
    expected = torch.cat([torch.softmax(scores[0, :2], dim=0), torch.zeros(1)])
    torch.testing.assert_close(weights[0], expected)


def test_multihead_heads_differ() -> None:
    module = make("multihead").eval()
    _, weights = run(module)
    assert weights is not None and weights.shape[1] == SPEC.heads
    assert not torch.allclose(weights[:, 0], weights[:, 1])


def test_dot_is_parameter_free_and_sums_the_two_directions() -> None:
    dot = make("dot")
    assert list(dot.parameters()) == []
    torch.manual_seed(1)
    query, states = torch.randn(2, 6), torch.randn(2, 4, 12)
    keys = dot.precompute_keys(states)
    expected = torch.einsum("bd,bsd->bs", query, states[..., :6] + states[..., 6:])
    torch.testing.assert_close(dot.score(query, keys, None), expected)
    same = make("dot", AttentionSpec(query_dim=6, key_dim=6, value_dim=6, attn_dim=8))
    assert torch.equal(same.precompute_keys(states[..., :6]), states[..., :6])
    with pytest.raises(ValueError, match="use 'general'"):
        make("dot", AttentionSpec(query_dim=6, key_dim=8, value_dim=8, attn_dim=8))


def test_cosine_sharpness_is_learned() -> None:
    cos = make("cosine")
    query, states = torch.randn(2, 6), torch.randn(2, 4, 12)
    scores = cos.score(query, cos.precompute_keys(states), None)
    assert scores.abs().max() <= 10.0 + 1e-4  # beta (10 at the start) times a cosine
    scores.sum().backward()
    beta = dict(cos.named_parameters())["log_beta"]
    assert beta.grad is not None and beta.grad.abs() > 0
