"""/metrics in the Prometheus text format: request counts and latency per endpoint, batch
sizes, model load status."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
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


def test_processes_add_up_their_counters(tmp_path: Path) -> None:
    """Two processes of one service: each /metrics shows both, whichever answers."""
    here, there = Metrics(tmp_path), Metrics(tmp_path)
    here.observe_request("POST", "/api/translate", 200, 0.004)
    there.observe_request("POST", "/api/translate", 200, 0.02)
    there.observe_request("POST", "/api/translate", 422, 0.001)
    there.observe_batch("m", sentences=5, requests=3, seconds=0.01)
    # `there` is another process: its counters reach `here` through its published file
    (tmp_path / "999999.json").write_text(json.dumps(there.snapshot()))
    (tmp_path / "888888.json").write_text("{not json")  # a broken file is skipped
    here.publish()  # its own file is not counted twice: its live counters are used
    assert (tmp_path / f"{os.getpid()}.json").is_file()
    samples = parse(here.render(None))
    ok = ('method="POST"', 'path="/api/translate"', 'status="200"')
    assert value(samples, "attnviz_requests_total", *ok) == 2
    assert value(samples, "attnviz_requests_total", 'status="422"') == 1
    assert value(samples, "attnviz_request_duration_seconds_count") == 3
    assert value(samples, "attnviz_request_duration_seconds_sum") == pytest.approx(0.025)
    assert value(samples, "attnviz_request_duration_seconds_bucket", 'le="0.005"') == 2
    assert value(samples, "attnviz_batch_sentences_sum", 'model="m"') == 5
    here.observe_request("POST", "/api/translate", 200, 0.004)  # live, not yet published
    assert value(parse(here.render(None)), "attnviz_requests_total", *ok) == 3
    # a service of one process renders only its own counters
    alone = Metrics()
    alone.observe_request("GET", "/api/health", 200, 0.001)
    assert "/api/translate" not in alone.render(None)


def test_histograms_add_only_over_the_same_bounds() -> None:
    h = Histogram((1.0, 2.0))
    h.add([1, 2], 3.5, 3)
    assert (h.counts, h.total, h.count) == ([1, 2], 3.5, 3)
    with pytest.raises(ValueError, match="bounds"):
        h.add([1], 1.0, 1)
