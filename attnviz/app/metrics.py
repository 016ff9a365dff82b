"""Prometheus metrics, in the text exposition format (0.0.4), without a client library.

Request counts by endpoint and status, a latency histogram per endpoint, the sizes of the
model batches the micro-batcher runs, and which models loaded. One :class:`Metrics`
object per app (created with it, reached through ``app.state``); a small lock guards the
counters only while they are updated, never while a request runs.

With several server processes (``attnviz serve --processes N``) each process publishes
its counters to a folder the processes share (``<pid>.json``, about once a second) and
``/metrics`` adds up its own live counters and the others' last published ones, as
prometheus_client's multiprocess mode does: a scrape sees every process, the others up to
a second late. A process that has exited keeps its totals (counters only grow).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    def add(self, counts: Sequence[int], total: float, count: int) -> None:
        """Another histogram's observations, over the same bounds."""
        if len(counts) != len(self.counts):
            raise ValueError(f"{len(counts)} bucket counts for {len(self.counts)} bounds")
        self.counts = [a + int(b) for a, b in zip(self.counts, counts, strict=True)]
        self.total += float(total)
        self.count += int(count)

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
    """The counters of one app; ``share_dir``: the folder the processes of one service
    publish their counters to (None: this process is the service)."""

    def __init__(self, share_dir: Path | None = None) -> None:
        self.share_dir = share_dir
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
            values = (float(sentences), float(requests), seconds)
            for (_, table, bounds), value in zip(self._histograms(), values, strict=True):
                hist = table.get(model)
                if hist is None:
                    hist = table[model] = Histogram(bounds)
                hist.observe(value)

    def _histograms(self) -> tuple[tuple[str, dict[str, Histogram], tuple[float, ...]], ...]:
        """The per-model batch histograms: (snapshot key, table, bucket bounds)."""
        batch_bounds = tuple(float(b) for b in BATCH_BUCKETS)
        return (
            ("batches", self._batches, batch_bounds),
            ("batch_requests", self._batch_requests, batch_bounds),
            ("inference", self._inference, LATENCY_BUCKETS),
        )

    def snapshot(self) -> dict[str, Any]:
        """Every counter, as JSON-able data (what :meth:`absorb` adds up)."""
        with self._lock:
            out: dict[str, Any] = {
                "requests": [[*key, n] for key, n in self._requests.items()],
                "latency": [[*k, h.counts, h.total, h.count] for k, h in self._latency.items()],
            }
            for name, table, _ in self._histograms():
                out[name] = [[m, h.counts, h.total, h.count] for m, h in table.items()]
            return out

    def absorb(self, snapshot: dict[str, Any]) -> None:
        """Add another process's counters (a :meth:`snapshot`) to these."""
        with self._lock:
            for method, path, status, n in snapshot["requests"]:
                key = (method, path, status)
                self._requests[key] = self._requests.get(key, 0) + int(n)
            for method, path, counts, total, count in snapshot["latency"]:
                hist = self._latency.setdefault((method, path), Histogram(LATENCY_BUCKETS))
                hist.add(counts, total, count)
            for name, table, bounds in self._histograms():
                for model, counts, total, count in snapshot[name]:
                    table.setdefault(model, Histogram(bounds)).add(counts, total, count)

    def publish(self) -> None:
        """Write this process's counters to the shared folder (a reader sees the old file
        or the new one)."""
        if self.share_dir is None:
            return
        path = self.share_dir / f"{os.getpid()}.json"
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.snapshot()), encoding="utf-8")
        os.replace(tmp, path)

    def render(self, registry: ModelRegistry | None) -> str:
        """The exposition text: this process's counters, plus the other processes' last
        published ones when the service has several."""
        if self.share_dir is None:
            return self._render(registry)
        total = Metrics()
        total.absorb(self.snapshot())
        own = f"{os.getpid()}.json"
        for path in sorted(self.share_dir.glob("*.json")):
            if path.name == own:
                continue
            try:
                total.absorb(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # vanished, or not ours: the others still count
        return total._render(registry)

    def _render(self, registry: ModelRegistry | None) -> str:
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
