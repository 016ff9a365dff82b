"""The JSON API (contract v1, DESIGN.md): translate, batch, align, models, health."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
import pydantic_core
from fastapi import APIRouter, Path, Response
from pydantic import BaseModel

from attnviz.app.batching import Batcher, BatchInfo, DecodeParams
from attnviz.app.checks import (
    InputProblem,
    Source,
    check_limits,
    check_masked,
    check_prefix,
    check_target,
    read_source,
)
from attnviz.app.deps import BatcherDep, RegistryDep, SettingsDep
from attnviz.app.registry import ModelEntry, ModelRegistry
from attnviz.app.schemas import (
    MODEL_NAME_PATTERN,
    AlignRequest,
    AlignResponse,
    BatchTranslateRequest,
    BatchTranslateResponse,
    ErrorMessage,
    FailedModel,
    HealthResponse,
    ModelCard,
    ModelsResponse,
    ModelWarning,
    Normalization,
    TranslateRequest,
    TranslateResponse,
    ValidationErrorResponse,
)
from attnviz.model.int8 import check_int8_device
from attnviz.model.normalize import normalization_changes
from attnviz.model.translator import Translation

router = APIRouter(prefix="/api", tags=["api"])

DECIMALS = 6  # attention weights in responses (rows still sum to 1 within 1e-5)
_ERRORS: tuple[tuple[int, type[BaseModel], str], ...] = (
    (400, ErrorMessage, "A model name that looks like a path"),
    (404, ErrorMessage, "Unknown model (the message lists the available ones)"),
    (413, ErrorMessage, "Request body larger than the limit"),
    (415, ErrorMessage, "The body is not sent as JSON (Content-Type: application/json)"),
    (422, ValidationErrorResponse, "Invalid input: each problem says what to change"),
    (503, ErrorMessage, "The model failed to load when the service started (the message says why)"),
)
_DECODING_ERRORS = (400, 404, 413, 415, 422, 503)


ModelNameInPath = Annotated[
    str,
    Path(
        description="a name from GET /api/models",
        json_schema_extra={"pattern": MODEL_NAME_PATTERN},
    ),
]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses of an endpoint (for OpenAPI)."""
    return {c: {"model": m, "description": d} for c, m, d in _ERRORS if c in codes}


# -- helpers ------------------------------------------------------------------------------


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _rounded(matrix: Any) -> Any:
    """Weights to DECIMALS places (compact JSON), in numpy: a Python loop over every
    weight costs about a millisecond per response."""
    return np.asarray(matrix, dtype=np.float64).round(DECIMALS).tolist()


def _hypothesis_dict(t: Translation) -> dict[str, Any]:
    # this hypothesis's own fields (the caller adds the translation's); probabilities keep
    # their precision, the matrices are rounded here
    d = t.to_dict(nested=False)
    for key in ("attention", "saliency"):
        if d[key] is not None:
            d[key] = _rounded(d[key])
    if d["heads"] is not None:
        views = d["heads"]
        for key in ("cross", "encoder_self", "decoder_self"):
            if views[key] is not None:
                views[key] = _rounded(views[key])
    for key in ("score", "normalized_score"):  # -inf only for an impossible forced token
        if not math.isfinite(d[key]):
            d[key] = -1e30
    return d


def _rendered(d: dict[str, Any]) -> Response:
    """A decoding endpoint's response, serialised by pydantic-core straight from our dict.

    Returning the dict would make FastAPI validate it against the response model first:
    every attention weight and candidate, about a tenth of the event loop's time under
    load. The model still documents the shape in OpenAPI, and the tests check real
    responses against it (the contract tests, schemathesis). Non-finite floats become
    null, as in FastAPI's own serialisation.
    """
    return Response(pydantic_core.to_json(d, inf_nan_mode="null"), media_type="application/json")


def _normalized(text: str) -> dict[str, int]:
    """What normalisation changed in a text (every count of the schema, zeros included)."""
    return {**Normalization().model_dump(), **normalization_changes(text)}


def _translation_dict(t: Translation, info: BatchInfo, start: float, text: str) -> dict[str, Any]:
    d = _hypothesis_dict(t)
    d["hypotheses"] = [_hypothesis_dict(h) for h in t.hypotheses]
    d["beam"] = None
    if t.beam is not None:
        beam = dict(t.beam)
        beam["nodes"] = [
            {**node, "score": _finite(node["score"]), "logprob": _finite(node["logprob"])}
            for node in t.beam["nodes"]
        ]
        d["beam"] = beam
    d["normalized"] = _normalized(text)
    d["timing_ms"] = {
        "total": (time.perf_counter() - start) * 1000.0,
        "queue": info.queue_ms,
        "inference": info.inference_ms,
    }
    return d


