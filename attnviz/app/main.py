"""The FastAPI app: :func:`create_app` wires settings, middleware, routes and the lifespan
(which loads the models and starts the micro-batcher).

    uvicorn --factory attnviz.app.main:create_app      # settings from ATTNVIZ_* variables
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from attnviz.app.batching import Batcher
from attnviz.app.checks import InputProblem
from attnviz.app.logs import app_logger, log_event
from attnviz.app.metrics import Metrics
from attnviz.app.middleware import BodyLimitMiddleware, RequestContextMiddleware
from attnviz.app.registry import (
    BadModelNameError,
    ModelUnavailableError,
    UnknownModelError,
    load_registry,
)
from attnviz.app.routes import api, metrics, pages
from attnviz.app.settings import Settings, get_settings
from attnviz.model.train import resolve_device

DESCRIPTION = """
Translate between English and French with attention models and see where they look.

Every translation comes with its attention matrix: `attention[t][s]` is the weight the
decoder gave source token `s` (a column, `source_tokens[s]`, the end token `</s>` last)
when it wrote target token `t` (a row, `target_tokens[t]`). Alignments are Pharaoh
`i-j` pairs, 0-based, source-target. Errors are `{"detail": ...}` saying what to change.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load every model of the models directory, then start the micro-batcher."""
    settings: Settings = app.state.settings
    device = resolve_device(settings.device)
    torch.set_num_threads(settings.intra_op_threads(device.type))
    workers = settings.workers_per_process(device.type)
    registry = await run_in_threadpool(
        load_registry, settings.models_dir, device, settings.default_model
    )
    batcher = Batcher(
        app.state.metrics,
        enabled=settings.micro_batch,
        window_s=settings.batch_window_ms / 1000.0,
        max_batch=settings.max_batch,
        workers=workers,
    )
    batcher.start()
    app.state.registry = registry
    app.state.batcher = batcher
    log_event(
        app_logger,
        logging.INFO,
        "started",
        device=str(device),
        models=registry.names,
        failed=[f.folder for f in registry.failures],
        default_model=registry.default_name,
        micro_batch=settings.micro_batch,
        workers=workers,
        torch_threads=torch.get_num_threads(),
        process=os.getpid(),
    )
    publisher = None
    if app.state.metrics.share_dir is not None:  # one of several processes
        publisher = asyncio.create_task(_publish_metrics(app.state.metrics))
    try:
        yield
    finally:
        if publisher is not None:
            publisher.cancel()
            _publish_once(app.state.metrics)  # the final counts
        await batcher.close()


METRICS_PUBLISH_S = 1.0


async def _publish_metrics(metrics: Metrics) -> None:
    """Publish this process's counters for the others' /metrics, every second."""
    while True:
        _publish_once(metrics)
        await asyncio.sleep(METRICS_PUBLISH_S)


def _publish_once(metrics: Metrics) -> None:
    try:
        metrics.publish()
    except OSError as e:  # the shared folder is gone or full: /metrics is not worth a crash
        log_event(app_logger, logging.WARNING, "metrics_publish_failed", error=str(e))


SEND_JSON = "send a JSON object with Content-Type: application/json"
MAX_LISTED_ERRORS = 20  # a body of 5,000 unknown keys is not answered with 5,000 problems


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI's validation errors without the echoed input (it can be 64 KB), the first
    MAX_LISTED_ERRORS of them and then one saying how many more there are."""
    out: list[dict[str, Any]] = []
    for e in errors:
        msg = str(e.get("msg", ""))
        msg = msg.removeprefix("Value error, ")
        out.append({"loc": list(e.get("loc", ())), "msg": msg, "type": str(e.get("type", ""))})
    if len(out) > MAX_LISTED_ERRORS:
        more = len(out) - MAX_LISTED_ERRORS
        kinds = sorted({e["type"] for e in out[MAX_LISTED_ERRORS:]})
        out = out[:MAX_LISTED_ERRORS]
        out.append(
            {
                "loc": ["body"],
                "msg": f"and {more} more problems ({', '.join(kinds[:5])}), not listed: fix "
                f"the first {MAX_LISTED_ERRORS} and send the request again",
                "type": "too_many_errors",
            }
        )
    return out


_JSON_KINDS: tuple[tuple[type, str], ...] = (
    (list, "a JSON array"),
    (str, "a JSON string"),
    (bool, "a JSON boolean"),
    (int, "a JSON number"),
    (float, "a JSON number"),
)


def _not_an_object(request: Request, exc: RequestValidationError) -> JSONResponse | None:
    """The answer when the body as a whole is not what every POST endpoint takes (missing,
    not sent as JSON, or JSON that is not an object), else None."""
    whole = [e for e in exc.errors() if tuple(e.get("loc", ())) == ("body",)]
    if not whole:
        return None
    error_type = str(whole[0].get("type", ""))
    if error_type == "missing":
        what = "the request has no body"
    else:
        content_type = request.headers.get("content-type")
        media = (content_type or "").split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            sent = f"as {media!r}" if media else "without a Content-Type header"
            return JSONResponse({"detail": f"the body was sent {sent}: {SEND_JSON}"}, 415)
        body = exc.body
        kind = next((name for t, name in _JSON_KINDS if isinstance(body, t)), None)
        if body is None:
            kind = "JSON null"
        what = f"the body is {kind}, not an object" if kind else "the body is not a JSON object"
    detail = [{"loc": ["body"], "msg": f"{what}: {SEND_JSON}", "type": error_type}]
    return JSONResponse({"detail": detail}, status_code=422)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    answer = _not_an_object(request, exc)
    if answer is not None:
        return answer
    return JSONResponse({"detail": _clean_errors(exc.errors())}, status_code=422)


async def _input_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InputProblem)
    return JSONResponse({"detail": exc.detail()}, status_code=422)


async def _unknown_model(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _bad_model_name(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=400)


async def _model_unavailable(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503)


def _add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the installed package: the docs work offline."""
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="attnviz API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    app.add_api_route("/docs", docs, include_in_schema=False, response_class=HTMLResponse)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app, configured by ``settings`` (default: from the environment)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="attnviz",
        summary="Attention inside English-French neural machine translation",
        description=DESCRIPTION,
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,  # served below from the installed swagger-ui-bundle, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = Metrics(settings.metrics_dir)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(InputProblem, _input_problem)
    app.add_exception_handler(UnknownModelError, _unknown_model)
    app.add_exception_handler(BadModelNameError, _bad_model_name)
    app.add_exception_handler(ModelUnavailableError, _model_unavailable)
    app.include_router(api.router)
    app.include_router(metrics.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    _add_docs(app)
    # the last added runs first: headers/logs around CORS around the body limit
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["content-type"],
        )
    app.add_middleware(
        RequestContextMiddleware, metrics=app.state.metrics, log_requests=settings.log_requests
    )
    return app
