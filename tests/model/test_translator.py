"""Tests for the Python API (Translator, Translation, attention_figure) and the
``attnviz translate`` function, on tiny random models saved as real model folders."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from attnviz.model.checkpoint import save_checkpoint
from attnviz.model.config import ModelConfig
from attnviz.model.factory import build_model
from attnviz.model.seq2seq import Seq2Seq
from attnviz.model.tokenize import tokenize
from attnviz.model.translator import (
    Translation,
    Translator,
    attention_figure,
    resolve_model_path,
    translate_command,
)
from attnviz.model.vocab import EOS, EOS_ID, Vocab

torch.set_num_threads(1)

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "train.tsv"
SENTENCES = [
    "The boy runs.",
    "My niece heated their Scottish ham.",
    "Is the Swiss bed pink?",
    "Their lawyers must cough during the meal.",
]
PAIR_RE = re.compile(r"^(\d+-\d+( \d+-\d+)*)?$")


@pytest.fixture(scope="module")
def vocabs() -> tuple[Vocab, Vocab]:
    rows = [line.split("\t") for line in SAMPLE.read_text(encoding="utf-8").splitlines()[:600]]
    src = Vocab.build(tokenize(r[0], "en") for r in rows)
    tgt = Vocab.build(tokenize(r[1], "fr") for r in rows)
    return src, tgt


def make_folder(
    root: Path, vocabs: tuple[Vocab, Vocab], attention: str = "additive", name: str = "tiny"
) -> Path:
    src_vocab, tgt_vocab = vocabs
    torch.manual_seed(0)
    model = Seq2Seq(
        ModelConfig(
            src_vocab_size=len(src_vocab),
            tgt_vocab_size=len(tgt_vocab),
            emb_dim=16,
            hidden_dim=16,
            attention=attention,
            attention_heads=4,
        )
    )
    with torch.no_grad():  # stop after a few tokens, like a trained model
        model.decoder.output.bias[EOS_ID] += 0.45
    folder = root / name
    save_checkpoint(
        folder,
        model,
        src_vocab,
        tgt_vocab,
        {"source_lang": "en", "target_lang": "fr", "name": name},
        half=False,
    )
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, vocabs: tuple[Vocab, Vocab]) -> Path:
    return make_folder(tmp_path_factory.mktemp("models"), vocabs)


@pytest.fixture(scope="module")
def translator(folder: Path) -> Translator:
    return Translator.load(folder, device="cpu")


def check_translation(t: Translation) -> None:
    n_src, n_tgt = len(t.source_tokens), len(t.target_tokens)
    assert t.source_tokens[-1] == EOS
    assert t.finished == (t.target_tokens[-1] == EOS)
    assert len(t.steps) == n_tgt
    assert [s.token for s in t.steps] == t.target_tokens
    assert all(0.0 <= s.prob <= 1.0 for s in t.steps)
    assert t.score == pytest.approx(sum(np.log(s.prob) for s in t.steps), abs=1e-3)
    assert t.attention is not None
    att = np.asarray(t.attention)
    assert att.shape == (n_tgt, n_src)
    np.testing.assert_allclose(att.sum(1), 1.0, atol=1e-5)
    assert PAIR_RE.match(t.alignment)
    words = n_tgt - 1 if t.finished else n_tgt
    links = t.alignment_links()
    assert len(links) == words
    for i, j in links:  # eos row and column excluded
        assert 0 <= i < n_src - 1 and 0 <= j < words
    json.dumps(t.to_dict())  # JSON-ready


def test_translate_returns_the_api_shape(translator: Translator) -> None:
    t = translator.translate(SENTENCES[1], top_k=3)
    check_translation(t)
    assert t.model == "tiny"
    assert t.source_tokens == [*tokenize(SENTENCES[1], "en"), EOS]
    assert t.heads is None and t.hypotheses == [] and t.beam is None
    assert t.timing_ms["total"] > 0
    assert all(len(s.top_k) == 3 for s in t.steps)
    for s in t.steps:
        probs = [c.prob for c in s.top_k]
        assert probs == sorted(probs, reverse=True) and probs[0] <= 1.0
        assert s.top_k[0].token == s.token  # greedy: the chosen token is the most likely
    d = t.to_dict(decimals=4)
    assert set(d) >= {
        "source_tokens",
        "target_tokens",
        "translation",
        "attention",
        "alignment",
        "steps",
        "score",
        "unknown_source_tokens",
        "hypotheses",
        "beam",
        "heads",
    }
    assert d["steps"][0]["top_k"][0]["prob"] == round(t.steps[0].top_k[0].prob, 4)
    assert t.translation == t.to_dict()["translation"]


def test_unknown_source_tokens_are_reported(translator: Translator) -> None:
    t = translator.translate("The zyzzyva runs.")
    assert t.source_tokens[1] == "zyzzyva"
    assert t.unknown_source_tokens == [1]
    assert translator.translate(SENTENCES[0]).unknown_source_tokens == []


def test_beam_nbest_and_tree(translator: Translator) -> None:
    t = translator.translate(SENTENCES[3], beam_size=4, n_best=3, top_k=2, record_beam=True)
    check_translation(t)
    assert len(t.hypotheses) == 3
    assert t.hypotheses[0].target_tokens == t.target_tokens
    assert t.hypotheses[0].attention == t.attention and t.hypotheses[0].hypotheses == []
    scores = [h.normalized_score for h in t.hypotheses]
    assert scores == sorted(scores, reverse=True)
    assert len({tuple(h.target_tokens) for h in t.hypotheses}) == 3
    for h in t.hypotheses:
        check_translation(h)
    beam = t.beam
    assert beam is not None and beam["beam_size"] == 4
    nodes = {n["id"]: n for n in beam["nodes"]}
    assert nodes[0]["token"] == "<s>" and nodes[0]["parent"] is None
    assert all(n["parent"] in nodes for n in beam["nodes"] if n["parent"] is not None)
    best_path = beam["paths"][0]
    assert [nodes[i]["token"] for i in best_path] == t.target_tokens
    assert len(beam["paths"]) == len(t.hypotheses)
    json.dumps(t.to_dict())


def test_translate_batch_equals_translate(translator: Translator) -> None:
    for beam in (1, 3):
        n_best = min(beam, 2)
        batch = translator.translate_batch(
            SENTENCES, batch_size=3, top_k=2, beam_size=beam, n_best=n_best
        )
        assert len(batch) == len(SENTENCES)
        for text, t in zip(SENTENCES, batch, strict=True):
            alone = translator.translate(text, top_k=2, beam_size=beam, n_best=n_best)
            assert t.target_tokens == alone.target_tokens
            assert t.alignment == alone.alignment
            assert t.attention is not None and alone.attention is not None
            np.testing.assert_allclose(t.attention, alone.attention, atol=1e-5)
    with pytest.raises(TypeError, match="list of sentences"):
        translator.translate_batch("one string")


def test_align_reads_a_given_translation(translator: Translator) -> None:
    t = translator.translate(SENTENCES[2], top_k=2)
    words = t.target_tokens[:-1] if t.finished else t.target_tokens
    if not words:
        words = ["le"]
    target = " ".join(words)
    read = translator.align(SENTENCES[2], target, top_k=2)
    check_translation(read)
    assert read.target_tokens == [*tokenize(target, "fr"), EOS]
    assert all(s.forced for s in read.steps)
    if t.finished and words == t.target_tokens[:-1] and tokenize(target, "fr") == words:
        np.testing.assert_allclose(
            [s.prob for s in read.steps], [s.prob for s in t.steps], rtol=1e-4
        )
    other = translator.align("The boy runs.", "Le garçon court.")
    assert other.target_tokens == ["Le", "garçon", "court", ".", EOS]
    assert other.translation == "Le garçon court."
    with pytest.raises(ValueError, match="empty"):
        translator.align("The boy runs.", "  ")


def test_forced_prefix_and_blocked_source(translator: Translator) -> None:
    t = translator.translate(SENTENCES[1], forced_prefix="Ma nièce")
    assert t.target_tokens[:2] == ["Ma", "nièce"]
    assert [s.forced for s in t.steps[:3]] == [True, True, False]
    b = translator.translate(SENTENCES[1], blocked_source=[0, 2])
    check_translation(b)
    assert b.attention is not None
    att = np.asarray(b.attention)
    assert (att[:, [0, 2]] == 0).all()
    assert all(i not in (0, 2) for i, _ in b.alignment_links())
    with pytest.raises(ValueError, match="blocks every position"):
        translator.translate("Hello.", blocked_source=[0, 1, 2])
    with pytest.raises(ValueError, match="empty"):
        translator.translate("   ")
    with pytest.raises(ValueError, match="n_best"):
        translator.translate(SENTENCES[0], n_best=2)


def test_load_by_name_and_errors(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import attnviz.model.translator as translator_module

    monkeypatch.setattr(translator_module, "CHECKPOINTS_DIR", folder.parent)
    assert resolve_model_path("tiny") == folder
    tr = Translator.load("tiny", device="auto")
    assert tr.name == "tiny" and tr.source_lang == "en" and tr.target_lang == "fr"
    assert tr.device.type in ("cpu", "cuda")
    with pytest.raises(FileNotFoundError, match="available: tiny"):
        Translator.load("no-such-model")


def test_multihead_model_gives_heads(tmp_path: Path, vocabs: tuple[Vocab, Vocab]) -> None:
    tr = Translator.load(make_folder(tmp_path, vocabs, "multihead", "mh"), device="cpu")
    assert tr.translate(SENTENCES[0]).heads is None  # only when asked
    t = tr.translate(SENTENCES[0], include_heads=True)
    check_translation(t)
    assert t.heads is not None and (t.heads.layers, t.heads.heads) == (1, 4)
    assert t.heads.encoder_self is None and t.heads.alignment_layer == 0
    heads = np.asarray(t.heads.cross[0])
    assert heads.shape == (4, len(t.target_tokens), len(t.source_tokens))
    np.testing.assert_allclose(heads.mean(0), np.asarray(t.attention), atol=1e-6)
    fig = attention_figure(t, head=2)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), heads[2], atol=1e-6)
    with pytest.raises(ValueError, match="head 4 does not exist"):
        attention_figure(t, head=4)
    with pytest.raises(ValueError, match="include_heads"):
        attention_figure(tr.translate(SENTENCES[0]), head=1)


def make_transformer_folder(root: Path, vocabs: tuple[Vocab, Vocab]) -> Path:
    src_vocab, tgt_vocab = vocabs
    torch.manual_seed(0)
    cfg = ModelConfig(
        src_vocab_size=len(src_vocab), tgt_vocab_size=len(tgt_vocab), emb_dim=16,
        hidden_dim=16, attention="scaled_dot", attention_heads=2, architecture="transformer",
        layers=3, ff_dim=32, alignment_layer=1,
    )  # fmt: skip
    folder = root / "tf"
    save_checkpoint(
        folder, build_model(cfg), src_vocab, tgt_vocab,
        {"name": "tf", "source_lang": "en", "target_lang": "fr"},
    )  # fmt: skip
    return folder


def test_transformer_views_every_layer_and_head(
    tmp_path: Path, vocabs: tuple[Vocab, Vocab]
) -> None:
    tr = Translator.load(make_transformer_folder(tmp_path, vocabs), device="cpu")
    t = tr.translate(SENTENCES[1], max_length=8, include_heads=True, blocked_source=[1])
    check_translation(t)
    views = t.heads
    assert views is not None and (views.layers, views.heads) == (3, 2)
    n_src, n_tgt = len(t.source_tokens), len(t.target_tokens)
    cross = np.asarray(views.cross)
    assert cross.shape == (3, 2, n_tgt, n_src)
    assert np.asarray(views.encoder_self).shape == (3, 2, n_src, n_src)
    dec = np.asarray(views.decoder_self)
    assert dec.shape == (3, 2, n_tgt, n_tgt)
    assert views.decoder_tokens == ["<s>", *t.target_tokens[:-1]]
    assert np.abs(np.triu(dec, 1)).max() == 0  # causal
    assert np.abs(cross[..., 1]).max() == 0  # the blocked position, in every layer
    # the main matrix is the alignment layer's head average, as the decoder computed it
    np.testing.assert_allclose(cross[1].mean(0), np.asarray(t.attention), atol=1e-5)
    fig = attention_figure(t, layer=2, head=1)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), cross[2, 1], atol=1e-6)
    fig = attention_figure(t, layer=0)
    np.testing.assert_allclose(np.asarray(fig.data[0].z), cross[0].mean(0), atol=1e-6)
    with pytest.raises(ValueError, match="layer 3 does not exist"):
        attention_figure(t, layer=3)
    json.dumps(t.to_dict())
    aligned = tr.align(SENTENCES[0], "Le garçon court.", include_heads=True)
    assert aligned.heads is not None and len(aligned.heads.cross[0][0]) == 5  # 4 tokens + </s>


def test_saliency_beside_attention(tmp_path: Path, vocabs: tuple[Vocab, Vocab]) -> None:
    for folder in (make_folder(tmp_path, vocabs), make_transformer_folder(tmp_path, vocabs)):
        tr = Translator.load(folder, device="cpu")
        t = tr.translate(SENTENCES[3], max_length=8, include_saliency=True)
        assert t.saliency is not None and t.saliency_correlation is not None
        sal = np.asarray(t.saliency)
        assert sal.shape == (len(t.target_tokens), len(t.source_tokens))
        np.testing.assert_allclose(sal.sum(1), 1.0, atol=1e-6)
        assert len(t.saliency_correlation) == len(t.target_tokens)
        assert all(r is None or -1.0 <= r <= 1.0 for r in t.saliency_correlation)
        assert tr.translate(SENTENCES[3], max_length=8).saliency is None


def test_model_without_attention(tmp_path: Path, vocabs: tuple[Vocab, Vocab]) -> None:
    tr = Translator.load(make_folder(tmp_path, vocabs, "none", "bottleneck"), device="cpu")
    t = tr.translate(SENTENCES[1], beam_size=2, n_best=2, record_beam=True)
    assert t.attention is None and t.heads is None and t.alignment == ""
    assert all(h.attention is None for h in t.hypotheses)
    assert tr.align(SENTENCES[0], "Le garçon court.").attention is None
    json.dumps(t.to_dict())
    with pytest.raises(ValueError, match="no attention"):
        attention_figure(t)


def test_attention_figure_axes_are_the_tokens(translator: Translator) -> None:
    t = translator.translate(SENTENCES[3])
    fig = attention_figure(t)
    assert isinstance(fig, go.Figure)
    heat = fig.data[0]
    assert heat.type == "heatmap"
    np.testing.assert_allclose(np.asarray(heat.z), np.asarray(t.attention))
    assert list(fig.layout.xaxis.ticktext) == t.source_tokens
    assert list(fig.layout.yaxis.ticktext) == t.target_tokens
    assert fig.layout.yaxis.autorange == "reversed"  # first target token at the top
    assert heat.zmin == 0 and heat.zmax == 1
    marks = fig.data[1]
    assert list(zip(marks.x, marks.y, strict=True)) == t.alignment_links()
    fig.to_json()  # serialisable, as Jupyter needs


# -- attnviz translate ---------------------------------------------------------------------


def run_cli(
    folder: Path,
    text: str,
    *,
    beam_size: int = 1,
    alignment: bool = False,
    as_json: bool = False,
    batch_size: int = 2,
    workers: int = 1,
) -> tuple[int, str]:
    out = io.StringIO()
    code = translate_command(
        str(folder),
        beam_size,
        alignment,
        as_json,
        batch_size,
        "cpu",
        io.StringIO(text),
        out,
        workers=workers,
    )
    return code, out.getvalue()


def test_cli_workers_decode_batches_side_by_side_with_the_same_output(folder: Path) -> None:
    text = "\n".join([*SENTENCES, "", *reversed(SENTENCES)]) + "\n"  # several batches of 2
    outputs = {
        workers: run_cli(folder, text, alignment=True, workers=workers)
        for workers in (1, 2, 3, 0)  # 0: one per free core
    }
    assert outputs[1][0] == 0 and len(outputs[1][1].splitlines()) == 2 * len(SENTENCES) + 1
    assert all(result == outputs[1] for result in outputs.values())


def test_default_workers_without_an_affinity_call(monkeypatch: pytest.MonkeyPatch) -> None:
    from attnviz.model.translator import default_workers, usable_cores

    assert usable_cores() >= 1
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)  # macOS, Windows
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert usable_cores() == 6
    assert default_workers(torch.device("cpu")) == 3
    assert default_workers(torch.device("cuda")) == 1


def test_cli_translates_in_order(folder: Path, translator: Translator) -> None:
    text = "\n".join([SENTENCES[3], SENTENCES[0], "", SENTENCES[1]]) + "\n"
    code, out = run_cli(folder, text)
    assert code == 0
    lines = out.split("\n")
    assert lines[-1] == "" and len(lines) == 5
    expected = [translator.translate(s).translation for s in (SENTENCES[3], SENTENCES[0])]
    assert lines[:2] == expected
    assert lines[2] == ""
    assert lines[3] == translator.translate(SENTENCES[1]).translation


def test_cli_alignment_and_json(folder: Path, translator: Translator) -> None:
    text = "\n".join(SENTENCES) + "\n"
    code, out = run_cli(folder, text, alignment=True, beam_size=2)
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == len(SENTENCES)
    for sentence, line in zip(SENTENCES, lines, strict=True):
        translation, links = line.split(" ||| ")
        assert PAIR_RE.match(links)
        expected = translator.translate(sentence, beam_size=2)
        assert translation == expected.translation and links == expected.alignment

    code, out = run_cli(folder, SENTENCES[0] + "\n\n" + SENTENCES[2] + "\n", as_json=True)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 3 and records[1] == {}
    first = records[0]
    assert first["source_tokens"] == [*tokenize(SENTENCES[0], "en"), EOS]
    assert first["translation"] == translator.translate(SENTENCES[0]).translation
    att = np.asarray(first["attention"])
    assert att.shape == (len(first["target_tokens"]), len(first["source_tokens"]))
    np.testing.assert_allclose(att.sum(1), 1.0, atol=1e-4)


def test_cli_reports_bad_model_and_options(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run_cli(tmp_path / "missing", "Hello.\n")
    assert code == 2 and out == ""
    assert "no model" in capsys.readouterr().err
    code, _ = run_cli(folder, "Hello.\n", beam_size=0)
    assert code == 2
    assert "beam_size" in capsys.readouterr().err


def test_cli_translate_sets_threads(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from attnviz.app.cli import main

    before = torch.get_num_threads()
    monkeypatch.setattr("sys.stdin", io.StringIO("The boy runs.\n"))
    try:
        assert main(["translate", "--model", str(folder), "--threads", "1", "--alignment"]) == 0
        assert torch.get_num_threads() == 1
        out = capsys.readouterr().out.strip()
        assert " ||| " in out and PAIR_RE.match(out.split(" ||| ")[1])
        assert main(["translate", "--model", str(folder), "--threads", "-2"]) == 2
        assert "--threads must be >= 0" in capsys.readouterr().err
        assert main(["translate", "--model", str(folder), "--workers", "-1"]) == 2
        assert "--workers must be >= 0" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_shortlist_option_and_commands(
    tmp_path: Path, vocabs: tuple[Vocab, Vocab], capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a shortlist the option is refused, saying how to build one; ``attnviz
    shortlist`` builds it from a corpus, the model folder then loads it, and translating
    with it (Python API and ``attnviz translate --shortlist``) uses only its words."""
    from attnviz.app.cli import main

    folder = make_folder(tmp_path, vocabs)
    plain = Translator.load(folder, device="cpu")
    with pytest.raises(ValueError, match="no lexical shortlist: build one with `attnviz shortlist"):
        plain.translate(SENTENCES[0], shortlist=True)
    assert translate_command(
        str(folder), 1, False, False, 8, "cpu", io.StringIO("Hi.\n"), io.StringIO(),
        shortlist=True,
    ) == 2  # fmt: skip
    assert "no lexical shortlist" in capsys.readouterr().err
    assert main(["shortlist", "--model", str(folder)]) == 2  # no training data in its card
    assert "give --data" in capsys.readouterr().err

    args = ["shortlist", "--model", str(folder), "--data", str(SAMPLE.parent), "--per-source", "5"]
    assert main(args) == 0
    assert "shortlist.safetensors" in capsys.readouterr().out
    fast = Translator.load(folder, device="cpu")
    shortlist = fast.shortlist()
    assert shortlist.per_source.shape == (len(vocabs[0]), 5)
    assert shortlist.info["data"] == str(SAMPLE.parent)
    text = "\n".join(SENTENCES) + "\n"
    out = io.StringIO()
    code = translate_command(
        str(folder), 1, False, False, 2, "cpu", io.StringIO(text), out, shortlist=True
    )
    assert code == 0
    for sentence, line in zip(SENTENCES, out.getvalue().splitlines(), strict=True):
        t = fast.translate(sentence, shortlist=True, top_k=3)
        assert line == t.translation
        allowed = set(shortlist.ids_for([fast.source(sentence).ids]).tolist())
        words = [fast.tgt_vocab.id(s.token) for s in t.steps]
        assert set(words) <= allowed
        assert all(fast.tgt_vocab.id(c.token) in allowed for s in t.steps for c in s.top_k)


