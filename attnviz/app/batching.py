"""Micro-batching: requests that arrive together run through the model as one batch.

Each request becomes a job (its texts, the model, the decoding options). Jobs with the
same model and options join one open group. A dispatcher task starts a group when a
worker thread is free and the group has waited ``window`` seconds since its first job, or
at once when it holds ``max_batch`` sentences or nothing else is running (a lone request
does not wait for company); the group runs as one
``Translator.translate_batch`` call in the inference thread pool, off the event loop, and
each job gets its own results back. While every worker is busy, groups keep gathering, so
batches grow with the load. No lock is held around inference: up to ``workers`` batches
(of any models) run at the same time.

With batching off, each request is one ``translate_batch`` call in the same pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from attnviz.app.logs import app_logger, log_event
from attnviz.app.metrics import Metrics
from attnviz.model.translator import Translation, Translator


@dataclass(frozen=True)
class DecodeParams:
    """The options one model batch shares (hashable: it is part of the group key)."""

    beam_size: int = 1
    n_best: int = 1
    top_k: int = 0
    max_length: int | None = None
    length_penalty: float = 1.0
    forced_prefix: str | None = None
    masked_source: tuple[int, ...] | None = None
    record_beam: bool = False
    include_heads: bool = False
    include_saliency: bool = False
    shortlist: bool = False
    int8: bool = False


@dataclass(frozen=True)
class BatchInfo:
    """How a request was run: sentences in its model batch, waiting and running time."""

    sentences: int
    requests: int
    queue_ms: float
    inference_ms: float


@dataclass(eq=False)
class _Job:
    texts: Sequence[str]
    future: asyncio.Future[tuple[list[Translation], BatchInfo]]
    arrived: float = field(default_factory=time.perf_counter)


@dataclass(eq=False)
class _Group:
    key: tuple[str, DecodeParams]
    translator: Translator
    params: DecodeParams
    created: float
    jobs: list[_Job] = field(default_factory=list)
    size: int = 0
    full: asyncio.Event = field(default_factory=asyncio.Event)


def _translate(translator: Translator, texts: list[str], p: DecodeParams) -> list[Translation]:
    return translator.translate_batch(
        texts,
        beam_size=p.beam_size,
        n_best=p.n_best,
        top_k=p.top_k,
        max_length=p.max_length,
        length_penalty=p.length_penalty,
        forced_prefix=p.forced_prefix,
        blocked_source=p.masked_source,
        record_beam=p.record_beam,
        include_heads=p.include_heads,
        include_saliency=p.include_saliency,
        shortlist=p.shortlist,
        int8=p.int8,
        batch_size=max(len(texts), 1),
    )


class Batcher:
    """Runs translation jobs in a thread pool, micro-batched when ``enabled``.

    Create it inside the running event loop (the lifespan), call :meth:`start`, and
    :meth:`close` at shutdown.
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        enabled: bool = True,
        window_s: float = 0.002,
        max_batch: int = 64,
        workers: int = 2,
    ) -> None:
        self.metrics = metrics
        self.enabled = enabled
        self.window_s = window_s
        self.max_batch = max_batch
        self.workers = workers
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="attnviz-infer")
        self._slots = asyncio.Semaphore(workers)
        self._open: dict[tuple[str, DecodeParams], _Group] = {}
        self._queue: deque[_Group] = deque()
        self._wakeup = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()  # batches in the pool

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        if self.enabled and self._dispatcher is None:
            self._dispatcher = asyncio.get_running_loop().create_task(
                self._dispatch(), name="attnviz-batcher"
            )
            self._dispatcher.add_done_callback(_dispatcher_ended)

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None
        for group in self._queue:
            for job in group.jobs:
                if not job.future.done():
                    job.future.set_exception(RuntimeError("the service is shutting down"))
        self._queue.clear()
        self._open.clear()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run_sync(self, fn: functools.partial[Translation]) -> Translation:
        """Run one call (e.g. align) in the inference pool, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    # -- submitting ---------------------------------------------------------------------

    async def translate(
        self, name: str, translator: Translator, texts: Sequence[str], params: DecodeParams
    ) -> tuple[list[Translation], BatchInfo]:
        """Translations of ``texts`` in order, and how they were run."""
        loop = asyncio.get_running_loop()
        if not self.enabled:
            start = time.perf_counter()
            async with self._slots:
                began = time.perf_counter()
                results = await loop.run_in_executor(
                    self._executor, _translate, translator, list(texts), params
                )
            ran = time.perf_counter() - began
            self.metrics.observe_batch(name, len(texts), 1, ran)
            return results, BatchInfo(len(texts), 1, (began - start) * 1000, ran * 1000)
        future: asyncio.Future[tuple[list[Translation], BatchInfo]] = loop.create_future()
        job = _Job(texts, future)
        key = (name, params)
        group = self._open.get(key)
        if group is not None and group.size + len(texts) > self.max_batch:
            self._seal(group)
            group = None
        if group is None:
            group = _Group(key, translator, params, job.arrived)
            self._open[key] = group
            self._queue.append(group)
        group.jobs.append(job)
        group.size += len(texts)
        if group.size >= self.max_batch:
            self._seal(group)
        self._wakeup.set()
        return await future

    def _seal(self, group: _Group) -> None:
        """No more jobs join this group: it runs as soon as a worker is free."""
        if self._open.get(group.key) is group:
            del self._open[group.key]
        group.full.set()

    # -- dispatching --------------------------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._slots.acquire()
            group = self._queue[0]
            wait = group.created + self.window_s - time.perf_counter()
            if wait > 0 and self._running and not group.full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(group.full.wait(), wait)
            self._queue.popleft()
            self._seal(group)
            task = asyncio.get_running_loop().create_task(self._run(group))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, group: _Group) -> None:
        loop = asyncio.get_running_loop()
        name, params = group.key
        try:
            jobs = [j for j in group.jobs if not j.future.done()]  # callers that left
            if not jobs:
                return
            texts = [t for job in jobs for t in job.texts]
            began = time.perf_counter()
            try:
                results = await loop.run_in_executor(
                    self._executor, _translate, group.translator, texts, params
                )
            except Exception as error:
                if len(jobs) == 1:
                    _fail(jobs[0], error)
                    return
                # one bad job must not fail the others: run each alone
                log_event(
                    app_logger,
                    logging.WARNING,
                    "batch_failed",
                    model=name,
                    jobs=len(jobs),
                    error=str(error)[:300],
                )
                for job in jobs:
                    began = time.perf_counter()
                    try:
                        alone = await loop.run_in_executor(
                            self._executor, _translate, group.translator, list(job.texts), params
                        )
                    except Exception as e:
                        _fail(job, e)
                        continue
                    ran = time.perf_counter() - began
                    info = BatchInfo(len(job.texts), 1, (began - job.arrived) * 1000, ran * 1000)
                    if not job.future.done():
                        job.future.set_result((alone, info))
                return
            ran = time.perf_counter() - began
            self.metrics.observe_batch(name, len(texts), len(jobs), ran)
            lo = 0
            for job in jobs:
                hi = lo + len(job.texts)
                info = BatchInfo(len(texts), len(jobs), (began - job.arrived) * 1000, ran * 1000)
                if not job.future.done():
                    job.future.set_result((results[lo:hi], info))
                lo = hi
        finally:
            self._slots.release()


def _dispatcher_ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log_event(app_logger, logging.CRITICAL, "batcher_died", error=repr(task.exception()))


def _fail(job: _Job, error: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(error)
