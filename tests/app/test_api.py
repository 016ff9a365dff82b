"""Every endpoint of the API contract over real models, and the contract's invariants on
real outputs."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from pydantic import BaseModel

from attnviz.app.main import create_app
from attnviz.app.schemas import (
    AlignResponse,
    BatchTranslateResponse,
    TranslateResponse,
)
from attnviz.model.tokenize import tokenize
from attnviz.model.translator import Translator
from tests.app.support import SENTENCES, Models, make_settings, train_tiny_transformer

PAIR = re.compile(r"^(\d+-\d+( \d+-\d+)*)?$")


def check_translation(d: dict, top_k: int = 0) -> None:
    """The invariants of one translation (or hypothesis) of the contract."""
    src, tgt = d["source_tokens"], d["target_tokens"]
    assert src and src[-1] == "</s>"
    assert tgt, "at least one target token"
    assert len(d["steps"]) == len(tgt)
    assert [s["token"] for s in d["steps"]] == tgt
    for step in d["steps"]:
        assert 0.0 <= step["prob"] <= 1.0
        assert len(step["top_k"]) == top_k
        probs = [c["prob"] for c in step["top_k"]]
        assert probs == sorted(probs, reverse=True)
    assert all(0 <= i < len(src) for i in d["unknown_source_tokens"])
    assert PAIR.match(d["alignment"])
    att = d["attention"]
    if att is None:
        assert d["alignment"] == ""
        return
    assert len(att) == len(tgt), "rows = target tokens"
    for row in att:
        assert len(row) == len(src), "columns = source tokens"
        assert abs(sum(row) - 1.0) < 1e-4, "each row sums to 1"
        assert all(w >= 0.0 for w in row)
    words_src = len(src) - 1
    words_tgt = len(tgt) - (1 if d["finished"] else 0)
    for link in d["alignment"].split():
        i, j = map(int, link.split("-"))
        assert 0 <= i < words_src and 0 <= j < words_tgt, link


def test_health(client: TestClient, models: Models) -> None:
    r = client.get("/api/health")
    assert r.status_code == 200
    h = r.json()
    assert h["status"] in ("ok", "degraded")
    assert models.attention in h["models"]
    assert h["default_model"] in h["models"]
    assert h["device"] in ("cpu", "cuda", "cuda:0") or h["device"].startswith("cuda")
    assert (h["status"] == "ok") == (h["failed"] == [] and h["warnings"] == [])


def test_models_list(client: TestClient, models: Models) -> None:
    r = client.get("/api/models")
    assert r.status_code == 200
    body = r.json()
    by_name = {m["name"]: m for m in body["models"]}
    assert models.attention in by_name
    assert [m["name"] for m in body["models"] if m["default"]] == [body["default_model"]]
    m = by_name[models.attention]
    assert (m["source_lang"], m["target_lang"]) == ("en", "fr")
    assert m["has_attention"] and m["attention"] != "none"
    assert m["parameters"] > 0
    assert set(m["metrics"]) == {"bleu", "chrf", "aer"}
    if models.plain:
        assert by_name[models.plain]["has_attention"] is False


def test_model_card(client: TestClient, models: Models) -> None:
    r = client.get(f"/api/models/{models.attention}")
    assert r.status_code == 200
    card = r.json()
    assert card["name"] == models.attention
    assert card["config"]["attention"] == card["attention"]
    assert card["vocab_sizes"]["source"] > 4 and card["vocab_sizes"]["target"] > 4
    assert isinstance(card["curve"], list) and card["curve"]
    assert "src_vocab" not in card and "tgt_vocab" not in card


@pytest.mark.parametrize("text", SENTENCES)
def test_translate_invariants(client: TestClient, models: Models, text: str) -> None:
    r = client.post("/api/translate", json={"text": text, "model": models.attention, "top_k": 3})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["model"] == models.attention
    check_translation(d, top_k=3)
    assert d["source_tokens"][:-1] == tokenize(text, "en")
    assert d["hypotheses"] == [] and d["beam"] is None and d["heads"] is None
    assert d["timing_ms"]["total"] >= d["timing_ms"]["inference"] > 0


def test_translate_default_model(client: TestClient) -> None:
    default = client.get("/api/health").json()["default_model"]
    r = client.post("/api/translate", json={"text": "The boy runs."})
    assert r.status_code == 200
    assert r.json()["model"] == default


def test_translate_without_attention(client: TestClient, models: Models) -> None:
    if models.plain is None:
        pytest.skip("no model without attention here")
    r = client.post("/api/translate", json={"text": "The boy runs.", "model": models.plain})
    assert r.status_code == 200
    d = r.json()
    assert d["attention"] is None and d["alignment"] == ""
    check_translation(d)


def test_n_best_sorted_and_beam_tree(client: TestClient, models: Models) -> None:
    body = {
        "text": "Is the Swiss bed pink?",
        "model": models.attention,
        "beam_size": 4,
        "n_best": 3,
        "include_beam": True,
        "max_length": 20,
    }
    r = client.post("/api/translate", json=body)
    assert r.status_code == 200, r.text
    d = r.json()
    hyps = d["hypotheses"]
    assert 1 <= len(hyps) <= 3
    scores = [h["normalized_score"] for h in hyps]
    assert scores == sorted(scores, reverse=True), "n-best sorted, best first"
    assert hyps[0]["translation"] == d["translation"]
    assert hyps[0]["target_tokens"] == d["target_tokens"]
    for h in hyps:
        check_translation(h)
    beam = d["beam"]
    assert beam["beam_size"] == 4
    ids = {n["id"] for n in beam["nodes"]}
    assert len(beam["paths"]) == len(hyps)
    for path in beam["paths"]:
        assert set(path) <= ids
    for node in beam["nodes"]:
        assert node["parent"] is None or node["parent"] in ids


def test_forced_prefix(client: TestClient, models: Models) -> None:
    body = {"text": "The boy runs.", "model": models.attention, "forced_prefix": "Le garçon"}
    r = client.post("/api/translate", json=body)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["target_tokens"][:2] == ["Le", "garçon"]
    assert [s["forced"] for s in d["steps"][:2]] == [True, True]
    assert not any(s["forced"] for s in d["steps"][2:])
    check_translation(d)


def test_masked_source_gets_no_weight(client: TestClient, models: Models) -> None:
    body = {"text": "The boy runs.", "model": models.attention, "masked_source": [1, 2]}
    r = client.post("/api/translate", json=body)
    assert r.status_code == 200, r.text
    d = r.json()
    check_translation(d)
    for row in d["attention"]:
        assert row[1] == 0.0 and row[2] == 0.0


def test_batch_in_input_order(client: TestClient, models: Models) -> None:
    texts = [*SENTENCES, SENTENCES[0]]
    r = client.post(
        "/api/translate/batch", json={"texts": texts, "model": models.attention, "top_k": 2}
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == len(texts)
    for text, res in zip(texts, results, strict=True):
        assert res["source_tokens"][:-1] == tokenize(text, "en")
        check_translation(res, top_k=2)
        alone = client.post(
            "/api/translate", json={"text": text, "model": models.attention, "top_k": 2}
        ).json()
        assert res["translation"] == alone["translation"]
    assert results[0]["translation"] == results[-1]["translation"]


def test_align(client: TestClient, models: Models) -> None:
    body = {
        "text": "The boy runs.",
        "target": "Le garçon court.",
        "model": models.attention,
        "top_k": 2,
    }
    r = client.post("/api/align", json=body)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["target_tokens"] == ["Le", "garçon", "court", ".", "</s>"]
    assert all(s["forced"] for s in d["steps"])
    check_translation(d, top_k=2)


def test_responses_say_what_normalisation_removed(client: TestClient, models: Models) -> None:
    """Invisible characters are dropped before the model reads the text (the same rule in
    every entry point), and the response says how many: the reader sees no difference."""
    hidden = "The\u200b boy\u200d runs\ufeff."
    r = client.post("/api/translate", json={"text": hidden, "model": models.attention})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["normalized"] == {"removed_invisible": 3, "spaces": 0, "apostrophes": 0}
    plain = client.post("/api/translate", json={"text": "The boy runs.", "model": models.attention})
    assert plain.json()["normalized"] == {"removed_invisible": 0, "spaces": 0, "apostrophes": 0}
    assert d["source_tokens"] == plain.json()["source_tokens"]
    batch = client.post(
        "/api/translate/batch",
        json={"texts": ["The boy runs.", "The\u202e boy\u00a0runs."], "model": models.attention},
    ).json()["results"]
    assert [b["normalized"]["removed_invisible"] for b in batch] == [0, 1]
    assert batch[1]["normalized"]["spaces"] == 1
    body = {"text": hidden, "target": "Le\u200b garçon court.", "model": models.attention}
    aligned = client.post("/api/align", json=body).json()
    assert aligned["normalized"]["removed_invisible"] == 3
    assert aligned["target_normalized"]["removed_invisible"] == 1


def test_align_reads_any_words_with_a_subword_model(tiny_subword: Path, tmp_path: Path) -> None:
    """Byte fallback spells any word with a subword model's pieces: nothing is unknown,
    so words a word-level model refuses are read (each piece its own probability)."""
    (tmp_path / tiny_subword.name).symlink_to(tiny_subword, target_is_directory=True)
    with TestClient(create_app(make_settings(tmp_path))) as c:
        body = {"text": "I like cats.", "target": "zzzz qqqq xxxx", "model": "en-fr-subword"}
        r = c.post("/api/align", json=body)
        assert r.status_code == 200, r.text
        assert "<unk>" not in r.json()["target_tokens"]


def test_unknown_words_are_reported_not_refused(client: TestClient, models: Models) -> None:
    for text, odd in (("The boy 😀 runs.", "😀"), ("The boy runs مرحبا .", "مرحبا")):
        r = client.post("/api/translate", json={"text": text, "model": models.attention})
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["source_tokens"].index(odd) in d["unknown_source_tokens"]
        check_translation(d)


def test_heads_are_null_for_a_single_head_model(client: TestClient, models: Models) -> None:
    body = {"text": "The boy runs.", "model": models.attention, "include_heads": True}
    d = client.post("/api/translate", json=body).json()
    assert d["attention"] is not None and d["heads"] is None  # one head: nothing more to show


@pytest.fixture(scope="module")
def transformer_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The service over a tiny real Transformer (its heads and layers over HTTP)."""
    root = tmp_path_factory.mktemp("transformer")
    train_tiny_transformer(root)
    with TestClient(create_app(make_settings(root))) as c:
        yield c


