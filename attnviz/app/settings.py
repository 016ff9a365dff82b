"""Service settings, from environment variables prefixed ``ATTNVIZ_`` (pydantic-settings).

    ATTNVIZ_MODELS_DIR=checkpoints ATTNVIZ_DEVICE=cuda:0 attnviz serve

Read once (:func:`get_settings` is cached) when the app is created, never at import time;
tests build their own :class:`Settings` and pass it to ``create_app``. The request limits
here can only tighten the limits of the API contract (v1, DESIGN.md), which the request
schemas state for the OpenAPI document.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from attnviz.model.translator import usable_cores

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLED_MODELS_DIR = REPO_ROOT / "checkpoints"
PREFERRED_DEFAULT_MODEL = "en-fr-additive"

# The contract's limits (DESIGN.md, API v1): the settings may lower them, not raise them.
MAX_TEXT_CHARS = 1000
MAX_BATCH_TEXTS = 64
MAX_BEAM_SIZE = 16
MAX_LENGTH = 256
MAX_TOP_K = 20

_DEVICE = re.compile(r"^(auto|cpu|cuda|cuda:\d+)$")


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="ATTNVIZ_", extra="ignore", frozen=True)

    models_dir: Path = Field(
        default=BUNDLED_MODELS_DIR, description="folder holding one sub-folder per model"
    )
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N")
    default_model: str | None = Field(
        default=None,
        description=f"model used when a request names none (default {PREFERRED_DEFAULT_MODEL} "
        "when loaded, else the first by name)",
    )

    max_text_chars: int = Field(default=MAX_TEXT_CHARS, ge=1, le=MAX_TEXT_CHARS)
    max_batch_texts: int = Field(default=MAX_BATCH_TEXTS, ge=1, le=MAX_BATCH_TEXTS)
    max_beam_size: int = Field(default=MAX_BEAM_SIZE, ge=1, le=MAX_BEAM_SIZE)
    max_length: int = Field(default=MAX_LENGTH, ge=1, le=MAX_LENGTH)
    max_top_k: int = Field(default=MAX_TOP_K, ge=0, le=MAX_TOP_K)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # slow or idle clients (uvicorn's limits, and the body's, which uvicorn has none for);
    # a deployment puts a reverse proxy in front for the headers' (README, Docker)
    keep_alive_s: int = Field(
        default=5,
        ge=1,
        le=600,
        description="seconds an idle keep-alive connection stays open (uvicorn timeout_keep_alive)",
    )
    limit_concurrency: int = Field(
        default=512,
        ge=0,
        le=1_000_000,
        description="open connections (or running requests) per process beyond which new "
        "requests get a 503 at once (uvicorn limit_concurrency); 0 = no limit",
    )
    body_timeout_s: float = Field(
        default=10.0,
        ge=0.0,
        le=600.0,
        description="seconds a request's body may take to arrive once its headers have; "
        "then a 408 and the connection is closed; 0 = no limit",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="origins allowed by CORS, comma-separated; empty = CORS closed",
    )

    micro_batch: bool = Field(default=True, description="gather concurrent requests")
    batch_window_ms: float = Field(
        default=2.0, ge=0.0, le=100.0, description="how long a batch waits for company"
    )
    max_batch: int = Field(default=64, ge=1, le=1024, description="sentences per model batch")
    processes: int = Field(
        default=1,
        ge=1,
        le=64,
        description="server processes (uvicorn workers), each with every model, its own event "
        "loop and inference workers; /metrics adds them up",
    )
    metrics_dir: Path | None = Field(
        default=None,
        description="folder where the processes of one service share their counters "
        "(set by `attnviz serve --processes N`)",
    )
    inference_workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="threads running model batches at the same time, per process; 0 = on "
        "a CPU, the cores / processes, at most 2; on a GPU, 1",
    )
    torch_threads: int = Field(
        default=0,
        ge=0,
        le=256,
        description="torch intra-op threads; 0 = the cores / (processes x workers)",
    )
    log_requests: bool = True

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        value = value.strip().lower()
        if not _DEVICE.match(value):
            raise ValueError(f"device {value!r} is not one of auto, cpu, cuda, cuda:N")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("models_dir")
    @classmethod
    def _models_dir(cls, value: Path) -> Path:
        return value.expanduser()

    def workers_per_process(self, device_type: str = "cpu") -> int:
        """Inference workers of each process: as set; else on a CPU its share of the
        cores, at most 2 (more workers make the micro-batches smaller, not the cores
        more); on a GPU 1, as ``attnviz translate`` has."""
        if self.inference_workers:
            return self.inference_workers
        if device_type != "cpu":
            return 1
        return max(1, min(2, usable_cores() // self.processes))

    def intra_op_threads(self, device_type: str = "cpu") -> int:
        """torch threads per inference worker: as set, else the cores shared by every
        worker of every process."""
        if self.torch_threads:
            return self.torch_threads
        workers = self.processes * self.workers_per_process(device_type)
        return max(1, usable_cores() // workers)


@lru_cache
def get_settings() -> Settings:
    """The settings of this process, read from the environment once."""
    return Settings()
