"""The lexical shortlist: built from pairs by Dice coefficient, stored without pickle, and
decoding with it scores the model's own distribution renormalised over the shortlist."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save

from attnviz.model.decoding import DecodeOptions, beam_search, decode_batch, forced_batch
from attnviz.model.factory import NMTModel
from attnviz.model.shortlist import (
    SHORTLIST,
    Shortlist,
    ShortlistError,
    build_shortlist,
    load_shortlist,
)
from tests.model.test_decoding import (
    BEAM_RUNS,
    EOS,
    SRC_VOCAB,
    TGT_VOCAB,
    assert_same_hypothesis,
    sources,
    tiny_model,
)
from tests.model.test_transformer import tiny as tiny_transformer

SPECIAL = (0, 1, 2, 3)


def model_of(kind: str) -> NMTModel:
    if kind == "transformer":
        return tiny_transformer(src_vocab_size=SRC_VOCAB, tgt_vocab_size=TGT_VOCAB)
    return tiny_model(kind)


def random_shortlist() -> Shortlist:
    """Built from 60 random pairs, two partners a source id: sentences' shortlists differ."""
    gen = torch.Generator().manual_seed(4)
    pairs = [
        (torch.randint(4, SRC_VOCAB, (6,), generator=gen).tolist(),
         torch.randint(4, TGT_VOCAB, (5,), generator=gen).tolist())
        for _ in range(60)
    ]  # fmt: skip
    return build_shortlist(pairs, SRC_VOCAB, TGT_VOCAB, SPECIAL, vocab="v", per_source=2, common=2)


def fixed(allowed: list[int]) -> Shortlist:
    """A shortlist that allows exactly ``allowed`` whatever the source."""
    return Shortlist(torch.full((SRC_VOCAB, 1), -1), torch.tensor(sorted(allowed)), "v", {})


def test_build_keeps_each_source_words_strongest_partners_and_the_frequent_words() -> None:
    # source 5 is in 10 pairs, always with target 10; target 20 is in all 30 pairs (Dice
    # with 5: 2*10/(10+30) = 0.5); target 13 once with 5 (2/11); source 6 has one partner
    pairs = [([5, 7], [10, 20] + ([13] if n == 0 else [])) for n in range(10)]
    pairs += [([6], [12, 20])] + [([7], [20, 21]) for _ in range(19)]
    sl = build_shortlist(
        pairs, 8, 25, SPECIAL, vocab="v", per_source=2, common=1, info={"data": "x"}
    )
    assert sl.per_source.shape == (8, 2)
    assert set(sl.per_source[5].tolist()) == {10, 20}
    assert sl.per_source[6].tolist()[0] in (12, 20) and set(sl.per_source[6].tolist()) == {12, 20}
    assert sl.per_source[0].tolist() == [-1, -1]  # never seen: no partners
    assert sl.common.tolist() == [0, 1, 2, 3, 20]
    assert sl.info == {"per_source": 2, "common": 1, "pairs": 30, "data": "x"}
    ids = sl.ids_for([[5], [0]], extra=[24])
    assert ids.tolist() == [0, 1, 2, 3, 10, 20, 24]  # sorted, unique, no -1
    rows = sl.allowed([[5, 5], [6]], 25, extra=[[], [24]])  # each sentence its own
    assert [np.flatnonzero(row).tolist() for row in rows] == [
        [0, 1, 2, 3, 10, 20],
        [0, 1, 2, 3, 12, 20, 24],
    ]
    with pytest.raises(ValueError, match="outside the shortlist's source vocabulary"):
        sl.ids_for([[8]])
    with pytest.raises(ValueError, match="no pairs"):
        build_shortlist([], 8, 25, SPECIAL, vocab="v")


def test_a_shortlist_file_round_trips_and_a_broken_one_is_refused_by_name(tmp_path: Path) -> None:
    sl = build_shortlist(
        [([5], [10, 11]), ([6], [12])], 8, 25, SPECIAL, vocab="ab12", per_source=3, common=2
    )
    assert load_shortlist(tmp_path, 8, 25, "ab12") is None  # no file: no shortlist
    path = tmp_path / SHORTLIST
    path.write_bytes(sl.to_bytes())
    back = load_shortlist(tmp_path, 8, 25, "ab12")
    assert back is not None
    assert torch.equal(back.per_source, sl.per_source) and torch.equal(back.common, sl.common)
    assert back.info == sl.info and back.vocab == "ab12"
    refusals = [
        ((9, 25, "ab12"), "per_source has shape"),  # another source vocabulary
        ((8, 11, "ab12"), "outside the target"),  # ids past a smaller target vocabulary
        ((8, 25, "other"), "built for other vocabularies"),  # a stale file
    ]
    for args, message in refusals:
        with pytest.raises(ShortlistError, match=rf"shortlist\.safetensors: .*{message}"):
            load_shortlist(tmp_path, *args)
    good = sl.to_bytes()
    meta = {"format": "attnviz-shortlist", "version": "1", "vocab": "ab12"}
    for tensors, message in [
        ({"per_source": sl.per_source.float(), "common": sl.common}, "integer"),
        ({"per_source": sl.per_source, "common": sl.common[:0]}, "non-empty"),
        ({"per_source": sl.per_source, "common": sl.common - 5}, "outside the target"),
        ({"per_source": sl.per_source, "common": sl.common, "x": sl.common.clone()}, "expected"),
    ]:
        path.write_bytes(save(tensors, metadata=meta))
        with pytest.raises(ShortlistError, match=rf"shortlist\.safetensors: .*{message}"):
            load_shortlist(tmp_path, 8, 25, "ab12")
    path.write_bytes(good[:40])
    with pytest.raises(ShortlistError, match=r"shortlist\.safetensors: not a readable"):
        load_shortlist(tmp_path, 8, 25, "ab12")