def _params(
    entry: ModelEntry,
    body: TranslateRequest | BatchTranslateRequest,
    sources: Sequence[Source],
) -> DecodeParams:
    masked = check_masked(
        body.masked_source, sources, isinstance(body, BatchTranslateRequest), body.masked_words
    )
    check_prefix(entry.translator, entry.name, body.forced_prefix, body.max_length, sources)
    if body.shortlist and entry.translator.loaded.shortlist is None:
        raise InputProblem(
            ["shortlist"],
            f"model {entry.name!r} has no lexical shortlist: send shortlist false, or pick a "
            "model whose `shortlist` is true in GET /api/models",
        )
    if body.int8:
        try:
            check_int8_device(entry.translator.device)
        except ValueError as e:
            raise InputProblem(["int8"], f"{e}; send int8 false") from e
    return DecodeParams(
        beam_size=body.beam_size,
        n_best=body.n_best,
        top_k=body.top_k,
        max_length=body.max_length,
        length_penalty=body.length_penalty,
        forced_prefix=body.forced_prefix,
        masked_source=masked,
        record_beam=body.include_beam and body.beam_size > 1,
        include_heads=body.include_heads,
        include_saliency=body.include_saliency,
        shortlist=body.shortlist,
        int8=body.int8,
    )


async def _translate(
    batcher: Batcher, entry: ModelEntry, texts: list[str], params: DecodeParams
) -> tuple[list[Translation], BatchInfo]:
    try:
        return await batcher.translate(entry.name, entry.translator, texts, params)
    except ValueError as e:  # the checks should have caught it: still the input's fault
        raise InputProblem([], str(e)) from e


def _summary(entry: ModelEntry, registry: ModelRegistry) -> dict[str, Any]:
    card = entry.card
    config = card.get("config") or {}
    metrics = card.get("metrics") or {}
    attention = str(config.get("attention", "unknown"))
    transformer = config.get("architecture") == "transformer"
    heads = config.get("attention_heads") if attention == "multihead" or transformer else None
    return {
        "name": entry.name,
        "source_lang": entry.translator.source_lang,
        "target_lang": entry.translator.target_lang,
        "architecture": str(card.get("architecture") or config.get("rnn_type", "seq2seq")),
        "attention": attention,
        "has_attention": attention != "none",
        "attention_heads": heads,
        "layers": config.get("layers") if transformer else None,
        "parameters": int(card.get("parameters") or entry.translator.model.num_parameters()),
        "metrics": {k: metrics.get(k) for k in ("bleu", "chrf", "aer")},
        "default": entry.name == registry.default_name,
        "shortlist": entry.translator.loaded.shortlist is not None,
    }


# -- endpoints ----------------------------------------------------------------------------


@router.post("/translate", response_model=TranslateResponse, responses=_errors(*_DECODING_ERRORS))
async def translate(
    body: TranslateRequest,
    registry: RegistryDep,
    settings: SettingsDep,
    batcher: BatcherDep,
) -> Response:
    """Translate one sentence; the response carries the attention matrix (rows = target
    tokens, columns = source tokens), the alignment, every step's candidates and, when
    asked, the n-best list and the beam search tree."""
    start = time.perf_counter()
    entry = registry.get(body.model)
    check_limits(
        settings,
        texts=[(["text"], body.text)],
        beam_size=body.beam_size,
        max_length=body.max_length,
        top_k=body.top_k,
    )
    sources = [read_source(entry.translator, entry.name, body.text, ["text"])]
    params = _params(entry, body, sources)
    results, info = await _translate(batcher, entry, [body.text], params)
    return _rendered(_translation_dict(results[0], info, start, body.text))


@router.post(
    "/translate/batch",
    response_model=BatchTranslateResponse,
    responses=_errors(*_DECODING_ERRORS),
)
async def translate_batch(
    body: BatchTranslateRequest,
    registry: RegistryDep,
    settings: SettingsDep,
    batcher: BatcherDep,
) -> Response:
    """Translate several sentences with the same options; results in input order."""
    start = time.perf_counter()
    entry = registry.get(body.model)
    check_limits(
        settings,
        texts=[(["texts", i], t) for i, t in enumerate(body.texts)],
        batch=len(body.texts),
        beam_size=body.beam_size,
        max_length=body.max_length,
        top_k=body.top_k,
    )
    read = functools.partial(read_source, entry.translator, entry.name)
    sources = [read(text, ["texts", i]) for i, text in enumerate(body.texts)]
    params = _params(entry, body, sources)
    results, info = await _translate(batcher, entry, list(body.texts), params)
    return _rendered(
        {
            "results": [
                _translation_dict(t, info, start, text)
                for t, text in zip(results, body.texts, strict=True)
            ],
            "timing_ms": {
                "total": (time.perf_counter() - start) * 1000.0,
                "queue": info.queue_ms,
                "inference": info.inference_ms,
            },
        }
    )


