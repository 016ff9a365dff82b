"""Micro-batching: the Batcher on a stand-in translator (exact batch shapes), and the real
service under 16 simultaneous clients, batching on and off."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from attnviz.app.batching import Batcher, DecodeParams
from attnviz.app.main import create_app
from attnviz.app.metrics import Metrics
from attnviz.model.translator import Translator
from tests.app.support import SENTENCES, Models, make_settings

GREEDY = DecodeParams()


class Recorder:
    """Stands in for a Translator: upper-cases texts, records every batch it gets."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[list[str]] = []
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    def translate_batch(self, texts: Sequence[str], **options: Any) -> list[str]:
        with self._lock:
            self.calls.append(list(texts))
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            time.sleep(self.delay)
            if any("bad" in t for t in texts):
                raise ValueError("bad text")
            return [t.upper() for t in texts]
        finally:
            with self._lock:
                self.active -= 1


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _gather(
    batcher: Batcher, translator: Recorder, jobs: Sequence[tuple[str, DecodeParams]]
) -> list[Any]:
    as_translator = cast(Translator, translator)
    return await asyncio.gather(
        *(batcher.translate("m", as_translator, [text], p) for text, p in jobs),
        return_exceptions=True,
    )


def test_requests_arriving_together_run_as_one_batch() -> None:
    async def scenario() -> tuple[Recorder, list[Any]]:
        fake = Recorder()
        batcher = Batcher(Metrics(), window_s=0.02, max_batch=64, workers=1)
        batcher.start()
        out = await _gather(batcher, fake, [(f"t{i}", GREEDY) for i in range(5)])
        await batcher.close()
        return fake, out

    fake, out = run(scenario())
    assert fake.calls == [["t0", "t1", "t2", "t3", "t4"]]
    for i, (results, info) in enumerate(out):
        assert results == [f"T{i}"]
        assert (info.sentences, info.requests) == (5, 5)


def test_max_batch_and_options_split_groups() -> None:
    other = DecodeParams(beam_size=2)

    async def scenario() -> tuple[Recorder, list[Any]]:
        fake = Recorder()
        batcher = Batcher(Metrics(), window_s=0.02, max_batch=4, workers=1)
        batcher.start()
        jobs = [(f"a{i}", GREEDY) for i in range(6)] + [("b0", other), ("b1", other)]
        out = await _gather(batcher, fake, jobs)
        await batcher.close()
        return fake, out

    fake, out = run(scenario())
    assert sorted(fake.calls) == [["a0", "a1", "a2", "a3"], ["a4", "a5"], ["b0", "b1"]]
    assert [r for r, _ in out] == [["A0"], ["A1"], ["A2"], ["A3"], ["A4"], ["A5"], ["B0"], ["B1"]]


def test_one_bad_job_does_not_fail_its_batch() -> None:
    async def scenario() -> list[Any]:
        batcher = Batcher(Metrics(), window_s=0.02, workers=1)
        batcher.start()
        out = await _gather(
            batcher, Recorder(), [("ok1", GREEDY), ("bad", GREEDY), ("ok2", GREEDY)]
        )
        await batcher.close()
        return out

    ok1, bad, ok2 = run(scenario())
    assert ok1[0] == ["OK1"] and ok2[0] == ["OK2"]
    assert ok1[1].requests == 1, "run again alone"
    assert isinstance(bad, ValueError)


def test_batches_grow_while_the_workers_are_busy() -> None:
    async def scenario() -> Recorder:
        fake = Recorder(delay=0.15)
        batcher = Batcher(Metrics(), window_s=0.0, workers=1)
        batcher.start()
        first = asyncio.ensure_future(batcher.translate("m", cast(Translator, fake), ["x"], GREEDY))
        await asyncio.sleep(0.05)  # the first batch is running
        await _gather(batcher, fake, [(f"t{i}", GREEDY) for i in range(10)])
        await first
        await batcher.close()
        return fake

    fake = run(scenario())
    assert fake.calls == [["x"], [f"t{i}" for i in range(10)]]


def test_no_global_lock_batches_run_side_by_side() -> None:
    async def scenario() -> Recorder:
        fake = Recorder(delay=0.2)
        batcher = Batcher(Metrics(), window_s=0.0, workers=2)
        batcher.start()
        await _gather(batcher, fake, [("a", GREEDY), ("b", DecodeParams(top_k=3))])
        await batcher.close()
        return fake

    assert run(scenario()).most_active == 2


def test_batching_off_runs_each_request_alone() -> None:
    async def scenario() -> Recorder:
        fake = Recorder()
        batcher = Batcher(Metrics(), enabled=False, workers=2)
        batcher.start()
        await _gather(batcher, fake, [(f"t{i}", GREEDY) for i in range(4)])
        await batcher.close()
        return fake

    assert sorted(run(scenario()).calls) == [["t0"], ["t1"], ["t2"], ["t3"]]


# -- the real service under concurrent clients ---------------------------------------------


def _hammer(c: TestClient, model: str, n: int = 16) -> list[tuple[str, dict[str, Any], int]]:
    texts = [SENTENCES[i % len(SENTENCES)] for i in range(n)]
    barrier = threading.Barrier(n)

    def post(text: str) -> tuple[str, dict[str, Any], int]:
        barrier.wait()
        r = c.post("/api/translate", json={"text": text, "model": model, "top_k": 2})
        return text, r.json(), r.status_code

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(post, texts))


def _expected(c: TestClient, model: str) -> dict[str, str]:
    return {
        t: c.post("/api/translate", json={"text": t, "model": model, "top_k": 2}).json()[
            "translation"
        ]
        for t in SENTENCES
    }


def test_sixteen_clients_at_once_get_their_own_answers(client: TestClient, models: Models) -> None:
    expected = _expected(client, models.attention)
    before = client.get("/metrics").text
    for text, body, status in _hammer(client, models.attention):
        assert status == 200, body
        assert body["translation"] == expected[text]
        assert body["source_tokens"][0] == text.split()[0]
    after = client.get("/metrics").text

    def total(text: str, name: str) -> float:
        label = f'{{model="{models.attention}"}}'
        for line in text.splitlines():
            if line.startswith(name + label):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    batches = total(after, "attnviz_batch_requests_count") - total(
        before, "attnviz_batch_requests_count"
    )
    requests = total(after, "attnviz_batch_requests_sum") - total(
        before, "attnviz_batch_requests_sum"
    )
    assert requests == 16
    assert batches < 16, "requests arriving together shared model batches"


@pytest.mark.parametrize("micro_batch", [False])
def test_sixteen_clients_without_batching(
    two_models_dir: Path, models: Models, micro_batch: bool
) -> None:
    settings = make_settings(two_models_dir, micro_batch=micro_batch)
    with TestClient(create_app(settings)) as c:
        expected = _expected(c, models.attention)
        for text, body, status in _hammer(c, models.attention):
            assert status == 200, body
            assert body["translation"] == expected[text]
        assert c.get("/api/health").json()["micro_batching"] is False
