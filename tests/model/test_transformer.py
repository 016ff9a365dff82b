"""The Transformer: shapes, masks, incremental decoding equals teacher forcing, learning."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from attnviz.model.config import ModelConfig
from attnviz.model.decoding import (
    DecodeOptions,
    beam_search,
    decode,
    decode_batch,
    forced,
    greedy_batch,
    greedy_search,
)
from attnviz.model.factory import build_model
from attnviz.model.transformer import Transformer, sinusoids

BOS, EOS, PAD = 2, 3, 0


def tiny(seed: int = 0, **changes: object) -> Transformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        src_vocab_size=20,
        tgt_vocab_size=22,
        emb_dim=16,
        hidden_dim=16,
        attention="scaled_dot",
        attention_heads=4,
        architecture="transformer",
        layers=2,
        ff_dim=32,
        dropout=0.0,
        tie_embeddings=True,
    ).replace(**changes)
    model = build_model(cfg)
    assert isinstance(model, Transformer)
    return model.eval()


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src = torch.tensor([[5, 6, 7, 8, EOS], [9, 10, EOS, PAD, PAD]])
    tgt_in = torch.tensor([[BOS, 11, 12, 13], [BOS, 14, 15, PAD]])
    return src, src != PAD, tgt_in


def test_config_rules_list_the_valid_choices() -> None:
    with pytest.raises(ValueError, match="valid: rnn, transformer"):
        ModelConfig(src_vocab_size=10, tgt_vocab_size=10, architecture="cnn")
    with pytest.raises(ValueError, match="scaled_dot"):
        ModelConfig(src_vocab_size=10, tgt_vocab_size=10, architecture="transformer")
    with pytest.raises(ValueError, match="emb_dim == hidden_dim"):
        ModelConfig(
            src_vocab_size=10, tgt_vocab_size=10, architecture="transformer",
            attention="scaled_dot", emb_dim=8, hidden_dim=16,
        )  # fmt: skip
    with pytest.raises(ValueError, match="alignment_layer 3 does not exist"):
        tiny(alignment_layer=3)


def test_sinusoids_are_the_papers() -> None:
    enc = sinusoids(torch.arange(3), 4)  # (3, 4): sin(p), sin(p/100), cos(p), cos(p/100)
    p = torch.arange(3, dtype=torch.float32)
    expected = torch.stack([p.sin(), (p / 100).sin(), p.cos(), (p / 100).cos()], dim=1)
    assert torch.allclose(enc, expected, atol=1e-6)


def test_attention_maps_shapes_rows_and_masks() -> None:
    model = tiny()
    src, mask, tgt_in = batch()
    maps = model.attention_maps(src, mask, tgt_in)
    assert maps.encoder.shape == (2, 2, 4, 5, 5)
    assert maps.decoder.shape == (2, 2, 4, 4, 4)
    assert maps.cross.shape == (2, 2, 4, 4, 5)
    for m in (maps.encoder, maps.decoder, maps.cross):
        assert torch.allclose(m.sum(-1), torch.ones_like(m.sum(-1)), atol=1e-5)
    # no attention to source padding (sentence 1 has 3 real tokens)
    assert maps.encoder[1, ..., 3:].abs().max() == 0
    assert maps.cross[1, ..., 3:].abs().max() == 0
    # causal: no attention to future target positions
    future = torch.ones(4, 4, dtype=torch.bool).triu(1)
    assert maps.decoder[..., future].abs().max() == 0


def test_forward_returns_the_alignment_layers_cross_attention() -> None:
    src, mask, tgt_in = batch()
    for layer in (0, 1, -1):
        model = tiny(alignment_layer=layer)
        logits, attention = model(src, mask, tgt_in)
        assert logits.shape == (2, 4, 22)
        maps = model.attention_maps(src, mask, tgt_in)
        assert torch.allclose(attention, maps.cross[:, layer].transpose(1, 2))


def test_incremental_steps_equal_teacher_forcing() -> None:
    model = tiny()
    src, mask, tgt_in = batch()
    with torch.inference_mode():
        logits, attention = model(src, mask, tgt_in)
        enc = model.encode(src, mask)
        state = model.init_state(enc)
        for t in range(tgt_in.size(1)):
            step_logits, state, weights = model.step(tgt_in[:, t], state, enc, step_index=t)
            assert torch.allclose(step_logits, logits[:, t], atol=1e-5)
            assert torch.allclose(weights, attention[:, t], atol=1e-6)
        assert state.keys[0].shape == (2, 4, 4, 4)  # (batch, heads, steps, head_dim)


def test_blocked_source_positions_get_no_attention_in_any_layer() -> None:
    model = tiny()
    src, mask, tgt_in = batch()
    blocked = torch.zeros_like(mask)
    blocked[:, 1] = True
    maps = model.attention_maps(src, mask, tgt_in, blocked_mask=blocked)
    assert maps.cross[..., 1].abs().max() == 0
    result = decode(model, [5, 6, 7, EOS], DecodeOptions(max_length=6, blocked_source=(1,)))
    att = result.best.attention
    assert att is not None and float(abs(att[..., 1]).max()) == 0.0


def test_decoding_greedy_beam_batch_and_forced_agree() -> None:
    model = tiny(3)
    sources = [[5, 6, 7, 8, EOS], [9, 10, EOS], [11, EOS]]
    opts = DecodeOptions(max_length=7)
    alone = [decode(model, s, opts).best for s in sources]
    together = [r.best for r in decode_batch(model, sources, opts)]
    beam1 = [decode(model, s, DecodeOptions(max_length=7, beam_size=1)).best for s in sources]
    for a, b, c in zip(alone, together, beam1, strict=True):
        assert a.token_ids == b.token_ids == c.token_ids
        assert a.attention is not None and b.attention is not None
        assert a.attention.shape[1] == 4  # heads of the alignment layer
        assert abs(a.attention - b.attention[:, :, : a.attention.shape[2]]).max() < 1e-5
    reading = forced(model, sources[0], list(alone[0].token_ids)).best
    assert reading.token_logprobs == pytest.approx(alone[0].token_logprobs, abs=1e-4)
    beam = decode(model, sources[0], DecodeOptions(max_length=7, beam_size=4, n_best=3))
    scores = [h.norm_score for h in beam.hypotheses]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("alignment_layer", [0, -1])
def test_fused_step_matches_the_models_own_step(
    alignment_layer: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """decoding's fused Transformer step (one q/k/v product, no module calls) against
    ``Transformer.step``: greedy over 10 rows of different lengths (finished rows are
    dropped from the batch), beam search with n-best and top-k, a blocked source word;
    positions past the fused weights' table (cut to 4 rows here) computed when reached."""
    import attnviz.model.decoding as decoding

    monkeypatch.setattr(decoding, "_POSITIONS", 4)
    fused = decoding._FusedTransformerStepper
    calls = dict.fromkeys(("step", "keep", "reorder"), 0)
    for name in calls:
        original = getattr(fused, name)

        def counted(self: object, *args: object, _name: str = name, _run: Any = original) -> Any:
            calls[_name] += 1
            return _run(self, *args)

        monkeypatch.setattr(fused, name, counted)
    model = tiny(5, layers=3, alignment_layer=alignment_layer)
    gen = torch.Generator().manual_seed(1)
    sources = [[*torch.randint(4, 20, (n,), generator=gen).tolist(), EOS] for n in range(1, 11)]
    cases = [
        (greedy_search, sources, DecodeOptions(max_length=9)),
        # each row's own length limit (2 x its length + 10): rows leave the batch one by one
        (greedy_search, sources, DecodeOptions()),
        (beam_search, sources[:4], DecodeOptions(beam_size=3, n_best=3, top_k=2, max_length=8)),
        (greedy_search, sources[:4], DecodeOptions(blocked_source=(0,), top_k=3, max_length=6)),
    ]
    for run, batch_sources, opts in cases:
        fast = run(model, batch_sources, opts)
        slow = run(model, batch_sources, opts, fast=False)
        for a, b in zip(fast, slow, strict=True):
            for ha, hb in zip(a.hypotheses, b.hypotheses, strict=True):
                assert ha.token_ids == hb.token_ids
                assert ha.token_logprobs == pytest.approx(hb.token_logprobs, abs=1e-5)
                assert ha.attention is not None and hb.attention is not None
                assert abs(ha.attention - hb.attention).max() < 1e-5
                if ha.top_k_probs is not None:
                    assert hb.top_k_probs is not None
                    assert abs(ha.top_k_probs - hb.top_k_probs).max() < 1e-5
    assert min(calls.values()) > 0, calls  # it ran, and it dropped and reordered rows