@router.post("/align", response_model=AlignResponse, responses=_errors(*_DECODING_ERRORS))
async def align(
    body: AlignRequest,
    registry: RegistryDep,
    settings: SettingsDep,
    batcher: BatcherDep,
) -> Response:
    """How the model reads a given translation (forced decoding): the attention and the
    probability of each given target word."""
    start = time.perf_counter()
    entry = registry.get(body.model)
    check_limits(
        settings, texts=[(["text"], body.text), (["target"], body.target)], top_k=body.top_k
    )
    source = read_source(entry.translator, entry.name, body.text, ["text"])
    check_target(entry.translator, entry.name, body.target)
    masked = check_masked(body.masked_source, [source], batch=False, words=body.masked_words)
    call = functools.partial(
        entry.translator.align,
        body.text,
        body.target,
        top_k=body.top_k,
        blocked_source=masked,
        include_heads=body.include_heads,
        include_saliency=body.include_saliency,
    )
    began = time.perf_counter()
    try:
        result = await batcher.run_sync(call)
    except ValueError as e:
        raise InputProblem([], str(e)) from e
    ran = (time.perf_counter() - began) * 1000.0
    d = _hypothesis_dict(result)
    d["normalized"] = _normalized(body.text)
    d["target_normalized"] = _normalized(body.target)
    d["timing_ms"] = {
        "total": (time.perf_counter() - start) * 1000.0,
        "queue": 0.0,
        "inference": ran,
    }
    return _rendered(d)


@router.get("/models", response_model=ModelsResponse)
async def list_models(registry: RegistryDep) -> dict[str, Any]:
    """Every loaded model with its languages, attention mechanism, size and test metrics."""
    return {
        "models": [_summary(e, registry) for e in registry.entries],
        "default_model": registry.default_name,
    }


@router.get("/models/{name:path}", response_model=ModelCard, responses=_errors(400, 404, 503))
async def model_card(name: ModelNameInPath, registry: RegistryDep) -> dict[str, Any]:
    """A model's card: config, metrics, BLEU by source length, training curve."""
    entry = registry.get(name)
    card = entry.card
    shortlist = entry.translator.loaded.shortlist
    summary = _summary(entry, registry)
    summary["metrics"] = dict(card.get("metrics") or {})  # every metric of the card
    return {
        **summary,
        "config": card.get("config") or {},
        "vocab_sizes": {
            "source": len(entry.translator.src_vocab),
            "target": len(entry.translator.tgt_vocab),
        },
        "bleu_by_length": card.get("bleu_by_length"),
        "curve": card.get("curve") or [],
        "training_seconds": card.get("training_seconds"),
        "steps": card.get("steps"),
        "valid_bleu": card.get("valid_bleu"),
        "data": card.get("data"),
        "shortlist_info": None if shortlist is None else shortlist.info,
    }


@router.get(
    "/health",
    response_model=HealthResponse,
    responses={503: {"model": HealthResponse, "description": "No model could be loaded"}},
)
async def health(
    registry: RegistryDep, settings: SettingsDep, response: Response
) -> HealthResponse:
    """Status, device, the models serving and the folders that failed to load (with why)."""
    status: Literal["ok", "degraded", "unavailable"]
    if len(registry) == 0:
        status = "unavailable"
        response.status_code = 503
    else:
        warned = any(e.warnings for e in registry.entries)
        status = "degraded" if registry.failures or warned else "ok"
    return HealthResponse(
        status=status,
        device=str(registry.device),
        models=registry.names,
        default_model=registry.default_name,
        failed=[
            FailedModel(folder=f.folder, name=f.name, reason=f.reason) for f in registry.failures
        ],
        warnings=[
            ModelWarning(model=e.name, folder=e.folder, warning=w)
            for e in registry.entries
            for w in e.warnings
        ],
        micro_batching=settings.micro_batch,
        uptime_s=round(time.time() - registry.loaded_at, 3),
    )
