"""Prometheus metrics, in the text exposition format (0.0.4), without a client library.

Request counts by endpoint and status, a latency histogram per endpoint, the sizes of the
model batches the micro-batcher runs, and which models loaded. One :class:`Metrics`
object per app (created with it, reached through ``app.state``); a small lock guards the
counters only while they are updated, never while a request runs.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from attnviz.app.registry import ModelRegistry

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bound, not cumulative
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out = []
        cumulative = 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            cumulative += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{_num(bound)}"}} {cumulative}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        label_block = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{label_block} {_num(self.total)}")
        out.append(f"{name}_count{label_block} {self.count}")
        return out


def _num(x: float) -> str:
    if isinstance(x, int):
        return str(x)
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)


class Metrics:
    """The counters of one app."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], Histogram] = {}
        self._batches: dict[str, Histogram] = {}
        self._batch_requests: dict[str, Histogram] = {}
        self._inference: dict[str, Histogram] = {}

    def observe_request(self, method: str, path: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, path, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            hist = self._latency.get((method, path))
            if hist is None:
                hist = self._latency[(method, path)] = Histogram(LATENCY_BUCKETS)
            hist.observe(seconds)

    def observe_batch(self, model: str, sentences: int, requests: int, seconds: float) -> None:
        """One model batch: how many sentences, from how many requests, how long."""
        with self._lock:
            for table, value, bounds in (
                (self._batches, float(sentences), BATCH_BUCKETS),
                (self._batch_requests, float(requests), BATCH_BUCKETS),
                (self._inference, seconds, LATENCY_BUCKETS),
            ):
                hist = table.get(model)
                if hist is None:
                    hist = table[model] = Histogram(tuple(float(b) for b in bounds))
                hist.observe(value)

    def render(self, registry: ModelRegistry | None) -> str:
        """The exposition text."""
        lines: list[str] = []

        def header(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")

        with self._lock:
            header("attnviz_requests_total", "counter", "HTTP requests by endpoint and status.")
            for (method, path, status), n in sorted(self._requests.items()):
                labels = _labels((("method", method), ("path", path), ("status", status)))
                lines.append(f"attnviz_requests_total{{{labels}}} {n}")
            header(
                "attnviz_request_duration_seconds",
                "histogram",
                "Time from receiving a request to the end of its response, by endpoint.",
            )
            for (method, path), hist in sorted(self._latency.items()):
                labels = _labels((("method", method), ("path", path)))
                lines += hist.lines("attnviz_request_duration_seconds", labels)
            for name, table, help_text in (
                ("attnviz_batch_sentences", self._batches, "Sentences per model batch."),
                ("attnviz_batch_requests", self._batch_requests, "Requests per model batch."),
                (
                    "attnviz_batch_inference_seconds",
                    self._inference,
                    "Time a model batch takes to run.",
                ),
            ):
                header(name, "histogram", help_text)
                for model, hist in sorted(table.items()):
                    lines += hist.lines(name, _labels((("model", model),)))
        lines += _model_lines(registry)
        return "\n".join(lines) + "\n"


def _model_lines(registry: ModelRegistry | None) -> Sequence[str]:
    lines = [
        "# HELP attnviz_model_loaded 1 for each model that loaded, 0 for a folder that failed.",
        "# TYPE attnviz_model_loaded gauge",
    ]
    if registry is None:
        return lines
    for entry in registry.entries:
        labels = _labels((("model", entry.name), ("folder", entry.folder)))
        lines.append(f"attnviz_model_loaded{{{labels}}} 1")
    for failure in registry.failures:
        labels = _labels((("model", ""), ("folder", failure.folder)))
        lines.append(f"attnviz_model_loaded{{{labels}}} 0")
    lines += [
        "# HELP attnviz_models_loaded Number of models serving.",
        "# TYPE attnviz_models_loaded gauge",
        f"attnviz_models_loaded {len(registry)}",
        "# HELP attnviz_model_load_failures Number of model folders that failed to load.",
        "# TYPE attnviz_model_load_failures gauge",
        f"attnviz_model_load_failures {len(registry.failures)}",
    ]
    return lines
