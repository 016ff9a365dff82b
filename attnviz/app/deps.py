"""Dependencies: what a route gets from the app (settings, models, batcher, metrics).

Everything lives on ``app.state``, set by ``create_app`` and the lifespan; nothing is
module-level. They are ``async def`` although they do not await: FastAPI runs a plain
``def`` dependency in its thread pool, a thread hop per dependency per request (three for
a translation, about a sixth of the event loop's time under load in py-spy).

Tests pass their own ``Settings`` to ``create_app`` (or override :func:`get_app_settings`).
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from attnviz.app.batching import Batcher
from attnviz.app.metrics import Metrics
from attnviz.app.registry import ModelRegistry
from attnviz.app.settings import Settings


async def get_app_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_registry(request: Request) -> ModelRegistry:
    return cast(ModelRegistry, request.app.state.registry)


async def get_batcher(request: Request) -> Batcher:
    return cast(Batcher, request.app.state.batcher)


async def get_metrics(request: Request) -> Metrics:
    return cast(Metrics, request.app.state.metrics)


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
BatcherDep = Annotated[Batcher, Depends(get_batcher)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
