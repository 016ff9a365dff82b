"""Bad input, table-driven: each case gets a clear 4xx saying what to change, never a 500,
and the service keeps serving afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.app.support import Models

GOOD = "The boy runs."


@dataclass(frozen=True)
class Bad:
    id: str
    status: int
    says: str  # a piece of the message (case-insensitive)
    path: str = "/api/translate"
    method: str = "POST"
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _t(**kw: Any) -> dict[str, Any]:
    return {"text": GOOD, **kw}


def _chunks(total: int) -> Iterator[bytes]:
    yield b'{"text": "'
    for _ in range(total // 1024):
        yield b"a" * 1024
    yield b'"}'


CASES = [
    # text
    Bad("empty text", 422, "empty", json={"text": ""}),
    Bad("blank text", 422, "empty", json={"text": "   \n\t  "}),
    Bad("NUL", 422, "NUL (U+0000)", json={"text": "The boy\x00 runs."}),
    Bad("bell control char", 422, "control character", json={"text": "The boy\x07 runs."}),
    Bad("escape control char", 422, "control character", json={"text": "\x1b[31mThe boy"}),
    Bad("C1 control char", 422, "control character", json={"text": "The\x85boy"}),
    Bad(
        "lone surrogate",
        422,
        "surrogate",
        content=b'{"text": "The boy \\ud800 runs."}',
        headers={"content-type": "application/json"},
    ),
    Bad("emoji only", 422, "knows none of these words", json={"text": "😀🎉🙈"}),
    Bad("right-to-left only", 422, "send English text", json={"text": "مرحبا بالعالم"}),
    Bad("hebrew only", 422, "knows none", json={"text": "שלום עולם"}),
    Bad("too long", 422, "limit of 1000", json={"text": "a" * 1001}),
    Bad("zero-width only", 422, "no words", json={"text": "\u200b\u200b"}),  # all removed
    # body
    Bad("100 KB body", 413, "limit is 65536 bytes", json={"text": "a" * 100_000}),
    Bad(
        "invalid UTF-8",
        400,
        "not valid UTF-8",
        content=b'{"text": "\xff\xfe caf\xe9"}',
        headers={"content-type": "application/json"},
    ),
    Bad(
        "malformed JSON",
        422,
        "JSON decode error",
        content=b'{"text": "The boy',
        headers={"content-type": "application/json"},
    ),
    Bad("JSON array body", 422, "a JSON array, not an object: send a JSON object", json=["a"]),
    Bad("JSON number body", 422, "a JSON number, not an object", json=5),
    Bad(
        "JSON null body",
        422,
        "JSON null, not an object",
        content=b"null",
        headers={"content-type": "application/json"},
    ),
    Bad("no body", 422, "no body: send a JSON object with Content-Type: application/json"),
    Bad(
        "text/plain body",
        415,
        "sent as 'text/plain': send a JSON object with Content-Type: application/json",
        content=b'{"text": "The boy runs."}',
        headers={"content-type": "text/plain"},
    ),
    Bad(
        "no content type",
        415,
        "without a Content-Type header: send a JSON object",
        content=b'{"text": "The boy runs."}',
    ),
    Bad(
        "form body",
        415,
        "send a JSON object with Content-Type: application/json",
        content=b"text=The+boy+runs.",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    # wrong JSON types
    Bad("text is a number", 422, "valid string", json={"text": 5}),
    Bad("text is a list", 422, "valid string", json={"text": ["The boy"]}),
    Bad("beam_size as a string", 422, "valid integer", json=_t(beam_size="3")),
    Bad("beam_size as a float", 422, "valid integer", json=_t(beam_size=2.5)),
    Bad("top_k as a bool", 422, "valid integer", json=_t(top_k=True)),
    Bad("masked_source as a string", 422, "valid list", json=_t(masked_source="1")),
    Bad("negative masked position", 422, "greater than or equal to 0", json=_t(masked_source=[-1])),
    Bad("unknown field", 422, "extra inputs", json=_t(beam=3)),
    Bad("missing text", 422, "field required", json={"beam_size": 2}),
    # limits
    Bad("beam_size 0", 422, "greater than or equal to 1", json=_t(beam_size=0)),
    Bad("beam_size 17", 422, "less than or equal to 16", json=_t(beam_size=17)),
    Bad(
        "n_best above beam",
        422,
        "n_best (3) cannot exceed beam_size (2)",
        json=_t(beam_size=2, n_best=3),
    ),
    Bad("max_length 0", 422, "greater than or equal to 1", json=_t(max_length=0)),
    Bad("max_length 257", 422, "less than or equal to 256", json=_t(max_length=257)),
    Bad("top_k 21", 422, "less than or equal to 20", json=_t(top_k=21)),
    Bad(
        "length_penalty NaN",
        422,
        "finite",
        content=b'{"text": "a b", "length_penalty": NaN}',
        headers={"content-type": "application/json"},
    ),
    # models
    Bad("unknown model", 404, "available models are", json=_t(model="en-fr-nope")),
    Bad(
        "model as a path", 400, "looks like a path", json=_t(model="../checkpoints/en-fr-additive")
    ),
    Bad("model as an absolute path", 400, "looks like a path", json=_t(model="/etc/passwd")),
    Bad("model with a backslash", 400, "looks like a path", json=_t(model="..\\secret")),
    Bad("model with odd characters", 404, "available models are", json=_t(model="?é\u202e")),
    Bad("model card: unknown", 404, "available models are", path="/api/models/nope", method="GET"),
    Bad(
        "model card: path",
        400,
        "looks like a path",
        path="/api/models/..%2F..%2Fetc%2Fpasswd",
        method="GET",
    ),
    Bad(
        "model card: nested path",
        400,
        "looks like a path",
        path="/api/models/x/card.json",
        method="GET",
    ),
    # checked against the input
    Bad("masked position out of range", 422, "out of range", json=_t(masked_source=[99])),
    Bad("every position masked", 422, "leave at least one", json=_t(masked_source=[0, 1, 2, 3, 4])),
    Bad("prefix of unknown words", 422, "cannot write", json=_t(forced_prefix="Zzyzx Qwrtp")),
    Bad(
        "prefix longer than max_length",
        422,
        "raise max_length",
        json=_t(forced_prefix="Le garçon court .", max_length=3),
    ),
    Bad("prefix with NUL", 422, "NUL", json=_t(forced_prefix="Le\x00")),
    # batch
    Bad("batch of none", 422, "at least 1 item", path="/api/translate/batch", json={"texts": []}),
    Bad(
        "batch of 65",
        422,
        "at most 64 items",
        path="/api/translate/batch",
        json={"texts": [GOOD] * 65},
    ),
    Bad(
        "batch with a blank text",
        422,
        "empty",
        path="/api/translate/batch",
        json={"texts": [GOOD, " "]},
    ),
    Bad(
        "batch texts as a string",
        422,
        "valid list",
        path="/api/translate/batch",
        json={"texts": GOOD},
    ),
    Bad(
        "batch with an emoji-only text",
        422,
        "knows none",
        path="/api/translate/batch",
        json={"texts": [GOOD, "🙈"]},
    ),
    Bad(
        "batch masked position out of one text",
        422,
        "of texts[1]",
        path="/api/translate/batch",
        json={"texts": [GOOD, "I disappeared."], "masked_source": [4]},
    ),
    # align
    Bad("align without target", 422, "field required", path="/api/align", json={"text": GOOD}),
    Bad(
        "align with a blank target",
        422,
        "target is empty",
        path="/api/align",
        json={"text": GOOD, "target": "  "},
    ),
    Bad(
        "align with NUL in target",
        422,
        "NUL",
        path="/api/align",
        json={"text": GOOD, "target": "Le\x00"},
    ),
    Bad(
        "align with words the model does not know",
        422,
        "target has 3 word(s) model",
        path="/api/align",
        json={"text": GOOD, "target": "zzzz qqqq xxxx"},
    ),
    Bad(
        "align masking everything",
        422,
        "leave at least one",
        path="/api/align",
        json={"text": GOOD, "target": "Le garçon", "masked_source": [0, 1, 2, 3, 4]},
    ),
    # method
    Bad("GET on a POST endpoint", 405, "method not allowed", method="GET"),
]


def _detail_text(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False).lower()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(client: TestClient, models: Models, case: Bad) -> None:
    payload = case.json
    if isinstance(payload, dict) and "text" in payload and "model" not in payload:
        payload = {**payload, "model": models.attention}
    r = client.request(
        case.method, case.path, json=payload, content=case.content, headers=case.headers
    )
    assert r.status_code == case.status, r.text
    body = r.json()
    assert "detail" in body
    assert case.says.lower() in _detail_text(body), body
    if case.status == 422 and isinstance(body["detail"], list):
        for issue in body["detail"]:
            assert set(issue) == {"loc", "msg", "type"}  # the input is not echoed back
            assert issue["msg"]


def test_a_body_of_thousands_of_problems_gets_a_short_answer(
    client: TestClient, models: Models
) -> None:
    """5,000 unknown keys: the first 20 problems and a count of the rest, not 5,000 (a
    444 KB answer, seven times the request)."""
    body = {"text": GOOD, "model": models.attention, **{f"k{i}": i for i in range(5000)}}
    r = client.post("/api/translate", json=body)
    assert r.status_code == 422
    assert len(r.content) < 4096, len(r.content)
    detail = r.json()["detail"]
    assert len(detail) == 21
    assert [d["loc"] for d in detail[:2]] == [["body", "k0"], ["body", "k1"]]
    assert detail[-1]["type"] == "too_many_errors"
    assert "4980 more problems (extra_forbidden)" in detail[-1]["msg"]
    assert set(detail[-1]) == {"loc", "msg", "type"}


def test_align_names_the_words_a_word_model_does_not_know(
    client: TestClient, models: Models
) -> None:
    """As forced_prefix does: the model would read them as <unk> and report <unk>'s
    probability for them."""
    body = {"text": GOOD, "target": "Le garçon zzzz court qqqq .", "model": models.attention}
    r = client.post("/api/align", json=body)
    assert r.status_code == 422, r.text
    [issue] = r.json()["detail"]
    assert issue["loc"] == ["body", "target"]
    assert "'zzzz', 'qqqq'" in issue["msg"] and "<unk>" in issue["msg"]
    prefix = client.post(
        "/api/translate", json={**_t(forced_prefix="zzzz"), "model": models.attention}
    )
    assert prefix.status_code == 422 and "'zzzz'" in prefix.text


def test_batch_over_limit_streamed_without_length(client: TestClient) -> None:
    """A chunked body with no Content-Length is cut off at the limit too."""
    r = client.post(
        "/api/translate",
        content=_chunks(100_000),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert "limit is 65536 bytes" in r.text


def test_unknown_model_lists_the_available_ones(client: TestClient, models: Models) -> None:
    r = client.post("/api/translate", json={"text": GOOD, "model": "nope"})
    assert r.status_code == 404
    assert models.attention in r.json()["detail"]


def test_errors_point_at_the_field(client: TestClient, models: Models) -> None:
    r = client.post(
        "/api/translate/batch",
        json={"texts": [GOOD, "ok", "\x00"], "model": models.attention},
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "texts", 2]
    r = client.post("/api/translate", json=_t(beam_size=2, n_best=3, model=models.attention))
    assert r.json()["detail"][0]["loc"] == ["body", "n_best"]
    r = client.post("/api/translate", json=_t(masked_source=[0, 99], model=models.attention))
    assert r.json()["detail"][0]["loc"] == ["body", "masked_source", 1]


def test_service_keeps_serving_after_bad_input(client: TestClient, models: Models) -> None:
    for case in CASES[:12]:
        client.request(
            case.method, case.path, json=case.json, content=case.content, headers=case.headers
        )
    r = client.post("/api/translate", json={"text": GOOD, "model": models.attention})
    assert r.status_code == 200
    assert r.json()["translation"]
    assert client.get("/api/health").json()["status"] in ("ok", "degraded")
