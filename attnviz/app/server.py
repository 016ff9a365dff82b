"""``attnviz serve``: start the service with uvicorn.

Command-line options override the ``ATTNVIZ_*`` environment variables, which override
the defaults (127.0.0.1:8000, the bundled checkpoints/, device auto, one process).

With ``--processes N`` (``ATTNVIZ_PROCESSES``) uvicorn runs N worker processes on the one
socket, each made by :func:`worker_app` from the same settings (the options are handed
on as ``ATTNVIZ_*`` variables): each loads every model and has its own event loop,
micro-batcher and interpreter lock, which on this 2-core machine served 1.2-1.8x the
requests of one process at 64 clients (README, Service). They add up their /metrics
through a temporary folder made here (``ATTNVIZ_METRICS_DIR``; see
:mod:`attnviz.app.metrics`).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError

from attnviz.app.logs import configure_logging
from attnviz.app.main import create_app
from attnviz.app.settings import Settings
from attnviz.model.train import resolve_device


def serve_command(
    host: str | None = None,
    port: int | None = None,
    models_dir: str | Path | None = None,
    device: str | None = None,
    processes: int | None = None,
) -> int:
    """Serve until interrupted; 2 with a message on stderr for a bad option."""
    import uvicorn

    overrides: dict[str, Any] = {
        key: value
        for key, value in (
            ("host", host),
            ("port", port),
            ("models_dir", models_dir),
            ("device", device),
            ("processes", processes),
        )
        if value is not None
    }
    try:
        settings = Settings(**overrides)
        resolve_device(settings.device)
    except (ValidationError, ValueError) as e:
        print(f"attnviz serve: {e}", file=sys.stderr)
        return 2
    if not settings.models_dir.is_dir():
        print(
            f"attnviz serve: the models directory {settings.models_dir} does not exist "
            "(--models-dir or ATTNVIZ_MODELS_DIR)",
            file=sys.stderr,
        )
        return 2
    configure_logging()
    common = uvicorn_options(settings)
    if settings.processes == 1:
        uvicorn.run(create_app(settings), **common)
        return 0
    # the worker processes read their settings from the environment: hand the options on
    for key, value in overrides.items():
        os.environ[f"ATTNVIZ_{key.upper()}"] = str(value)
    shared = None
    if settings.metrics_dir is None:  # where the processes add up their /metrics
        shared = tempfile.mkdtemp(prefix="attnviz-metrics-")
        os.environ["ATTNVIZ_METRICS_DIR"] = shared
    try:
        uvicorn.run(
            "attnviz.app.server:worker_app",
            factory=True,
            workers=settings.processes,
            # uvicorn kills a worker that has not answered its supervisor within this (5 s
            # by default); a worker imports torch and loads every model first
            timeout_worker_healthcheck=WORKER_STARTUP_S,
            **common,
        )
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)
    return 0


WORKER_STARTUP_S = 300


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options from the settings: address, logs, and the limits on slow or idle
    clients (an idle keep-alive connection is closed after ``keep_alive_s``; beyond
    ``limit_concurrency`` connections a request gets a 503 at once). uvicorn has no
    timeout for reading headers or a body: the app times out bodies
    (``body_timeout_s``), and a deployment's reverse proxy the headers."""
    return {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": 10,
        "timeout_keep_alive": settings.keep_alive_s,
        "limit_concurrency": settings.limit_concurrency or None,
    }


def worker_app() -> FastAPI:
    """The app of one of ``--processes`` worker processes (uvicorn imports this)."""
    configure_logging()
    return create_app(Settings())


if __name__ == "__main__":  # python -m attnviz.app.server: settings from ATTNVIZ_* only
    raise SystemExit(serve_command())