def test_transformer_heads_layers_and_saliency(transformer_client: TestClient) -> None:
    c = transformer_client
    summary = c.get("/api/models").json()["models"][0]
    assert summary["architecture"].startswith("transformer")
    assert (summary["attention_heads"], summary["layers"]) == (2, 2)
    plain = c.post("/api/translate", json={"text": SENTENCES[2]}).json()
    assert plain["heads"] is None and plain["saliency"] is None
    body = {"text": SENTENCES[2], "include_heads": True, "include_saliency": True,
            "masked_source": [0], "beam_size": 2, "n_best": 2}  # fmt: skip
    r = c.post("/api/translate", json=body)
    assert r.status_code == 200, r.text
    d = r.json()
    check_translation(d)
    n_src, n_tgt = len(d["source_tokens"]), len(d["target_tokens"])
    views = d["heads"]
    assert (views["layers"], views["heads"], views["alignment_layer"]) == (2, 2, 1)
    cross = np.asarray(views["cross"])
    assert cross.shape == (2, 2, n_tgt, n_src)
    assert np.allclose(cross.sum(-1), 1.0, atol=1e-4) and cross[..., 0].max() == 0  # masked
    assert np.allclose(cross[1].mean(0), np.asarray(d["attention"]), atol=1e-4)
    assert np.asarray(views["encoder_self"]).shape == (2, 2, n_src, n_src)
    dec = np.asarray(views["decoder_self"])
    assert dec.shape == (2, 2, n_tgt, n_tgt) and np.triu(dec, 1).max() == 0
    assert views["decoder_tokens"] == ["<s>", *d["target_tokens"][:-1]]
    sal = np.asarray(d["saliency"])
    assert sal.shape == (n_tgt, n_src) and np.allclose(sal.sum(1), 1.0, atol=1e-4)
    assert len(d["saliency_correlation"]) == n_tgt
    second = d["hypotheses"][1]
    assert np.asarray(second["heads"]["cross"]).shape[2] == len(second["target_tokens"])
    aligned = c.post(
        "/api/align",
        json={"text": SENTENCES[0], "target": "Le garçon court.", "include_heads": True},
    ).json()
    assert np.asarray(aligned["heads"]["cross"]).shape == (2, 2, 5, 5)


