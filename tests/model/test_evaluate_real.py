"""attnviz.model.evaluate on real text: a tiny SentencePiece model (``tiny_subword``, trained
on Tatoeba) against the WPT03 Hansards gold with sure and possible links, imported from
../shared/data; and a Moses model reading the pre-tokenised Hansards as they are."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from attnviz.app.cli import main as cli
from attnviz.model.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from attnviz.model.config import ModelConfig
from attnviz.model.corpus.importers import import_hansards
from attnviz.model.corpus.readers import Pair, read_tsv
from attnviz.model.evaluate import evaluate, is_pretokenized
from attnviz.model.evaluate_alignment import segment
from attnviz.model.seq2seq import Seq2Seq
from attnviz.model.tokenize import tokenize
from attnviz.model.vocab import Vocab
from tests.app.support import SAMPLE, shared_data

torch.set_num_threads(1)

Link = tuple[int, int]


@pytest.fixture(scope="module")
def hansards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The WPT03 test set as ``attnviz corpus import hansards`` writes it (with meta.json)."""
    out = tmp_path_factory.mktemp("hansards")
    import_hansards(shared_data("hansards-wpt03-en-fr"), out)
    return out / "test.tsv"


@pytest.fixture(scope="module")
def pairs(hansards: Path) -> list[Pair]:
    return read_tsv(hansards, alignment_col=2)


@pytest.fixture(scope="module")
def subword(tiny_subword: Path) -> LoadedModel:
    return load_checkpoint(tiny_subword, "cpu")


def hand_links(loaded: LoadedModel, pair: Pair) -> tuple[list[Link], bool]:
    """Forced decoding of one reference, by hand: the attention over pieces (heads averaged,
    end row and column left out), each source word the sum of its pieces' columns, each
    target word the mean of its pieces' rows, each target word linked to its best source
    word. Also whether some word had several pieces."""
    src = loaded.src_tokenizer.segment(pair.source)
    tgt = loaded.tgt_tokenizer.segment(pair.target)
    assert src.words == pair.source.split() and tgt.words == pair.target.split()
    cfg = loaded.model.config
    src_ids = torch.tensor([loaded.src_vocab.encode(src.pieces, add_eos=True)])
    tgt_in = torch.tensor([[cfg.bos_id, *loaded.tgt_vocab.encode(tgt.pieces, add_eos=False)]])
    with torch.inference_mode():
        _, att = loaded.model(src_ids, torch.ones_like(src_ids, dtype=torch.bool), tgt_in)
    assert att is not None
    pieces = att[0].mean(dim=1).double().numpy()  # (tgt pieces + 1, src pieces + 1)
    assert pieces.shape == (len(tgt.pieces) + 1, len(src.pieces) + 1)
    links = []
    for j, (ta, tb) in enumerate(tgt.spans):
        row = [
            sum(pieces[t, sa:sb].sum() for t in range(ta, tb)) / (tb - ta) for sa, sb in src.spans
        ]
        links.append((int(np.argmax(row)), j))
    split = any(b - a > 1 for a, b in src.spans + tgt.spans)
    return links, split


def test_subword_aer_over_words_with_possible_links_by_hand(
    subword: LoadedModel, pairs: list[Pair]
) -> None:
    chosen = pairs[95:101]
    a = s = a_s = a_p = 0
    any_split = False
    for pair in chosen:
        links, split = hand_links(subword, pair)
        any_split |= split
        found, sure = set(links), set(pair.alignment or ())
        possible = sure | set(pair.possible or ())
        a, s = a + len(found), s + len(sure)
        a_s, a_p = a_s + len(found & sure), a_p + len(found & possible)
    assert any_split  # the words are not the pieces: the word matrix is exercised
    expected = 1 - (a_s + a_p) / (a + s)  # Och & Ney, counts summed over the sentences
    result = evaluate(subword, chosen, pretokenized=True, progress=False, saliency_sentences=0)
    assert result["aer"] == pytest.approx(expected)
    assert result["aer_precision"] == pytest.approx(a_p / a)
    assert result["aer_recall"] == pytest.approx(a_s / s)
    assert result["gold_sure_links"] == s
    assert result["gold_possible_links"] == sum(len(p.possible or ()) for p in chosen) > 0