def test_the_sparse_count_keeps_the_same_partners_as_a_dense_one() -> None:
    """Counting only the pairs of ids seen together, chunk by chunk, ranks each source
    id's partners as the dense Dice matrix does (ties: the smaller id)."""
    gen = torch.Generator().manual_seed(6)
    pairs = [
        (torch.randint(0, 30, (5,), generator=gen).tolist(),
         torch.randint(0, 40, (6,), generator=gen).tolist())
        for _ in range(9000)  # more than two chunks of 4,096 pairs
    ]  # fmt: skip
    sl = build_shortlist(pairs, 30, 40, SPECIAL, vocab="v", per_source=7, common=0)
    co = np.zeros((30, 40))
    for src, tgt in pairs:
        co[np.ix_(sorted(set(src)), sorted(set(tgt)))] += 1
    src_count = np.array([sum(s in set(a) for a, _ in pairs) for s in range(30)])
    tgt_count = np.array([sum(t in set(b) for _, b in pairs) for t in range(40)])
    dice = 2 * co / (src_count[:, None] + tgt_count[None, :])
    expected = np.argsort(-dice, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(sl.per_source.numpy(), expected)


@pytest.mark.parametrize("run", ["greedy", *sorted(BEAM_RUNS)])
@pytest.mark.parametrize("kind", ["additive", "local_m", "none", "transformer"])
def test_a_shortlist_of_every_word_changes_nothing(kind: str, run: str) -> None:
    """Fused RNN step, the model's own step (local_m), no attention, fused Transformer;
    greedy with top-k and beam search with n-best, a forced prefix, a blocked source
    position and the tree: the same hypotheses, top-k, node paths as without."""
    model = model_of(kind)
    srcs = sources(tuple(range(1, 9)), seed=5)
    opts = DecodeOptions(top_k=3) if run == "greedy" else BEAM_RUNS[run]
    every = fixed(list(range(TGT_VOCAB)))
    for a, b in zip(
        decode_batch(model, srcs, opts, shortlist=every),
        decode_batch(model, srcs, opts),
        strict=True,
    ):
        assert len(a.hypotheses) == len(b.hypotheses) == opts.n_best
        for x, y in zip(a.hypotheses, b.hypotheses, strict=True):
            assert_same_hypothesis(x, y)
            assert x.node_ids == y.node_ids
            if x.top_k_ids is not None and y.top_k_ids is not None:
                np.testing.assert_array_equal(x.top_k_ids, y.top_k_ids)
                np.testing.assert_allclose(x.top_k_probs, y.top_k_probs, atol=1e-6)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["additive", "local_m", "transformer"])
def test_decoding_scores_the_models_distribution_renormalised_over_the_shortlist(
    kind: str,
) -> None:
    """Every chosen and candidate word is in the shortlist; each step's probabilities are
    the full softmax's, restricted to the shortlist and renormalised (checked against a
    forced reading of the same tokens with the full output layer); greedy takes their
    argmax; the attention is the full model's for those tokens."""
    model = model_of(kind)
    gen = torch.Generator().manual_seed(2)
    allowed = sorted({*SPECIAL, *torch.randperm(TGT_VOCAB, generator=gen)[:12].tolist()})
    sl = fixed(allowed)
    srcs = sources((2, 5, 9), seed=11)
    mask = np.zeros(TGT_VOCAB, dtype=bool)
    mask[allowed] = True
    results = decode_batch(model, srcs, DecodeOptions(top_k=len(allowed)), shortlist=sl)
    full = forced_batch(model, srcs, [r.best.token_ids for r in results], top_k=TGT_VOCAB)
    for res, ref in zip(results, full, strict=True):
        hyp, read = res.best, ref.best
        assert set(hyp.token_ids) <= set(allowed)
        assert hyp.top_k_ids is not None and hyp.top_k_probs is not None
        assert set(hyp.top_k_ids.flatten().tolist()) == set(allowed)
        np.testing.assert_allclose(hyp.top_k_probs.sum(-1), 1.0, atol=1e-5)
        assert read.top_k_ids is not None and read.top_k_probs is not None
        for t, tok in enumerate(hyp.token_ids):
            p_full = np.zeros(TGT_VOCAB)
            p_full[read.top_k_ids[t]] = read.top_k_probs[t]
            renormalised = np.where(mask, p_full, 0.0) / p_full[mask].sum()
            assert int(np.argmax(renormalised)) == tok
            assert np.exp(hyp.token_logprobs[t]) == pytest.approx(renormalised[tok], abs=1e-5)
        assert hyp.attention is not None and read.attention is not None
        np.testing.assert_allclose(hyp.attention, read.attention, atol=1e-5)


