"""Tests for attnviz.model.evaluate on tiny real models and the sample corpus."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from attnviz.model import evaluate as evaluate_module
from attnviz.model.alignment import aer, alignment_from_attention, flip_alignment
from attnviz.model.checkpoint import (
    LoadedModel,
    load_checkpoint,
    read_card,
    save_checkpoint,
    write_card,
)
from attnviz.model.config import ModelConfig
from attnviz.model.corpus.readers import Pair, read_tsv
from attnviz.model.decoding import DecodeResult, Hypothesis, pad_batch
from attnviz.model.evaluate import (
    LENGTH_BUCKETS,
    evaluate,
    evaluate_command,
    format_report,
    orient_pairs,
)
from attnviz.model.factory import build_model
from attnviz.model.seq2seq import Seq2Seq
from attnviz.model.tokenize import tokenize
from attnviz.model.vocab import Vocab

torch.set_num_threads(1)

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
TRAIN, TEST = SAMPLE / "train.tsv", SAMPLE / "test.tsv"


@pytest.fixture(scope="module")
def test_pairs() -> list[Pair]:
    return read_tsv(TEST, alignment_col=2)


@pytest.fixture(scope="module")
def vocabs() -> tuple[Vocab, Vocab]:
    """English and French vocabularies of train + test (no unknown word in the test set)."""
    pairs = read_tsv(TRAIN, alignment_col=2) + read_tsv(TEST, alignment_col=2)
    en = Vocab.build(tokenize(p.source, "en") for p in pairs)
    fr = Vocab.build(tokenize(p.target, "fr") for p in pairs)
    return en, fr


def make_model(
    directory: Path,
    vocabs: tuple[Vocab, Vocab],
    *,
    source_lang: str = "en",
    attention: str = "additive",
    train_steps: int = 0,
) -> Path:
    en, fr = vocabs
    src_vocab, tgt_vocab = (en, fr) if source_lang == "en" else (fr, en)
    target_lang = "fr" if source_lang == "en" else "en"
    config = ModelConfig(
        src_vocab_size=len(src_vocab),
        tgt_vocab_size=len(tgt_vocab),
        emb_dim=16,
        hidden_dim=16,
        attention=attention,
        attention_heads=2,
        dropout=0.0,
    )
    torch.manual_seed(0)
    model = Seq2Seq(config)
    if train_steps:
        train_briefly(model, src_vocab, tgt_vocab, source_lang, train_steps)
    card: dict[str, Any] = {
        "name": directory.name,
        "source_lang": source_lang,
        "target_lang": target_lang,
        "metrics": {"valid_loss": 1.5},  # from training; evaluation must keep it
    }
    save_checkpoint(directory, model, src_vocab, tgt_vocab, card)
    return directory


def train_briefly(
    model: Seq2Seq, src_vocab: Vocab, tgt_vocab: Vocab, source_lang: str, steps: int
) -> None:
    """A few Adam steps of teacher forcing on the short sentences of the sample."""
    target_lang = "fr" if source_lang == "en" else "en"
    pairs = [p for p in read_tsv(TRAIN, alignment_col=2) if len(p.source.split()) <= 6][:256]
    data = []
    for p in pairs:
        src_text, tgt_text = (p.source, p.target) if source_lang == "en" else (p.target, p.source)
        src = src_vocab.encode(tokenize(src_text, source_lang))
        tgt = tgt_vocab.encode(tokenize(tgt_text, target_lang), add_eos=False)
        data.append((src, tgt))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        batch = [data[int(k)] for k in torch.randint(len(data), (32,), generator=gen)]
        src_ids, mask = pad_batch([s for s, _ in batch], 0, "cpu")
        tgt_in, _ = pad_batch([[2, *t] for _, t in batch], 0, "cpu")
        tgt_out, _ = pad_batch([[*t, 3] for _, t in batch], 0, "cpu")
        logits, _ = model(src_ids, mask, tgt_in)
        loss = F.cross_entropy(logits.transpose(1, 2), tgt_out, ignore_index=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, vocabs: tuple[Vocab, Vocab]) -> Path:
    root = tmp_path_factory.mktemp("checkpoints")
    make_model(root / "en-fr-additive", vocabs, train_steps=60)
    make_model(root / "fr-en-additive", vocabs, source_lang="fr")
    make_model(root / "en-fr-none", vocabs, attention="none")
    make_model(root / "en-fr-multihead", vocabs, attention="multihead")
    return root


def load(models: Path, name: str) -> LoadedModel:
    return load_checkpoint(models / name, "cpu")


def check_result(result: dict[str, Any], n: int) -> None:
    assert result["sentences"] == n
    assert 0.0 <= result["bleu"] <= 100.0
    assert 0.0 <= result["chrf"] <= 100.0
    assert result["bleu_signature"].startswith("nrefs:1|case:mixed|")
    assert "tok:13a" in result["bleu_signature"]
    assert result["chrf_signature"].startswith("nrefs:1|case:mixed|")
    buckets = result["bleu_by_length"]
    assert [b["bucket"] for b in buckets] == ["1-5", "6-10", "11-15", "16-20", "21-25", "26+"]
    assert len(buckets) == len(LENGTH_BUCKETS)
    assert sum(b["sentences"] for b in buckets) == n
    for b in buckets:
        if b["sentences"]:
            assert 0.0 <= b["bleu"] <= 100.0
        else:
            assert b["bleu"] is None
    assert result["seconds"] > 0 and result["sentences_per_second"] > 0
    assert result["perplexity"] > 1.0
    json.dumps(result, allow_nan=False)  # JSON-ready


def test_evaluate_trained_model(models: Path, test_pairs: list[Pair]) -> None:
    loaded = load(models, "en-fr-additive")
    result = evaluate(loaded, test_pairs, batch_size=8, progress=False)
    check_result(result, len(test_pairs))
    assert result["model"] == "en-fr-additive"
    assert (result["source_lang"], result["target_lang"]) == ("en", "fr")
    assert result["attention"] == "additive" and result["device"] == "cpu"
    assert result["gold_alignments"] == result["aer_sentences"] == len(test_pairs)
    assert 0.0 <= result["aer"] <= 1.0
    assert 0.0 <= result["aer_precision"] <= 1.0 and 0.0 <= result["aer_recall"] <= 1.0
    # entropy of distributions over at most (longest source + </s>) positions
    longest = max(len(tokenize(p.source, "en")) for p in test_pairs) + 1
    assert 0.0 <= result["attention_entropy"] <= math.log(longest)
    # the test split is drawn evenly from English length buckets
    assert all(b["sentences"] > 0 for b in result["bleu_by_length"])
    # a model that read French for a minute is better than chance at its references
    assert result["perplexity"] < len(loaded.tgt_vocab)


def test_evaluate_limit_and_batch_size_do_not_change_scores(
    models: Path, test_pairs: list[Pair]
) -> None:
    loaded = load(models, "en-fr-additive")
    first = evaluate(loaded, test_pairs, limit=6, batch_size=64, progress=False)
    again = evaluate(loaded, test_pairs[:6], batch_size=1, progress=False)
    check_result(first, 6)
    for key in ("bleu", "chrf", "aer", "attention_entropy"):
        assert first[key] == pytest.approx(again[key], abs=1e-6), key
    with pytest.raises(ValueError, match="limit"):
        evaluate(loaded, test_pairs, limit=0, progress=False)
    with pytest.raises(ValueError, match="no sentence pairs"):
        evaluate(loaded, [], progress=False)


def test_forced_aer_matches_an_independent_computation(
    models: Path, test_pairs: list[Pair]
) -> None:
    """Forced decoding by hand, one sentence at a time: the same corpus AER."""
    loaded = load(models, "en-fr-multihead")  # heads are averaged
    model = loaded.model
    links, gold = [], []
    head_links: list[list[list[tuple[int, int]]]] = [[], []]
    for pair in test_pairs[:5]:
        src_tokens, tgt_tokens = tokenize(pair.source, "en"), tokenize(pair.target, "fr")
        src = torch.tensor([loaded.src_vocab.encode(src_tokens)])
        tgt_in = torch.tensor([[2, *loaded.tgt_vocab.encode(tgt_tokens, add_eos=False)]])
        with torch.inference_mode():
            _, att = model(src, torch.ones_like(src, dtype=torch.bool), tgt_in)
        assert att is not None
        mean = att[0].mean(dim=1).numpy()  # (tgt_len + 1, src_len + 1), heads averaged
        assert mean.shape == (len(tgt_tokens) + 1, len(src_tokens) + 1)
        # each target word (not the </s> row) to its best source word (not the </s> column)
        links.append([(int(mean[j, :-1].argmax()), j) for j in range(len(tgt_tokens))])
        for h in range(2):
            one = att[0, :, h].numpy()
            head_links[h].append([(int(one[j, :-1].argmax()), j) for j in range(len(tgt_tokens))])
        gold.append(pair.alignment)

    def corpus_aer(found: list[list[tuple[int, int]]]) -> float:  # counts summed over sentences
        a = sum(len(set(x)) for x in found)
        s = sum(len(set(g or ())) for g in gold)
        both = sum(len(set(x) & set(g or ())) for x, g in zip(found, gold, strict=True))
        return 1 - 2 * both / (a + s)

    result = evaluate(loaded, test_pairs[:5], batch_size=2, progress=False)
    assert result["aer"] == pytest.approx(corpus_aer(links))
    assert [(h["layer"], h["head"]) for h in result["aer_by_head"]] == [(0, 0), (0, 1)]
    for h in result["aer_by_head"]:
        assert h["aer"] == pytest.approx(corpus_aer(head_links[h["head"]]))


def make_transformer(folder: Path, vocabs: tuple[Vocab, Vocab], seed: int) -> Path:
    """An untrained 3-layer, 2-head Transformer saved in ``folder``."""
    en, fr = vocabs
    torch.manual_seed(seed)
    config = ModelConfig(
        src_vocab_size=len(en), tgt_vocab_size=len(fr), emb_dim=16, hidden_dim=16,
        attention="scaled_dot", attention_heads=2, architecture="transformer", layers=3,
        ff_dim=32, dropout=0.0,
    )  # fmt: skip
    card = {"name": folder.name, "source_lang": "en", "target_lang": "fr"}
    save_checkpoint(folder, build_model(config), en, fr, card)
    return folder


def test_transformer_aer_per_layer_and_head_and_saliency(
    tmp_path: Path, vocabs: tuple[Vocab, Vocab], test_pairs: list[Pair]
) -> None:
    make_transformer(tmp_path / "tf", vocabs, seed=0)
    result = evaluate(
        load_checkpoint(tmp_path / "tf", "cpu"), test_pairs[:6], progress=False,
        saliency_sentences=3,
    )  # fmt: skip
    heads = result["aer_by_head"]
    assert [(h["layer"], h["head"]) for h in heads] == [(i, h) for i in range(3) for h in range(2)]
    assert all(0.0 <= h["aer"] <= 1.0 for h in heads)
    corr = result["saliency_correlation"]
    assert corr["sentences"] == 3 and corr["tokens"] > 3 and -1.0 <= corr["mean"] <= 1.0
    json.dumps(result, allow_nan=False)
    # each layer's head average scores what the main AER scores when that layer is the main one
    assert [x["layer"] for x in result["aer_by_layer"]] == [0, 1, 2]
    for x in result["aer_by_layer"]:
        card = read_card(tmp_path / "tf")
        card["config"]["alignment_layer"] = x["layer"]
        write_card(tmp_path / "tf", card)
        main = evaluate(load_checkpoint(tmp_path / "tf", "cpu"), test_pairs[:6], progress=False)
        assert main["aer"] == pytest.approx(x["aer"]), x


def test_set_alignment_layer_makes_the_best_aligning_layer_the_main_one(
    tmp_path: Path, vocabs: tuple[Vocab, Vocab], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = make_transformer(tmp_path / "tf", vocabs, seed=1)
    from attnviz.app.cli import main

    argv = ["evaluate", "--model", str(folder), "--data", str(TEST), "--limit", "8", "--json"]
    assert main([*argv, "--set-alignment-layer"]) == 0
    by_layer = json.loads(capsys.readouterr().out)["aer_by_layer"]
    best = min(by_layer, key=lambda x: x["aer"])["layer"]
    card = read_card(folder)
    assert card["config"]["alignment_layer"] == best
    assert card["alignment_layer_choice"] == {
        "data": str(TEST),
        "sentences": 8,
        "aer_by_layer": by_layer,
    }
    assert load_checkpoint(folder).model.alignment_layer == best  # the model reads it
    # the metrics would no longer measure the same thing: not both at once
    assert evaluate_command(str(folder), TEST, limit=8, choose_layer=True, write_card=True) == 2
    assert "then evaluate again with --write-card" in capsys.readouterr().err
    rnn = make_model(tmp_path / "rnn", vocabs)  # one layer: nothing to choose
    assert evaluate_command(str(rnn), TEST, limit=8, choose_layer=True) == 2
    assert "needs a Transformer" in capsys.readouterr().err


def oracle_greedy(
    refs: dict[tuple[int, ...], list[int]],
) -> Any:
    """A greedy_batch stand-in that "translates" every source into its reference, with
    the attention of forced decoding: a perfect model for BLEU and exact matches."""

    def fake(model: Seq2Seq, sources: Sequence[Sequence[int]], *, max_length: int = 100) -> Any:
        out = []
        for src_ids in sources:
            tgt = refs[tuple(src_ids)]
            src = torch.tensor([list(src_ids)])
            with torch.inference_mode():
                _, att = model(
                    src, torch.ones_like(src, dtype=torch.bool), torch.tensor([[2, *tgt]])
                )
            ids = (*tgt, 3)
            a = None if att is None else att[0].numpy()
            out.append(DecodeResult((Hypothesis(ids, (0.0,) * len(ids), a, 0.0),)))
        return out

    return fake


def test_greedy_aer_on_exact_translations(
    models: Path, test_pairs: list[Pair], monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load(models, "en-fr-additive")
    refs = {
        tuple(loaded.src_vocab.encode(tokenize(p.source, "en"))): loaded.tgt_vocab.encode(
            tokenize(p.target, "fr"), add_eos=False
        )
        for p in test_pairs
    }
    monkeypatch.setattr(evaluate_module, "greedy_batch", oracle_greedy(refs))
    result = evaluate(loaded, test_pairs, batch_size=7, progress=False)
    assert result["bleu"] == pytest.approx(100.0)
    assert result["chrf"] == pytest.approx(100.0)
    assert all(b["bleu"] == pytest.approx(100.0) for b in result["bleu_by_length"])
    # every output is exact, and its attention is that of forced decoding
    assert result["aer_greedy_sentences"] == len(test_pairs)
    assert result["aer_greedy"] == pytest.approx(result["aer"])


def test_real_greedy_output_rarely_exact(models: Path, test_pairs: list[Pair]) -> None:
    result = evaluate(load(models, "en-fr-additive"), test_pairs, progress=False)
    n = result["aer_greedy_sentences"]
    assert 0 <= n <= len(test_pairs)
    assert (result["aer_greedy"] is None) == (n == 0)


def test_fr_en_model_reads_french_and_flips_the_gold(models: Path, test_pairs: list[Pair]) -> None:
    loaded = load(models, "fr-en-additive")
    pair = test_pairs[0]
    (example,) = orient_pairs([pair], "fr", "en")
    assert (example.source, example.target) == (pair.target, pair.source)
    assert pair.alignment is not None
    assert example.gold == tuple((j, i) for i, j in pair.alignment)

    # one sentence by hand: French ids in, English ids forced, gold flipped to fr-en
    fr_tokens, en_tokens = tokenize(pair.target, "fr"), tokenize(pair.source, "en")
    src = torch.tensor([loaded.src_vocab.encode(fr_tokens)])
    tgt_in = torch.tensor([[2, *loaded.tgt_vocab.encode(en_tokens, add_eos=False)]])
    with torch.inference_mode():
        _, att = loaded.model(src, torch.ones_like(src, dtype=torch.bool), tgt_in)
    assert att is not None
    links = alignment_from_attention(att[0].numpy(), len(fr_tokens), len(en_tokens))
    expected = aer(links, flip_alignment(pair.alignment))

    result = evaluate(loaded, [pair], progress=False)
    assert (result["source_lang"], result["target_lang"]) == ("fr", "en")
    assert result["aer"] == pytest.approx(expected)
    # the whole test set: in range, and buckets by French (source) length
    result = evaluate(loaded, test_pairs, progress=False)
    check_result(result, len(test_pairs))
    assert 0.0 <= result["aer"] <= 1.0
    fr_lengths = [len(tokenize(p.target, "fr")) for p in test_pairs]
    assert result["bleu_by_length"][-1]["sentences"] == sum(n >= 26 for n in fr_lengths)


def test_direction_the_data_does_not_have() -> None:
    with pytest.raises(ValueError, match=r"valid model directions for it: en->fr, fr->en"):
        orient_pairs([Pair("a", "b")], "en", "de")


def test_gold_out_of_range_is_an_error(models: Path) -> None:
    bad = Pair("The cat sleeps.", "Le chat dort.", ((7, 0),), lineno=4)
    with pytest.raises(ValueError, match=r"line 4: gold link 7-0 is out of range"):
        evaluate(load(models, "en-fr-additive"), [bad], progress=False)


def test_model_without_attention_has_no_aer(models: Path, test_pairs: list[Pair]) -> None:
    result = evaluate(load(models, "en-fr-none"), test_pairs, progress=False)
    check_result(result, len(test_pairs))
    assert result["attention"] == "none"
    for key in ("aer", "aer_greedy", "aer_precision", "aer_recall", "attention_entropy",
                "aer_by_head", "saliency_correlation"):  # fmt: skip
        assert result[key] is None, key
    assert result["aer_sentences"] == result["aer_greedy_sentences"] == 0
    assert "AER        n/a      (no attention)" in format_report(result)


def test_data_without_gold_alignments(
    models: Path, test_pairs: list[Pair], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tatoeba = tmp_path / "fra.tsv"
    tatoeba.write_text(
        "".join(f"{p.source}\t{p.target}\tCC-BY 2.0 (France)\n" for p in test_pairs[:4]),
        encoding="utf-8",
    )
    code = evaluate_command("en-fr-additive", tatoeba, as_json=True, models_dir=models)
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["aer"] is None and result["gold_alignments"] == 0
    assert result["sentences"] == 4


def test_evaluate_command_json_by_name(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = evaluate_command(
        "en-fr-multihead", TEST, limit=5, as_json=True, models_dir=models, device="cpu"
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1  # one JSON object on one line
    result = json.loads(out)
    check_result(result, 5)
    assert {"bleu", "chrf", "aer"} <= set(result)
    assert 0.0 <= result["aer"] <= 1.0
    assert result["path"] == str(models / "en-fr-multihead")


def test_evaluate_command_report_by_path(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = evaluate_command(str(models / "en-fr-additive"), TEST, limit=3, models_dir=Path("/x"))
    out = capsys.readouterr().out
    assert code == 0
    assert "BLEU" in out and "chrF" in out and "AER" in out
    assert "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:" in out
    assert "BLEU by length (source tokens)" in out


def test_evaluate_command_write_card(
    tmp_path: Path, vocabs: tuple[Vocab, Vocab], capsys: pytest.CaptureFixture[str]
) -> None:
    directory = make_model(tmp_path / "m", vocabs)
    code = evaluate_command(str(directory), TEST, limit=8, write_card=True, as_json=True)
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    card = read_card(directory)
    metrics = card["metrics"]
    assert metrics["valid_loss"] == 1.5  # kept
    for key in ("bleu", "chrf", "aer", "aer_greedy", "bleu_signature", "chrf_signature"):
        assert metrics[key] == result[key], key
    assert metrics["sentences"] == 8 and metrics["data"] == str(TEST)
    assert card["bleu_by_length"] == result["bleu_by_length"]
    load_checkpoint(directory)  # still a loadable model


def test_evaluate_command_errors(models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert evaluate_command("nope", TEST, models_dir=models) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "en-fr-additive" in err and "valid:" in err

    assert evaluate_command("en-fr-additive", SAMPLE / "missing.tsv", models_dir=models) == 2
    assert "missing.tsv: no such file" in capsys.readouterr().err

    assert evaluate_command("en-fr-additive", TEST, models_dir=models, device="tpu9") == 2
    assert "unknown device 'tpu9'; valid:" in capsys.readouterr().err

    assert evaluate_command("en-fr-additive", TEST, limit=0, models_dir=models) == 2
    assert "limit must be >= 1" in capsys.readouterr().err