def test_int8_option_in_the_python_api_and_the_command(
    tmp_path: Path, vocabs: tuple[Vocab, Vocab]
) -> None:
    """``int8=True`` and ``attnviz translate --int8`` score with the int8 output layer: the
    same translations as each other, batch as alone, the attention of the same words equal
    to the fp32 model's reading of them, probabilities within a few hundredths."""
    folder = make_folder(tmp_path, vocabs)
    translator = Translator.load(folder, device="cpu")
    text = "\n".join(SENTENCES) + "\n"
    out = io.StringIO()
    code = translate_command(
        str(folder), 1, False, False, 2, "cpu", io.StringIO(text), out, int8=True
    )
    assert code == 0
    batch = translator.translate_batch(SENTENCES, int8=True, top_k=2)
    compared, moved = 0, 0.0
    for sentence, line, t in zip(SENTENCES, out.getvalue().splitlines(), batch, strict=True):
        alone = translator.translate(sentence, int8=True, top_k=2)
        assert line == t.translation == alone.translation
        assert [s.prob for s in t.steps] == pytest.approx([s.prob for s in alone.steps], abs=1e-6)
        read = translator.align(sentence, t.translation)  # fp32 reading of the same words
        if t.target_tokens == read.target_tokens:
            np.testing.assert_allclose(t.attention, read.attention, atol=1e-5)
            probs = [s.prob for s in t.steps]
            assert probs == pytest.approx([s.prob for s in read.steps], abs=0.05)
            moved = max(moved, *(abs(p - s.prob) for p, s in zip(probs, read.steps, strict=True)))
            compared += 1
    assert compared >= 1  # others do not survive detokenising (test_int8 reads them by id)
    assert moved > 1e-6  # and the int8 layer really scored
