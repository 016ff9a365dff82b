"""The browser pages: translate (``/``), compare (``/compare``) and the model cards
(``/models``), plus plotly.js served from the installed plotly package (never a CDN).

Python prepares plain data, JavaScript draws it: a page carries the model list (the same
JSON as ``GET /api/models``) in a ``<script type="application/json">`` block, which the
Content-Security-Policy allows because it is data, not code; every script is a static
file under ``static/``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import importlib.resources
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from attnviz.app.deps import RegistryDep
from attnviz.app.examples import EXAMPLES
from attnviz.app.routes.api import list_models, model_card
from attnviz.app.settings import REPO_ROOT

STATIC_DIR = REPO_ROOT / "static"
TEMPLATES_DIR = REPO_ROOT / "templates"
PLOTLY_URL = "/vendor/plotly.min.js"

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


@dataclass(frozen=True)
class _Asset:
    raw: bytes
    gzipped: bytes
    etag: str


@lru_cache(maxsize=1)
def _plotly() -> _Asset:
    """plotly.min.js from the installed plotly package, read and gzipped once."""
    raw = (importlib.resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return _Asset(raw, gzip.compress(raw, compresslevel=6, mtime=0), f'"{digest}"')


@lru_cache(maxsize=1)
def _plotly_version() -> str:
    try:
        return importlib.metadata.version("plotly")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - plotly is a dependency
        return "0"


def _static_url(path: str) -> str:
    """``/static/<path>?v=<mtime>``: a changed file gets a new URL."""
    try:
        version = int((STATIC_DIR / path).stat().st_mtime)
    except OSError:
        version = 0
    return f"/static/{path}?v={version}"


templates.env.globals["static_url"] = _static_url
templates.env.globals["plotly_url"] = lambda: f"{PLOTLY_URL}?v={_plotly_version()}"


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null: the page parses its data with JSON.parse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


async def _models(registry: RegistryDep) -> Any:
    """The same data as GET /api/models."""
    return _json_safe(await list_models(registry))


def _page(request: Request, template: str, page: str, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, {"page": page, **context}, headers={"cache-control": "no-cache"}
    )


@router.get("/", response_class=HTMLResponse)
async def translate_page(request: Request, registry: RegistryDep) -> HTMLResponse:
    """Translate a sentence and see its attention: heatmap, decoder, beam, what-if."""
    return _page(
        request,
        "translate.html",
        "translate",
        models=await _models(registry),
        examples=[e._asdict() for e in EXAMPLES],
    )


@router.get("/compare", response_class=HTMLResponse)
async def compare_page(request: Request, registry: RegistryDep) -> HTMLResponse:
    """One sentence through 2-4 models side by side."""
    return _page(
        request,
        "compare.html",
        "compare",
        models=await _models(registry),
        examples=[e._asdict() for e in EXAMPLES],
    )


@router.get("/models", response_class=HTMLResponse)
async def models_page(request: Request, registry: RegistryDep) -> HTMLResponse:
    """Every model's card, training curves, and BLEU by source length for all models."""
    cards = _json_safe([await model_card(name, registry) for name in registry.names])
    return _page(request, "models.html", "models", models=await _models(registry), cards=cards)


@router.get(PLOTLY_URL)
async def plotly_js(request: Request) -> Response:
    """plotly.js of the installed plotly package (gzipped when the browser accepts it)."""
    asset = _plotly()
    headers = {
        "cache-control": "public, max-age=31536000, immutable",
        "etag": asset.etag,
        "vary": "accept-encoding",
    }
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    body = asset.raw
    if "gzip" in request.headers.get("accept-encoding", ""):
        body = asset.gzipped
        headers["content-encoding"] = "gzip"
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)