@pytest.mark.parametrize("int8", [False, True])
@pytest.mark.parametrize("beam_size", [1, 3])
@pytest.mark.parametrize("kind", ["additive", "local_m", "transformer"])
def test_with_a_shortlist_a_batch_equals_its_sentences_alone(
    kind: str, beam_size: int, int8: bool
) -> None:
    """Each sentence is scored over its own shortlist, not the batch's union of them (also
    through the int8 output layer, which scores every word and then the shortlist's)."""
    model = model_of(kind)
    sl = random_shortlist()
    srcs = sources((3, 7, 2, 9, 5), seed=8)
    spaces = [sl.ids_for([s]).numel() for s in srcs]
    assert len(set(spaces)) > 1 and max(spaces) < sl.ids_for(srcs).numel() < TGT_VOCAB
    opts = DecodeOptions(beam_size=beam_size, n_best=beam_size, top_k=2)
    batch = decode_batch(model, srcs, opts, shortlist=sl, int8=int8)
    for src, res in zip(srcs, batch, strict=True):
        alone = decode_batch(model, [src], opts, shortlist=sl, int8=int8)[0]
        allowed = set(sl.ids_for([src]).tolist())
        for x, y in zip(res.hypotheses, alone.hypotheses, strict=True):
            assert_same_hypothesis(x, y)
            assert set(x.token_ids) <= allowed
            assert x.top_k_ids is not None and y.top_k_ids is not None
            np.testing.assert_array_equal(x.top_k_ids, y.top_k_ids)


@pytest.mark.parametrize("beam_size", [1, 2])
def test_top_k_stops_at_a_sentences_own_shortlist_and_specials_are_always_scored(
    beam_size: int,
) -> None:
    """A shortlist without the special tokens and with nothing for most source words:
    every sentence can still end (the specials are always scored), and asking for more
    candidates than a sentence's own shortlist holds gives its own words only, in a batch
    as alone."""
    model = tiny_model()
    per_source = torch.full((SRC_VOCAB, 2), -1)
    per_source[5:9] = torch.tensor([[20, 21], [22, 23], [24, 25], [26, 27]])
    sl = Shortlist(per_source, torch.tensor([7]), "v", {})
    srcs = [[5, 6, EOS], [30, EOS], [7, 8, 9, EOS]]
    opts = DecodeOptions(beam_size=beam_size, top_k=12)
    for src, res in zip(srcs, decode_batch(model, srcs, opts, shortlist=sl), strict=True):
        own = {*SPECIAL, 7, *(t for s in src for t in per_source[s].tolist() if t >= 0)}
        alone = decode_batch(model, [src], opts, shortlist=sl)[0].best
        hyp = res.best
        assert hyp.top_k_ids is not None and alone.top_k_ids is not None
        assert hyp.top_k_ids.shape == alone.top_k_ids.shape == (len(hyp.token_ids), len(own))
        assert all(set(row) == own for row in hyp.top_k_ids.tolist())
        assert_same_hypothesis(hyp, alone)
        assert all(np.isfinite(hyp.token_logprobs))


@pytest.mark.parametrize("kind", ["additive", "transformer"])
def test_a_shortlist_decodes_a_double_precision_model(kind: str) -> None:
    """The per-sentence masks take the model's dtype (a float64 model, a batch whose
    sentences have different shortlists)."""
    model = model_of(kind).double()
    sl = random_shortlist()
    srcs = sources((3, 7, 2), seed=8)
    for res, src in zip(decode_batch(model, srcs, shortlist=sl), srcs, strict=True):
        assert set(res.best.token_ids) <= set(sl.ids_for([src]).tolist()) | set(SPECIAL)


def test_forced_words_outside_the_shortlist_are_still_scored() -> None:
    """A forced prefix (beam search) and a forced reading may use words the shortlist does
    not hold: they are added to the batch's output space."""
    model = tiny_model()
    sl = fixed([*SPECIAL, 7, 8, 9])
    srcs = sources((4, 6), seed=1)
    opts = DecodeOptions(beam_size=3, forced_prefix=(30, 31), top_k=2)
    for res in beam_search(model, srcs, opts, shortlist=sl):
        ids = res.best.token_ids
        assert ids[:2] == (30, 31) and set(ids[2:]) <= {*SPECIAL, 7, 8, 9, 30, 31}
    targets = [[40, 41, EOS], [5, EOS]]
    for res, tgt in zip(forced_batch(model, srcs, targets, shortlist=sl), targets, strict=True):
        assert list(res.best.token_ids) == tgt
        assert all(np.isfinite(res.best.token_logprobs))
