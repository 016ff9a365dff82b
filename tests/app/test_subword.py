"""The service on a real subword model: pieces and words, word-level attention, masked
words, forced decoding and the command line, over HTTP with the app's lifespan."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from attnviz.app.main import create_app
from attnviz.model.translator import Translator, translate_command
from tests.app.support import make_settings, train_tiny_subword

HELP = "Can you help me, please?"


@pytest.fixture(scope="module")
def served(tiny_subword: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The app over the tiny subword RNN and a tiny subword Transformer (fr->en)."""
    root = tmp_path_factory.mktemp("served-subword")
    (root / tiny_subword.name).symlink_to(tiny_subword, target_is_directory=True)
    train_tiny_subword(
        root,
        "fr-en-subword-transformer",
        architecture="transformer",
        attention="scaled_dot",
        attention_heads=2,
        layers=2,
        ff_dim=64,
        max_steps=60,
        valid_every=60,
    )
    with TestClient(create_app(make_settings(root))) as client:
        yield client


def _check_words(d: dict, side: str) -> None:
    tokens = d[f"{side}_tokens"]
    words = d[f"{side}_words"]
    covered = [i for w in words for i in range(w["start"], w["end"])]
    assert covered == list(range(len(tokens))), (side, words, tokens)


def test_translate_returns_pieces_and_words(served: TestClient) -> None:
    r = served.post("/api/translate", json={"text": HELP, "model": "en-fr-subword"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert [w["word"] for w in d["source_words"]] == [
        "Can",
        "you",
        "help",
        "me,",
        "please?",
        "</s>",
    ]
    assert d["unknown_source_tokens"] == []
    assert len(d["source_tokens"]) > len(d["source_words"])  # some words have several pieces
    _check_words(d, "source")
    _check_words(d, "target")
    pieces = np.asarray(d["attention"])
    words = np.asarray(d["word_attention"])
    assert pieces.shape == (len(d["target_tokens"]), len(d["source_tokens"]))
    assert words.shape == (len(d["target_words"]), len(d["source_words"]))
    np.testing.assert_allclose(words.sum(axis=1), 1.0, atol=1e-4)
    # the rule: source pieces summed, target pieces averaged
    for t, tw in enumerate(d["target_words"]):
        rows = pieces[tw["start"] : tw["end"]].mean(axis=0)
        for s, sw in enumerate(d["source_words"]):
            assert words[t, s] == pytest.approx(rows[sw["start"] : sw["end"]].sum(), abs=2e-6)
    # the alignment links words, the end token left out
    n_src = len(d["source_words"]) - 1
    n_tgt = len(d["target_words"]) - (1 if d["finished"] else 0)
    links = [tuple(map(int, link.split("-"))) for link in d["alignment"].split()]
    assert len(links) == n_tgt
    assert all(0 <= i < n_src and 0 <= j < n_tgt for i, j in links)
    assert d["translation"].split() == [w["word"] for w in d["target_words"][:n_tgt]]


def test_masking_a_word_masks_all_its_pieces(served: TestClient) -> None:
    r = served.post(
        "/api/translate", json={"text": HELP, "model": "en-fr-subword", "masked_words": [2, 4]}
    )
    assert r.status_code == 200, r.text
    d = r.json()
    att = np.asarray(d["attention"])
    for k in (2, 4):
        w = d["source_words"][k]
        assert w["end"] - w["start"] >= 2  # "help" and "please?" are several pieces here
        assert np.all(att[:, w["start"] : w["end"]] == 0.0)
    words = np.asarray(d["word_attention"])
    assert np.all(words[:, [2, 4]] == 0.0)
    bad = served.post(
        "/api/translate", json={"text": HELP, "model": "en-fr-subword", "masked_words": [9]}
    )
    assert bad.status_code == 422
    assert "source words" in bad.text and "0..5" in bad.text


def test_beam_nbest_tree_and_prefix_on_pieces(served: TestClient, tiny_subword: Path) -> None:
    body = {
        "text": "We forgot our umbrellas at the restaurant last night.",
        "model": "en-fr-subword",
        "beam_size": 4,
        "n_best": 3,
        "include_beam": True,
        "forced_prefix": "Nous avons",
        "top_k": 3,
    }
    r = served.post("/api/translate", json=body)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["translation"].startswith("Nous avons")
    # the prefix's pieces are forced; the model may go on writing the last word
    forced = Translator.load(tiny_subword, "cpu").loaded.tgt_tokenizer.segment("Nous avons").pieces
    assert d["target_tokens"][: len(forced)] == forced
    assert all(s["forced"] for s in d["steps"][: len(forced)])
    assert d["target_words"][0]["word"] == "Nous"
    assert d["target_words"][1]["word"].startswith("avons")
    assert len(d["hypotheses"]) == 3
    for h in d["hypotheses"]:
        _check_words(h, "target")
        assert np.asarray(h["word_attention"]).shape[1] == len(d["source_words"])
    assert d["beam"]["nodes"]


def test_align_reads_the_given_words(served: TestClient) -> None:
    target = "Peux-tu m'aider, s'il te plaît ?"
    r = served.post("/api/align", json={"text": HELP, "target": target, "model": "en-fr-subword"})
    assert r.status_code == 200, r.text
    d = r.json()
    assert [w["word"] for w in d["target_words"]] == [*target.split(), "</s>"]
    _check_words(d, "target")
    assert all(0 < s["prob"] <= 1 for s in d["steps"])


def test_emoji_and_other_scripts_are_not_an_error(served: TestClient) -> None:
    r = served.post(
        "/api/translate", json={"text": "I love you 😀 Привет", "model": "en-fr-subword"}
    )
    assert r.status_code == 200, r.text
    assert [w["word"] for w in r.json()["source_words"]][-3:] == ["😀", "Привет", "</s>"]


def test_translate_command_aligns_words(tiny_subword: Path) -> None:
    lines = [HELP, "", "I love you."]
    out = io.StringIO()
    code = translate_command(
        str(tiny_subword), 1, True, False, 2, "cpu", io.StringIO("\n".join(lines) + "\n"), out
    )
    assert code == 0
    rows = out.getvalue().splitlines()
    assert len(rows) == 3 and rows[1] == " ||| "
    translator = Translator.load(tiny_subword, "cpu")
    for text, row in zip(lines, rows, strict=True):
        if not text:
            continue
        translation, links = row.split(" ||| ")
        expected = translator.translate(text)
        assert translation == expected.translation
        assert links == expected.alignment
        n_words = len(text.split())
        assert all(int(link.split("-")[0]) < n_words for link in links.split())


@pytest.mark.parametrize("model", ["en-fr-subword", "fr-en-subword-transformer"])
def test_every_view_and_fast_option_on_pieces(served: TestClient, model: str) -> None:
    text = HELP if model.startswith("en") else "Peux-tu m'aider, s'il te plaît ?"
    base = {"text": text, "model": model, "beam_size": 2, "include_beam": True}
    views = {**base, "include_heads": True, "include_saliency": True, "top_k": 2}
    r = served.post("/api/translate", json=views)
    assert r.status_code == 200, r.text
    d = r.json()
    n_tgt, n_src = len(d["target_tokens"]), len(d["source_tokens"])
    assert np.asarray(d["saliency"]).shape == (n_tgt, n_src)
    if model.endswith("transformer"):
        cross = np.asarray(d["heads"]["cross"])
        assert cross.shape == (2, 2, n_tgt, n_src)
        assert np.asarray(d["heads"]["encoder_self"]).shape == (2, 2, n_src, n_src)
    for fast in ("shortlist", "int8"):
        r = served.post("/api/translate", json={**base, fast: True})
        assert r.status_code == 200, (fast, r.text)
        f = r.json()
        _check_words(f, "source")
        _check_words(f, "target")
    batch = served.post(
        "/api/translate/batch", json={"texts": [text, "Merci."], "model": model}
    ).json()["results"]
    alone = served.post("/api/translate", json={"text": text, "model": model}).json()
    assert batch[0]["translation"] == alone["translation"]
    np.testing.assert_allclose(batch[0]["word_attention"], alone["word_attention"], atol=1e-6)