def test_possible_links_are_used(subword: LoadedModel, pairs: list[Pair]) -> None:
    chosen = pairs[:40]
    with_p = evaluate(subword, chosen, pretokenized=True, progress=False, saliency_sentences=0)
    sure_only = [dataclasses.replace(p, possible=None) for p in chosen]
    without = evaluate(subword, sure_only, pretokenized=True, progress=False, saliency_sentences=0)
    assert with_p["aer_sentences"] == without["aer_sentences"] == 40
    assert math.isfinite(with_p["aer"]) and 0.0 <= with_p["aer"] <= 1.0
    # the same predicted links; a link on a possible gold link counts only with them
    assert with_p["aer"] < without["aer"]
    assert with_p["aer_recall"] == pytest.approx(without["aer_recall"])
    assert with_p["gold_possible_links"] > 0 and without["gold_possible_links"] == 0
    assert with_p["length_of"] == "source words"
    assert sum(b["sentences"] for b in with_p["bleu_by_length"]) == 40


def test_evaluate_command_on_hansards_reports_sure_and_possible_aer(
    tiny_subword: Path, hansards: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["evaluate", "--model", str(tiny_subword), "--data", str(hansards), "--limit", "12"]
    assert cli(argv) == 0
    out = capsys.readouterr().out
    (line,) = [x for x in out.splitlines() if x.startswith("AER  ")]
    assert 0.0 <= float(line.split()[1]) <= 1.0
    assert "12 sentences" in line and "sure and possible links (" in line
    assert "argmax attention over words" in line


def moses_model(folder: Path, pairs: list[Pair]) -> LoadedModel:
    """An untrained lab-style (Moses, word-level) model whose vocabulary holds the
    Hansards' whitespace tokens."""
    en = Vocab.build(p.source.split() for p in pairs)
    fr = Vocab.build(p.target.split() for p in pairs)
    config = ModelConfig(
        src_vocab_size=len(en), tgt_vocab_size=len(fr), emb_dim=8, hidden_dim=8,
        attention="additive", dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    card = {"name": folder.name, "source_lang": "en", "target_lang": "fr"}
    save_checkpoint(folder, Seq2Seq(config), en, fr, card)
    return load_checkpoint(folder, "cpu")


def test_moses_model_reads_pretokenized_text_as_it_is(
    tmp_path: Path, hansards: Path, pairs: list[Pair]
) -> None:
    assert is_pretokenized(hansards)  # the import's meta.json says so
    assert not is_pretokenized(SAMPLE / "test.tsv")  # the lab corpus: Moses tokens
    # sentences whose Moses tokens are not the Hansards' ("member 's", "p.m.", "hon.")
    odd = [p for p in pairs if tokenize(p.source, "en") != p.source.split()][:6]
    assert len(odd) == 6
    loaded = moses_model(tmp_path / "lab", pairs)
    for pair in odd:
        seg = segment(loaded.src_tokenizer, pair.source, pretokenized=True)
        assert seg.pieces == seg.words == pair.source.split()
        assert seg.spans == [(k, k + 1) for k in range(len(seg.words))]
    result = evaluate(loaded, odd, pretokenized=True, progress=False, saliency_sentences=0)
    assert result["aer_sentences"] == 6 and 0.0 <= result["aer"] <= 1.0
    assert result["length_of"] == "source tokens"
    # the same sentences tokenized again would not be the words the gold indexes
    again = [segment(loaded.src_tokenizer, p.source) for p in odd]
    assert any(len(s.words) != len(p.source.split()) for s, p in zip(again, odd, strict=True))
