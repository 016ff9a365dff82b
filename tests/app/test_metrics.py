"""/metrics in the Prometheus text format: request counts and latency per endpoint, batch
sizes, model load status."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from attnviz.app.metrics import Histogram, Metrics
from tests.app.support import Models

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_]+="(\\.|[^"\\])*",?)*\})? (\S+)$')


def parse(text: str) -> list[tuple[str, str, float]]:
    """(name, labels, value) of every sample; fails on a malformed line."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            assert line.startswith(("# HELP ", "# TYPE ")) or not line, line
            continue
        m = SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        out.append((m.group(1), m.group(2) or "", float(m.group(5))))
    return out


def value(samples: list[tuple[str, str, float]], name: str, *labels: str) -> float:
    found = [v for n, lab, v in samples if n == name and all(x in lab for x in labels)]
    assert found, (name, labels)
    return sum(found)


def test_metrics_after_requests(client: TestClient, models: Models) -> None:
    before = parse(client.get("/metrics").text)
    for _ in range(3):
        assert client.post("/api/translate", json={"text": "The boy runs."}).status_code == 200
    client.post("/api/translate", json={"text": ""})
    client.get(f"/api/models/{models.attention}")
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = parse(r.text)

    def delta(name: str, *labels: str) -> float:
        try:
            old = value(before, name, *labels)
        except AssertionError:
            old = 0.0
        return value(samples, name, *labels) - old

    ok = ('path="/api/translate"', 'status="200"', 'method="POST"')
    assert delta("attnviz_requests_total", *ok) == 3
    assert delta("attnviz_requests_total", 'path="/api/translate"', 'status="422"') == 1
    # the route's template, not the model's name, labels the path
    assert delta("attnviz_requests_total", 'path="/api/models/{name:path}"') == 1
    assert models.attention not in "".join(lab for n, lab, _ in samples if "path=" in lab)
    post = ('method="POST"', 'path="/api/translate"')
    count = value(samples, "attnviz_request_duration_seconds_count", *post)
    inf = value(samples, "attnviz_request_duration_seconds_bucket", *post, 'le="+Inf"')
    assert count == inf >= 4
    buckets = [
        v
        for n, lab, v in samples
        if n == "attnviz_request_duration_seconds_bucket" and all(x in lab for x in post)
    ]
    assert buckets == sorted(buckets), "cumulative buckets"
    assert delta("attnviz_batch_sentences_count", f'model="{models.attention}"') >= 1
    assert value(samples, "attnviz_model_loaded", f'model="{models.attention}"') == 1
    assert value(samples, "attnviz_models_loaded") >= 1


def test_histogram_exposition() -> None:
    h = Histogram((0.1, 1.0))
    for x in (0.05, 0.5, 5.0):
        h.observe(x)
    lines = h.lines("t", 'a="b"')
    assert lines == [
        't_bucket{a="b",le="0.1"} 1',
        't_bucket{a="b",le="1.0"} 2',
        't_bucket{a="b",le="+Inf"} 3',
        't_sum{a="b"} 5.55',
        't_count{a="b"} 3',
    ]


def test_label_values_are_escaped() -> None:
    m = Metrics()
    m.observe_request("GET", 'odd"path\\\n', 200, 0.01)
    text = m.render(None)
    assert 'path="odd\\"path\\\\\\n"' in text
    parse(text)