def test_fused_weights_follow_in_place_changes_of_every_decoder_parameter() -> None:
    """The fused step's weights are cached per model and rebuilt when a parameter they read
    changes: change each decoder-side parameter in place (as an optimizer step does) and
    the fused step must still equal the model's own."""
    model = tiny(3)
    source = [[5, 6, 7, 8, EOS]]
    opts = DecodeOptions(max_length=6, top_k=3)
    encoder_side = ("src_embedding", "encoder", "cross_attn.k.", "cross_attn.v.")
    names = [n for n, _ in model.named_parameters() if not any(p in n for p in encoder_side)]
    assert len(names) > 20, names
    params = dict(model.named_parameters())
    for name in names:
        greedy_search(model, source, opts)  # the cache holds the weights before the change
        with torch.no_grad():
            params[name].add_(0.05 * torch.randn_like(params[name]))
        fast = greedy_search(model, source, opts)[0].best
        slow = greedy_search(model, source, opts, fast=False)[0].best
        assert fast.token_ids == slow.token_ids, name
        assert fast.token_logprobs == pytest.approx(slow.token_logprobs, abs=1e-5), name


def test_a_tiny_transformer_learns_to_reverse() -> None:
    torch.manual_seed(0)
    model = tiny(1, dropout=0.0).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        body = torch.randint(4, 12, (32, 4), generator=gen)
        src = torch.cat([body, torch.full((32, 1), EOS)], 1)
        tgt = torch.cat([torch.full((32, 1), BOS), body.flip(1), torch.full((32, 1), EOS)], 1)
        logits, _ = model(src, src != PAD, tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 22), tgt[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    tests = [[4, 5, 6, 7], [8, 9, 10, 11], [11, 4, 9, 6]]
    out = greedy_batch(model, [[*t, EOS] for t in tests], max_length=6)
    got = [list(r.best.token_ids) for r in out]
    assert got == [[*t[::-1], EOS] for t in tests]


def test_checkpoint_round_trip_keeps_the_tied_output_layer(tmp_path) -> None:
    from attnviz.model.checkpoint import load_checkpoint, save_checkpoint
    from attnviz.model.vocab import Vocab

    model = tiny(5)
    src_vocab = Vocab.build([[f"s{i}" for i in range(16)]])
    tgt_vocab = Vocab.build([[f"t{i}" for i in range(18)]])
    assert (len(src_vocab), len(tgt_vocab)) == (20, 22)
    card = {"name": "tf", "source_lang": "en", "target_lang": "fr"}
    save_checkpoint(tmp_path / "tf", model, src_vocab, tgt_vocab, card, half=False)
    loaded = load_checkpoint(tmp_path / "tf").model
    assert isinstance(loaded, Transformer)
    assert loaded.output.weight.data_ptr() == loaded.tgt_embedding.weight.data_ptr()
    src, mask, tgt_in = batch()
    with torch.inference_mode():
        a, wa = model(src, mask, tgt_in)
        b, wb = loaded(src, mask, tgt_in)
    assert torch.equal(a, b) and torch.equal(wa, wb)
