"""Tests for greedy, beam and forced decoding (tiny seeded models, CPU)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch

from attnviz.model.attention import ATTENTIONS
from attnviz.model.config import DECODER_STYLES, ModelConfig
from attnviz.model.decoding import (
    DecodeOptions,
    DecodeResult,
    Hypothesis,
    beam_search,
    decode,
    decode_batch,
    forced,
    forced_batch,
    greedy_batch,
    greedy_search,
)
from attnviz.model.factory import NMTModel
from attnviz.model.seq2seq import Seq2Seq
from tests.model.test_transformer import tiny as tiny_transformer

torch.set_num_threads(1)

PAD, BOS, EOS = 0, 2, 3
SRC_VOCAB, TGT_VOCAB = 40, 44
# An eos bias that makes the random models stop at varied lengths: some sentences finish
# after a few tokens, others run to max_length (so both cases are covered).
EOS_BIAS = 0.4


def tiny_model(
    attention: str = "additive", style: str = "bahdanau", eos_bias: float = EOS_BIAS, **extra: Any
) -> Seq2Seq:
    torch.manual_seed(0)
    model = Seq2Seq(
        ModelConfig(
            src_vocab_size=SRC_VOCAB,
            tgt_vocab_size=TGT_VOCAB,
            emb_dim=16,
            hidden_dim=16,
            attention=attention,
            decoder_style=style,
            attention_heads=4,
            dropout=0.1,
            **extra,
        )
    )
    with torch.no_grad():
        model.decoder.output.bias[EOS] += eos_bias
    return model.eval()


def sources(lengths: tuple[int, ...] = (3, 5, 8, 2, 11, 6), seed: int = 3) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [[*torch.randint(4, SRC_VOCAB, (n,), generator=gen).tolist(), EOS] for n in lengths]


SOURCES = sources()
MECHANISMS = ["additive", "general", "multihead", "local_m", "none"]


@pytest.fixture(scope="module")
def model() -> Seq2Seq:
    return tiny_model()


def assert_same_hypothesis(a: Hypothesis, b: Hypothesis, atol: float = 1e-5) -> None:
    assert a.token_ids == b.token_ids
    np.testing.assert_allclose(a.token_logprobs, b.token_logprobs, atol=atol)
    assert a.score == pytest.approx(b.score, abs=atol * max(1, len(a.token_ids)))
    assert a.finished == b.finished
    if a.attention is None or b.attention is None:
        assert a.attention is None and b.attention is None
    else:
        assert a.attention.shape == b.attention.shape
        np.testing.assert_allclose(a.attention, b.attention, atol=atol)


def check_attention(hyp: Hypothesis, src_len: int, heads: int) -> None:
    assert hyp.attention is not None
    assert hyp.attention.shape == (len(hyp.token_ids), heads, src_len)
    np.testing.assert_allclose(hyp.attention.sum(-1), 1.0, atol=1e-5)
    assert (hyp.attention >= 0).all()


# -- options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beam_size": 0}, "beam_size must be >= 1"),
        ({"beam_size": 2.0}, "beam_size must be an integer"),
        ({"beam_size": True}, "beam_size must be an integer"),
        ({"n_best": 3, "beam_size": 2}, "cannot exceed beam_size"),
        ({"max_length": 0}, "max_length must be >= 1"),
        ({"top_k": -1}, "top_k must be >= 0"),
        ({"length_penalty": -0.5}, "length_penalty must be >= 0"),
        ({"length_penalty": float("nan")}, "finite"),
        ({"forced_prefix": "abc"}, "forced_prefix must be a sequence"),
        ({"forced_prefix": (5, -1)}, r"forced_prefix\[1\] must be >= 0"),
        ({"blocked_source": (1.5,)}, r"blocked_source\[0\] must be an integer"),
        ({"record_beam": 1}, "record_beam must be a bool"),
    ],
)
def test_options_are_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DecodeOptions(**kwargs)


def test_options_accept_lists_and_default_max_length() -> None:
    opts = DecodeOptions(forced_prefix=[5, 6], blocked_source=[0])  # type: ignore[arg-type]
    assert opts.forced_prefix == (5, 6) and opts.blocked_source == (0,)
    assert DecodeOptions().max_length_for(4) == 18
    assert DecodeOptions().max_length_for(500) == 256
    assert DecodeOptions(max_length=7).max_length_for(500) == 7


def test_bad_inputs_are_rejected(model: Seq2Seq) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        decode_batch(model, [])
    with pytest.raises(ValueError, match="source 0 is empty"):
        decode(model, [])
    with pytest.raises(ValueError, match="outside the source vocabulary"):
        decode(model, [5, SRC_VOCAB, EOS])
    with pytest.raises(ValueError, match="forced_prefix cannot contain the eos"):
        decode(model, SOURCES[0], DecodeOptions(forced_prefix=(5, EOS)))
    with pytest.raises(ValueError, match="outside the target vocabulary"):
        decode(model, SOURCES[0], DecodeOptions(forced_prefix=(TGT_VOCAB,)))
    with pytest.raises(ValueError, match="room for at least one free token"):
        decode(model, SOURCES[0], DecodeOptions(forced_prefix=(5, 6), max_length=2))
    with pytest.raises(ValueError, match="target 0 is empty"):
        forced(model, SOURCES[0], [])


# -- greedy, beam, batch ---------------------------------------------------------------------


@pytest.mark.parametrize(("attention", "style"), [("additive", "bahdanau"), ("general", "luong")])
def test_results_have_the_documented_shape(attention: str, style: str) -> None:
    model = tiny_model(attention, style)
    for opts in (DecodeOptions(), DecodeOptions(beam_size=3, n_best=3)):
        for src, res in zip(SOURCES, decode_batch(model, SOURCES, opts), strict=True):
            assert isinstance(res, DecodeResult)
            assert res.source_ids == tuple(src)
            assert 1 <= len(res.hypotheses) <= opts.n_best
            for hyp in res.hypotheses:
                assert 1 <= len(hyp.token_ids) <= opts.max_length_for(len(src))
                assert hyp.finished == (hyp.token_ids[-1] == EOS)
                assert EOS not in hyp.token_ids[:-1]
                assert len(hyp.token_logprobs) == len(hyp.token_ids)
                assert hyp.score == pytest.approx(sum(hyp.token_logprobs), abs=1e-4)
                check_attention(hyp, len(src), 1)
    if attention == "additive":  # this random model finishes some, runs others to the limit
        assert {r.best.finished for r in decode_batch(model, SOURCES)} == {True, False}


@pytest.mark.parametrize("attention", MECHANISMS)
@pytest.mark.parametrize("style", DECODER_STYLES)
def test_greedy_equals_beam_search_with_one_beam(attention: str, style: str) -> None:
    model = tiny_model(attention, style)
    opts = DecodeOptions(top_k=3)
    greedy = greedy_search(model, SOURCES, opts)
    beam = beam_search(model, SOURCES, opts)
    for g, b in zip(greedy, beam, strict=True):
        assert len(b.hypotheses) == 1
        assert_same_hypothesis(g.best, b.best)
        assert g.best.top_k_ids is not None and b.best.top_k_ids is not None
        np.testing.assert_array_equal(g.best.top_k_ids, b.best.top_k_ids)


@pytest.mark.parametrize("attention", MECHANISMS)
@pytest.mark.parametrize("beam_size", [1, 4])
def test_batch_equals_single(attention: str, beam_size: int) -> None:
    model = tiny_model(attention)
    opts = DecodeOptions(beam_size=beam_size, n_best=beam_size, top_k=2)
    batch = decode_batch(model, SOURCES, opts)
    for src, res in zip(SOURCES, batch, strict=True):
        alone = decode(model, src, opts)
        assert len(alone.hypotheses) == len(res.hypotheses)
        for a, b in zip(alone.hypotheses, res.hypotheses, strict=True):
            assert_same_hypothesis(a, b, atol=1e-5)


def test_dropping_finished_rows_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import attnviz.model.decoding as decoding

    srcs = sources(tuple(range(1, 21)), seed=5)  # 20 sentences: finished rows get dropped
    model = tiny_model()
    for attention in ("additive", "local_m"):  # fused and model step
        model = tiny_model(attention)
        opts = DecodeOptions(top_k=2, blocked_source=(0,))
        compacted = decode_batch(model, srcs, opts)
        targets = [r.best.token_ids for r in compacted]
        read = forced_batch(model, srcs, targets, top_k=2, blocked_source=(0,))
        monkeypatch.setattr(decoding, "_COMPACT_SHARE", 2.0)  # never drop rows
        full = decode_batch(model, srcs, opts)
        monkeypatch.undo()
        lengths = {len(r.best.token_ids) for r in full}
        assert len(lengths) > 3  # rows really finish at different steps
        for a, b, f, src in zip(compacted, full, read, srcs, strict=True):
            assert_same_hypothesis(a.best, b.best)
            assert_same_hypothesis(a.best, f.best)
            assert a.best.top_k_ids is not None and b.best.top_k_ids is not None
            np.testing.assert_array_equal(a.best.top_k_ids, b.best.top_k_ids)
            assert_same_hypothesis(a.best, decode(model, src, opts).best)


BEAM_RUNS = {
    "tree": DecodeOptions(
        beam_size=3, n_best=3, top_k=2, blocked_source=(0,), forced_prefix=(5,), record_beam=True
    ),
    "plain": DecodeOptions(beam_size=2),  # no top-k, no tree, one hypothesis
}


@pytest.mark.parametrize("run", sorted(BEAM_RUNS))
@pytest.mark.parametrize("kind", ["additive", "local_m", "none", "transformer"])
def test_beam_dropping_finished_sentences_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, kind: str, run: str
) -> None:
    """Beam search drops finished sentences from its batch (fused RNN step, the model's
    own step, no attention, the fused Transformer step): the hypotheses, their attention,
    top-k, the beam tree and the node paths are those of a run that keeps every sentence."""
    import attnviz.model.decoding as decoding

    model: NMTModel
    if kind == "transformer":
        model = tiny_transformer(src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB)
    else:
        model = tiny_model(kind)
    srcs = sources(tuple(range(1, 13)), seed=7)  # max lengths 12..34: they end apart
    opts = BEAM_RUNS[run]
    merges: list[int] = []
    merge = decoding._merge_segments

    def counting(recorded: Any, segments: Any, *args: Any) -> Any:
        merges.append(len(segments))
        return merge(recorded, segments, *args)

    monkeypatch.setattr(decoding, "_merge_segments", counting)
    compacted = decode_batch(model, srcs, opts)
    assert max(merges) > 1  # sentences really left the batch
    monkeypatch.setattr(decoding, "_COMPACT_SHARE", 2.0)  # never drop sentences
    merges.clear()
    full = decode_batch(model, srcs, opts)
    assert set(merges) == {1}
    for a, b, src in zip(compacted, full, srcs, strict=True):
        assert len(a.hypotheses) == len(b.hypotheses) == opts.n_best
        for x, y in zip(a.hypotheses, b.hypotheses, strict=True):
            assert_same_hypothesis(x, y)
            assert x.node_ids == y.node_ids
            assert (x.top_k_ids is None) == (opts.top_k == 0) == (y.top_k_ids is None)
            if x.top_k_ids is not None and y.top_k_ids is not None:
                np.testing.assert_array_equal(x.top_k_ids, y.top_k_ids)
                np.testing.assert_allclose(x.top_k_probs, y.top_k_probs, atol=1e-6)  # type: ignore[arg-type]
        assert (a.beam is None) == (not opts.record_beam) == (b.beam is None)
        if a.beam is not None and b.beam is not None:
            assert len(a.beam.nodes) == len(b.beam.nodes)
            for m, n in zip(a.beam.nodes, b.beam.nodes, strict=True):
                assert (m.id, m.step, m.token_id, m.parent, m.kept, m.finished) == (
                    n.id, n.step, n.token_id, n.parent, n.kept, n.finished
                )  # fmt: skip
                assert m.score == pytest.approx(n.score, abs=1e-4)
        assert_same_hypothesis(a.best, decode(model, src, opts).best)


@pytest.mark.parametrize("attention", ["additive", "multihead"])
def test_nbest_is_sorted_distinct_and_each_has_its_own_attention(attention: str) -> None:
    model = tiny_model(attention)
    heads = 4 if attention == "multihead" else 1
    opts = DecodeOptions(beam_size=5, n_best=5, top_k=3)
    for src, res in zip(SOURCES, decode_batch(model, SOURCES, opts), strict=True):
        hyps = res.hypotheses
        assert len(hyps) == 5
        norm = [h.norm_score for h in hyps]
        assert norm == sorted(norm, reverse=True)  # type: ignore[type-var]
        assert len({h.token_ids for h in hyps}) == len(hyps)
        for h in hyps:
            check_attention(h, len(src), heads)
            assert h.norm_score == pytest.approx(h.score / len(h.token_ids), rel=1e-5)


def test_length_penalty_zero_ranks_by_log_probability(model: Seq2Seq) -> None:
    opts = DecodeOptions(beam_size=4, n_best=4, length_penalty=0.0)
    for res in decode_batch(model, SOURCES, opts):
        scores = [h.score for h in res.hypotheses]
        assert scores == sorted(scores, reverse=True)
        assert all(h.norm_score == h.score for h in res.hypotheses)


def test_max_length_is_respected(model: Seq2Seq) -> None:
    for beam_size in (1, 3):
        for res in decode_batch(model, SOURCES, DecodeOptions(beam_size=beam_size, max_length=2)):
            for h in res.hypotheses:
                assert len(h.token_ids) <= 2
                assert h.finished == (h.token_ids[-1] == EOS)


def test_greedy_batch_keeps_its_contract(model: Seq2Seq) -> None:
    results = greedy_batch(model, SOURCES, max_length=9)
    alone_results = greedy_search(model, SOURCES, DecodeOptions(max_length=9))
    for res, alone in zip(results, alone_results, strict=True):
        assert len(res.hypotheses) == 1
        assert_same_hypothesis(res.best, alone.best)


@pytest.mark.parametrize(
    ("attention", "style"), list(itertools.product(sorted(ATTENTIONS), DECODER_STYLES))
)
def test_fused_step_matches_the_model_step(attention: str, style: str) -> None:
    model = tiny_model(attention, style)
    opts = DecodeOptions(beam_size=3, n_best=3, top_k=2, blocked_source=(1,))
    fast = beam_search(model, SOURCES[:3], opts, fast=True)
    slow = beam_search(model, SOURCES[:3], opts, fast=False)
    for a, b in zip(fast, slow, strict=True):
        for ha, hb in zip(a.hypotheses, b.hypotheses, strict=True):
            assert_same_hypothesis(ha, hb, atol=1e-5)


@pytest.mark.parametrize("style", DECODER_STYLES)
def test_fused_step_without_token_table(style: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import attnviz.model.decoding as decoding

    model = tiny_model("additive", style)
    opts = DecodeOptions(beam_size=2, n_best=2, top_k=2)
    with_table = decode_batch(model, SOURCES, opts)
    monkeypatch.setattr(decoding, "_TABLE_BYTES_MAX", 0)  # too big: multiply per step
    without = decode_batch(model, SOURCES, opts)
    assert decoding._fused_weights(model, 2 * model.config.hidden_dim).table is None
    slow = beam_search(model, SOURCES, opts, fast=False)
    for a, b, c in zip(with_table, without, slow, strict=True):
        for ha, hb, hc in zip(a.hypotheses, b.hypotheses, c.hypotheses, strict=True):
            assert_same_hypothesis(ha, hb)
            assert_same_hypothesis(ha, hc)


def test_token_table_follows_weight_changes() -> None:
    model = tiny_model()
    before = decode(model, SOURCES[1], DecodeOptions(top_k=2)).best
    with torch.no_grad():  # in place, as an optimizer step does
        model.decoder.embedding.weight.mul_(1.5)
        model.decoder.cell.bias_ih.add_(0.3)
    after = decode(model, SOURCES[1], DecodeOptions(top_k=2)).best
    reference = greedy_search(model, [SOURCES[1]], DecodeOptions(top_k=2), fast=False)[0].best
    assert_same_hypothesis(after, reference)
    assert not np.allclose(before.token_logprobs[0], after.token_logprobs[0])
    model.load_state_dict(tiny_model().state_dict())  # back to the original weights
    assert_same_hypothesis(decode(model, SOURCES[1], DecodeOptions(top_k=2)).best, before)


def test_training_mode_model_uses_its_own_step() -> None:
    model = tiny_model().train()
    model.decoder.dropout.p = 0.0
    model.encoder.dropout.p = 0.0
    res = decode(model, SOURCES[1])
    model.eval()
    assert_same_hypothesis(res.best, decode(model, SOURCES[1]).best)


# -- forced decoding and prefixes ------------------------------------------------------------


@pytest.mark.parametrize("attention", MECHANISMS)
def test_forced_decoding_of_greedy_output_reproduces_its_probabilities(attention: str) -> None:
    model = tiny_model(attention, "luong" if attention == "general" else "bahdanau")
    greedy = decode_batch(model, SOURCES, DecodeOptions(top_k=3))
    targets = [r.best.token_ids for r in greedy]
    read = forced_batch(model, SOURCES, targets, top_k=3)
    for g, f in zip(greedy, read, strict=True):
        assert_same_hypothesis(g.best, f.best)
        assert f.best.forced_steps == len(f.best.token_ids)
        assert f.best.top_k_probs is not None and g.best.top_k_probs is not None
        np.testing.assert_allclose(f.best.top_k_probs, g.best.top_k_probs, atol=1e-5)
    alone = forced(model, SOURCES[2], targets[2])
    assert_same_hypothesis(alone.best, read[2].best)


def test_forced_decoding_of_a_beam_hypothesis(model: Seq2Seq) -> None:
    res = decode(model, SOURCES[4], DecodeOptions(beam_size=4, n_best=4))
    for hyp in res.hypotheses:
        read = forced(model, SOURCES[4], hyp.token_ids).best
        assert_same_hypothesis(hyp, read)


def test_forced_reads_any_target(model: Seq2Seq) -> None:
    target = [7, 7, 9, EOS, 12]  # eos in the middle is read like any token
    read = forced(model, SOURCES[0], target).best
    assert read.token_ids == tuple(target)
    assert all(lp <= 0 for lp in read.token_logprobs)
    check_attention(read, len(SOURCES[0]), 1)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_forced_prefix_then_free_decoding(model: Seq2Seq, beam_size: int) -> None:
    prefix = (11, 12, 13)
    opts = DecodeOptions(beam_size=beam_size, n_best=beam_size, forced_prefix=prefix)
    for src, res in zip(SOURCES, decode_batch(model, SOURCES, opts), strict=True):
        for hyp in res.hypotheses:
            assert hyp.token_ids[:3] == prefix
            assert hyp.forced_steps == 3
            read = forced(model, src, hyp.token_ids).best
            assert_same_hypothesis(hyp, read)
    # the continuation is the free decoding after the prefix: greedy picks the argmax
    greedy = decode(model, SOURCES[1], DecodeOptions(forced_prefix=prefix, top_k=1)).best
    assert greedy.top_k_ids is not None
    assert list(greedy.token_ids[3:]) == greedy.top_k_ids[3:, 0].tolist()


# -- blocked source positions ----------------------------------------------------------------


@pytest.mark.parametrize("attention", ["additive", "multihead", "local_p", "dot"])
@pytest.mark.parametrize("beam_size", [1, 3])
def test_blocked_positions_get_zero_weight(attention: str, beam_size: int) -> None:
    model = tiny_model(attention)
    heads = 4 if attention == "multihead" else 1
    blocked = (0, 2)
    opts = DecodeOptions(beam_size=beam_size, n_best=beam_size, blocked_source=blocked)
    srcs = [s for s in SOURCES if len(s) > 3]
    for src, res in zip(srcs, decode_batch(model, srcs, opts), strict=True):
        for hyp in res.hypotheses:
            check_attention(hyp, len(src), heads)
            assert hyp.attention is not None
            assert (hyp.attention[:, :, list(blocked)] == 0.0).all()
        read = forced(model, src, res.best.token_ids, blocked_source=blocked).best
        assert_same_hypothesis(res.best, read)


def test_blocking_changes_the_attention(model: Seq2Seq) -> None:
    free = decode(model, SOURCES[2]).best.attention
    blocked = decode(model, SOURCES[2], DecodeOptions(blocked_source=(1,))).best.attention
    assert free is not None and blocked is not None
    assert free[0, 0, 1] > 0 and blocked[0, 0, 1] == 0


def test_blocking_every_position_or_out_of_range_is_rejected(model: Seq2Seq) -> None:
    src = SOURCES[3]  # 2 words + eos
    with pytest.raises(ValueError, match="blocks every position"):
        decode(model, src, DecodeOptions(blocked_source=(0, 1, 2)))
    with pytest.raises(ValueError, match="out of range for source 0"):
        decode(model, src, DecodeOptions(blocked_source=(3,)))
    with pytest.raises(ValueError, match="blocks every position of source 3"):
        decode_batch(model, SOURCES, DecodeOptions(blocked_source=(0, 1, 2)))
    # blocking everything but the end token is allowed
    hyp = decode(model, src, DecodeOptions(blocked_source=(0, 1))).best
    assert hyp.attention is not None
    np.testing.assert_array_equal(hyp.attention[:, 0, 2], 1.0)


# -- top-k and the beam tree -------------------------------------------------------------------


def test_top_k_candidates(model: Seq2Seq) -> None:
    for opts in (DecodeOptions(top_k=5), DecodeOptions(beam_size=3, n_best=3, top_k=5)):
        for res in decode_batch(model, SOURCES, opts):
            for hyp in res.hypotheses:
                ids, probs = hyp.top_k_ids, hyp.top_k_probs
                assert ids is not None and probs is not None
                assert ids.shape == probs.shape == (len(hyp.token_ids), 5)
                assert (probs <= 1.0).all() and (probs >= 0).all()
                assert (np.diff(probs, axis=1) <= 0).all()  # best first
                assert (probs.sum(1) <= 1.0 + 1e-5).all()
                for t, tok in enumerate(hyp.token_ids):  # a chosen token's prob matches
                    row = ids[t].tolist()
                    if tok in row:
                        p = probs[t, row.index(tok)]
                        assert p == pytest.approx(np.exp(hyp.token_logprobs[t]), rel=1e-4)
        greedy = decode(model, SOURCES[0], DecodeOptions(top_k=5)).best
        assert greedy.top_k_ids is not None
        assert list(greedy.token_ids) == greedy.top_k_ids[:, 0].tolist()
    assert decode(model, SOURCES[0]).best.top_k_ids is None
    wide = decode(model, SOURCES[0], DecodeOptions(top_k=500)).best
    assert wide.top_k_probs is not None and wide.top_k_probs.shape[1] == TGT_VOCAB
    np.testing.assert_allclose(wide.top_k_probs.sum(1), 1.0, atol=1e-5)


@pytest.mark.parametrize("beam_size", [1, 2, 4])
def test_beam_tree_is_consistent(model: Seq2Seq, beam_size: int) -> None:
    opts = DecodeOptions(beam_size=beam_size, n_best=beam_size, record_beam=True)
    for res in decode_batch(model, SOURCES, opts):
        tree = res.beam
        assert tree is not None and tree.beam_size == beam_size
        nodes = tree.nodes
        root = nodes[0]
        assert root.parent is None and root.step == -1 and root.token_id == BOS
        for i, node in enumerate(nodes):
            assert node.id == i
            if node.parent is None:
                continue
            parent = nodes[node.parent]
            assert node.parent < i
            assert node.step == parent.step + 1
            assert node.score == pytest.approx(parent.score + node.logprob, abs=1e-4)
            assert parent.kept and parent.token_id != EOS  # only live hypotheses expand
            if node.finished:
                assert node.kept and node.token_id == EOS
        per_step: dict[int, int] = {}
        for node in nodes[1:]:
            per_step[node.step] = per_step.get(node.step, 0) + 1
        assert max(per_step.values()) <= 2 * beam_size
        for hyp in res.hypotheses:
            assert hyp.node_ids is not None and len(hyp.node_ids) == len(hyp.token_ids)
            assert tree.path(hyp.node_ids[-1]) == list(hyp.node_ids)
            path = [nodes[i] for i in hyp.node_ids]
            assert tuple(n.token_id for n in path) == hyp.token_ids
            assert all(n.kept for n in path)
            assert path[-1].score == pytest.approx(hyp.score, abs=1e-4)
            assert path[-1].finished == hyp.finished
        # without record_beam: no tree, same hypotheses
        plain = decode(model, res.source_ids, DecodeOptions(beam_size=beam_size, n_best=beam_size))
        assert plain.beam is None
        for a, b in zip(plain.hypotheses, res.hypotheses, strict=True):
            assert_same_hypothesis(a, b)


@pytest.mark.parametrize("kind", ["additive", "transformer"])
def test_beam_candidates_are_the_best_extensions_of_the_live_beams(kind: str) -> None:
    """Brute force: at every step the tree's candidates are exactly the 2K best (parent,
    token) extensions of the beams kept at the step before, scored by parent score plus
    the token's log-probability read by forced decoding of the parent's path (every
    target id). Beam search finds them per row first, then per sentence."""
    model: NMTModel
    if kind == "transformer":
        model = tiny_transformer(src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB)
    else:
        model = tiny_model(kind)
    beam = 3
    opts = DecodeOptions(beam_size=beam, n_best=beam, record_beam=True, max_length=7)
    for res in decode_batch(model, SOURCES[:4], opts):
        tree = res.beam
        assert tree is not None
        steps = max(n.step for n in tree.nodes)
        for step in range(steps + 1):
            parents = [
                n for n in tree.nodes
                if n.step == step - 1 and n.kept and (n.parent is None or n.token_id != EOS)
            ]  # fmt: skip
            expected = []
            for parent in parents:
                path = [tree.nodes[i].token_id for i in tree.path(parent.id)]  # root excluded
                read = forced(model, res.source_ids, [*path, EOS], top_k=TGT_VOCAB).best
                assert read.top_k_ids is not None and read.top_k_probs is not None
                for token, prob in zip(read.top_k_ids[-1], read.top_k_probs[-1], strict=True):
                    expected.append((parent.score + math.log(prob), parent.id, int(token)))
            expected.sort(reverse=True)
            got = sorted(
                ((n.score, n.parent, n.token_id) for n in tree.nodes if n.step == step),
                reverse=True,
            )
            assert len(got) == min(2 * beam, len(expected))
            assert [(p, t) for _, p, t in got] == [(p, t) for _, p, t in expected[: len(got)]]
            np.testing.assert_allclose(
                [s for s, _, _ in got], [s for s, _, _ in expected[: len(got)]], atol=1e-4
            )


# -- models without attention ----------------------------------------------------------------


def test_model_without_attention_returns_none_everywhere() -> None:
    model = tiny_model("none")
    assert not model.has_attention
    for opts in (
        DecodeOptions(top_k=2),
        DecodeOptions(beam_size=3, n_best=2, record_beam=True),
        DecodeOptions(blocked_source=(0,)),  # ignored: there is no attention to block
    ):
        for res in decode_batch(model, SOURCES, opts):
            assert all(h.attention is None for h in res.hypotheses)
    read = forced(model, SOURCES[0], [5, 6, EOS]).best
    assert read.attention is None and len(read.token_logprobs) == 3


def test_row_max_is_torch_max_with_the_first_index_on_ties() -> None:
    from attnviz.model.decoding import _row_max

    gen = torch.Generator().manual_seed(0)
    cases = [
        torch.randn(64, 500, generator=gen),
        torch.randn(1, 7, generator=gen),
        torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-1.0, -5.0, -1.0, -2.0]]),
    ]
    for scores in cases:
        with torch.inference_mode():
            values, index = _row_max(scores)
            expected = scores.max(dim=-1)
        assert torch.equal(values, expected.values) and torch.equal(index, expected.indices)
        assert index.dtype == torch.long
    assert _row_max(cases[2])[1].tolist() == [1, 0, 0]  # the first of equal maxima
    half = cases[2].to(torch.bfloat16)  # numpy has no bfloat16: torch's max instead
    assert _row_max(half)[1].tolist() == [1, 0, 0] and _row_max(half)[0].dtype == torch.bfloat16
