"""``GET /metrics``: Prometheus text exposition."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from attnviz.app.deps import MetricsDep, RegistryDep
from attnviz.app.metrics import CONTENT_TYPE

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}},
)
async def metrics(metrics: MetricsDep, registry: RegistryDep) -> PlainTextResponse:
    """Request counts and latency histograms per endpoint, model batch sizes, and the load
    status of every model folder."""
    return PlainTextResponse(metrics.render(registry), media_type=CONTENT_TYPE)