def model_in(annotation: object) -> type[BaseModel] | None:
    """The pydantic model inside a field's annotation (``X``, ``X | None``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for a in get_args(annotation) if (m := model_in(a)) is not None), None)


def same_keys(data: object, model: type[BaseModel], where: str = "") -> None:
    """``data`` (a response's JSON) validates against ``model`` and has exactly its fields,
    through every nested model: the decoding endpoints serialise their own dicts without
    FastAPI's validation, so this is where their shape is held to the schema."""
    model.model_validate(data)
    assert isinstance(data, dict)
    assert set(data) == set(model.model_fields), where
    for name, field in model.model_fields.items():
        sub, value = model_in(field.annotation), data[name]
        for item in value if isinstance(value, list) else [value]:
            if sub is not None and isinstance(item, dict):
                same_keys(item, sub, f"{where}.{name}")


def check_response(r: Any, model: type[BaseModel]) -> dict[str, Any]:
    """A decoding endpoint's answer: 200, JSON, strictly valid (no "0.5" for 0.5, no 1 for
    true) and with exactly the documented fields at every level."""
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    model.model_validate_json(r.content, strict=True)
    data: dict[str, Any] = r.json()
    same_keys(data, model)
    return data


def test_decoding_responses_have_exactly_the_documented_fields(
    client: TestClient, transformer_client: TestClient, models: Models
) -> None:
    translate = {"model": models.attention, "text": SENTENCES[1], "beam_size": 3, "n_best": 2,
                 "include_beam": True, "top_k": 2}  # fmt: skip
    d = check_response(client.post("/api/translate", json=translate), TranslateResponse)
    assert len(d["hypotheses"]) == 2 and d["beam"]["nodes"]
    check_response(
        client.post("/api/translate/batch", json={"texts": SENTENCES[:2], "top_k": 1}),
        BatchTranslateResponse,
    )
    align = {"text": SENTENCES[0], "target": "Le garçon court."}
    check_response(client.post("/api/align", json=align), AlignResponse)
    body = {"text": SENTENCES[2], "include_heads": True, "include_saliency": True}
    check_response(transformer_client.post("/api/translate", json=body), TranslateResponse)


def test_security_headers(client: TestClient) -> None:
    for r in (
        client.get("/api/health"),
        client.post("/api/translate", json={"text": ""}),
        client.get("/no/such/page"),
    ):
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "http" not in csp, "no third-party origin"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"


def test_cors_closed_by_default(client: TestClient) -> None:
    preflight = client.options(
        "/api/translate",
        headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    r = client.get("/api/health", headers={"Origin": "http://evil.test"})
    assert "access-control-allow-origin" not in r.headers


def test_configured_cors_and_lower_limits(two_models_dir, models: Models) -> None:
    from attnviz.app.main import create_app

    settings = make_settings(
        two_models_dir, cors_origins=["http://page.test"], max_beam_size=4, max_text_chars=20
    )
    with TestClient(create_app(settings)) as c:
        preflight = c.options(
            "/api/translate",
            headers={"Origin": "http://page.test", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers["access-control-allow-origin"] == "http://page.test"
        other = c.options(
            "/api/translate",
            headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in other.headers
        r = c.post("/api/translate", json={"text": "The boy runs.", "beam_size": 5})
        assert r.status_code == 422 and "limit of 4" in r.text
        r = c.post("/api/translate", json={"text": "The boy runs and runs and runs."})
        assert r.status_code == 422 and "limit of 20" in r.text
        assert c.post("/api/translate", json={"text": "The boy runs."}).status_code == 200


def test_openapi_documents_the_contract(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path, method in (
        ("/api/translate", "post"),
        ("/api/translate/batch", "post"),
        ("/api/align", "post"),
        ("/api/models", "get"),
        ("/api/models/{name}", "get"),
        ("/api/health", "get"),
    ):
        assert method in paths[path], path
    for name in ("TranslateRequest", "BatchTranslateRequest", "AlignRequest"):
        assert schema["components"]["schemas"][name]["examples"], name
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # the docs work offline: every script and stylesheet comes from the app itself
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and all(a.startswith("/") for a in assets), assets
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert "http" not in docs.headers["content-security-policy"]


def test_request_log_is_one_json_line(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="attnviz.access"):
        client.get("/api/models")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "attnviz.access"]
    assert lines
    line = lines[-1]
    assert line["event"] == "request"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/models", 200)
    assert line["ms"] >= 0


def test_an_unexpected_error_is_a_logged_json_500(
    two_models_dir, caplog: pytest.LogCaptureFixture
) -> None:
    """Not an input problem: a bug. The answer is still JSON with the security headers."""
    from attnviz.app.main import create_app

    app = create_app(make_settings(two_models_dir))

    async def broken() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/api/broken", broken)
    with caplog.at_level(logging.ERROR, logger="attnviz.app"), TestClient(app) as c:
        r = c.get("/api/broken")
        assert r.status_code == 500
        assert r.json() == {"detail": "internal error: the request was logged"}
        assert r.headers["x-content-type-options"] == "nosniff"
        assert c.get("/api/health").status_code == 200
    assert any("unhandled_error" in rec.getMessage() for rec in caplog.records)


def test_json_numbers_and_unicode_forms(client: TestClient, models: Models) -> None:
    """3.0 is the integer 3 in JSON; text is read in Unicode NFC (é = e + combining ´)."""
    r = client.post(
        "/api/translate",
        json={"text": "The boy runs.", "model": models.attention, "beam_size": 2.0, "top_k": 1.0},
    )
    assert r.status_code == 200, r.text
    assert all(len(s["top_k"]) == 1 for s in r.json()["steps"])
    r = client.post("/api/translate", json={"text": "The boy runs cafe\u0301.", "model": None})
    assert r.status_code == 200, r.text
    assert "café" in r.json()["source_tokens"]


def test_the_contract_maxima_are_served(client: TestClient, models: Models) -> None:
    body = {
        "text": "The boy runs.",
        "model": models.attention,
        "beam_size": 16,
        "n_best": 16,
        "top_k": 20,
        "max_length": 256,
        "include_beam": True,
    }
    r = client.post("/api/translate", json=body)
    assert r.status_code == 200, r.text
    d = r.json()
    assert 1 <= len(d["hypotheses"]) <= 16 and len(d["target_tokens"]) <= 256
    check_translation(d, top_k=20)
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(64)]
    r = client.post("/api/translate/batch", json={"texts": texts, "model": models.attention})
    assert r.status_code == 200
    assert [x["source_tokens"][0] for x in r.json()["results"]] == [t.split()[0] for t in texts]


def check_fast_option(
    client: TestClient, models: Models, option: str
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Three sentences with ``option`` true, alone and as one batch: each response keeps
    the contract, batch results equal single ones, and a trained model translates these
    easy sentences as without the option. Returns (with, without) response pairs."""
    texts = SENTENCES[:3]
    body = {"model": models.attention, "top_k": 3, option: True}
    pairs = []
    for text in texts:
        r = client.post("/api/translate", json={**body, "text": text})
        assert r.status_code == 200, r.text
        check_translation(r.json(), top_k=3)
        full = client.post("/api/translate", json={"text": text, "model": models.attention})
        if models.bundled:
            assert r.json()["translation"] == full.json()["translation"]
        pairs.append((r.json(), full.json()))
    r = client.post("/api/translate/batch", json={**body, "texts": texts})
    assert r.status_code == 200, r.text
    for one, (alone, _) in zip(r.json()["results"], pairs, strict=True):
        assert one["target_tokens"] == alone["target_tokens"]
        np.testing.assert_allclose(one["attention"], alone["attention"], atol=1e-5)
        np.testing.assert_allclose(probs(one), probs(alone), atol=1e-6)
    return pairs


def probs(d: dict[str, Any]) -> list[float]:
    return [s["prob"] for s in d["steps"]]


def test_shortlist_option(client: TestClient, models: Models, tmp_path: Path) -> None:
    """A model with a shortlist says so and decodes with it on request (the same response
    shape; batch results as alone); one without refuses the option with a 422 naming it."""
    listed = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert listed[models.attention]["shortlist"] is True
    info = client.get(f"/api/models/{models.attention}").json()["shortlist_info"]
    assert info["per_source"] == 50 and info["common"] == 100 and info["pairs"] > 0
    check_fast_option(client, models, "shortlist")
    texts = SENTENCES[:3]

    bare = tmp_path / "models" / "bare"
    bare.mkdir(parents=True)
    for name in ("card.json", "model.safetensors"):  # no shortlist.safetensors
        (bare / name).write_bytes((models.attention_folder / name).read_bytes())
    with TestClient(create_app(make_settings(bare.parent))) as c:
        [model] = c.get("/api/models").json()["models"]
        assert model["shortlist"] is False
        assert c.get(f"/api/models/{model['name']}").json()["shortlist_info"] is None
        r = c.post("/api/translate", json={"text": texts[0], "shortlist": True})
        assert r.status_code == 422
        [issue] = r.json()["detail"]
        assert issue["loc"] == ["body", "shortlist"] and "no lexical shortlist" in issue["msg"]
        assert c.post("/api/translate", json={"text": texts[0]}).status_code == 200


def test_int8_option(client: TestClient, models: Models, monkeypatch: pytest.MonkeyPatch) -> None:
    """``"int8": true`` scores with the int8 output layer: the response's shape and
    invariants hold, batch results equal single ones, the attention of the same words is
    the fp32 response's; a service whose models are on a GPU refuses it with a 422."""
    compared, moved = 0, 0.0
    for fast, full in check_fast_option(client, models, "int8"):
        if fast["target_tokens"] == full["target_tokens"]:
            np.testing.assert_allclose(fast["attention"], full["attention"], atol=1e-5)
            np.testing.assert_allclose(probs(fast), probs(full), atol=0.05)
            moved = max(moved, float(np.abs(np.subtract(probs(fast), probs(full))).max()))
            compared += 1
    assert compared >= 1 and moved > 1e-6  # int8 really scored (in the batch too: above)
    texts = SENTENCES[:3]
    body = {"model": models.attention, "int8": True}
    r = client.post("/api/translate", json={**body, "text": texts[0], "int8": "maybe"})
    assert r.status_code == 422

    monkeypatch.setattr(Translator, "device", property(lambda self: torch.device("cuda", 0)))
    r = client.post("/api/translate", json={**body, "text": texts[0]})
    assert r.status_code == 422
    [issue] = r.json()["detail"]
    assert (
        issue["loc"] == ["body", "int8"] and "CPU only" in issue["msg"] and "cuda:0" in issue["msg"]
    )
