"""Property-based tests from the app's own OpenAPI schema (schemathesis + hypothesis):
for every operation, a bounded number of generated requests, sent through TestClient (so
the app runs with its lifespan and real models); no response is a server error, and every
response has a documented status, content type and shape."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, reject, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from attnviz.app.main import create_app
from attnviz.app.settings import Settings
from tests.app.support import make_settings

MAX_EXAMPLES = 40  # per operation: valid, invalid and documented examples
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# The schema does not depend on the models, so it is read from an app without a lifespan.
SCHEMA = schemathesis.openapi.from_dict(
    create_app(Settings(models_dir=Path("/nonexistent"), log_requests=False)).openapi()
)
OPERATIONS = {
    op.label: op
    for op in (r.ok() for r in SCHEMA.get_all_operations())  # type: ignore[union-attr]
}


@pytest.fixture(scope="module")
def fuzz_client(two_models_dir: Path) -> Iterator[TestClient]:
    """The app over the test models. Lower limits keep every generated request quick (a
    beam of 16 over 256 tokens for 64 texts takes a while on a small CPU): requests above
    them get a 422, which is checked like any other answer."""
    s = make_settings(
        two_models_dir,
        max_beam_size=4,
        max_length=24,
        max_batch_texts=4,
        max_text_chars=200,
        log_requests=False,
    )
    with TestClient(create_app(s)) as c:
        yield c


def test_every_operation_is_covered() -> None:
    assert set(OPERATIONS) >= {
        "POST /api/translate",
        "POST /api/translate/batch",
        "POST /api/align",
        "GET /api/models",
        "GET /api/models/{name}",
        "GET /api/health",
        "GET /metrics",
    }


def test_the_schema_states_what_the_server_refuses() -> None:
    """What the server refuses is not allowed by the schema (a generated "valid" request
    is not then rejected, schemathesis' ST202): model names are a pattern the registry's
    names all match and a path never does; what only the model can tell (a source position
    beyond the text, a text of no known word, an unknown target word) is said in the
    field's description."""
    import re

    from attnviz.app.registry import MODEL_NAME
    from tests.app.support import BUNDLED, cards

    spec = SCHEMA.raw_schema
    parts = spec["components"]["schemas"]
    patterns = {
        parts[name]["properties"]["model"]["anyOf"][0]["pattern"]
        for name in ("TranslateRequest", "BatchTranslateRequest", "AlignRequest")
    }
    [param] = spec["paths"]["/api/models/{name}"]["get"]["parameters"]
    patterns.add(param["schema"]["pattern"])
    assert patterns == {MODEL_NAME.pattern}
    pattern = re.compile(MODEL_NAME.pattern)
    for name in cards(BUNDLED):
        assert pattern.match(name), name
    for refused in ("a:b", "a/b", "../x", "C:\\x", ".hidden", "", "x" * 101):
        assert not pattern.match(refused), refused
    translate = parts["TranslateRequest"]["properties"]
    assert "beyond its end token" in translate["masked_source"]["description"]
    assert "422" in translate["masked_source"]["description"]
    assert "knows no word" in translate["text"]["description"]
    assert "does not know" in parts["AlignRequest"]["properties"]["target"]["description"]
    for path in ("/api/translate", "/api/translate/batch", "/api/align"):
        assert {"415", "503"} <= set(spec["paths"][path]["post"]["responses"]), path


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_no_server_error(fuzz_client: TestClient, label: str) -> None:
    operation = OPERATIONS[label]
    # valid requests, invalid ones, and the examples of the schema
    strategy = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
        *SCHEMA.get_strategies_from_examples(operation),
    )
    seen: dict[int, int] = {}

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://testserver")
        kwargs.pop("cookies", None)
        if isinstance(kwargs.get("data"), bytes | str):  # a raw (negative) body
            kwargs["content"] = kwargs.pop("data")
        try:
            request = fuzz_client.build_request(**kwargs)
        except (ValueError, TypeError, httpx.InvalidURL):
            reject()  # a negative case no HTTP client can send (e.g. a bad header value)
        response = fuzz_client.send(request)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        if os.environ.get("ATTNVIZ_TEST_VERBOSE"):
            print(label, response.status_code, response.text[:120])
        case.validate_response(response, checks=CHECKS)

    check()
    # an operation without parameters has a single distinct request
    assert sum(seen.values()) >= (MAX_EXAMPLES // 2 if "{" in label or "POST" in label else 1)
    # and the service is still serving
    assert fuzz_client.get("/api/health").status_code == 200
