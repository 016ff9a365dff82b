"""Settings from ATTNVIZ_* variables, and ``attnviz serve``'s function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from attnviz.app import server
from attnviz.app.settings import BUNDLED_MODELS_DIR, Settings, get_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("ATTNVIZ_MODELS_DIR", "ATTNVIZ_DEVICE", "ATTNVIZ_HOST", "ATTNVIZ_CORS_ORIGINS"):
        monkeypatch.delenv(key, raising=False)
    s = Settings()
    assert s.models_dir == BUNDLED_MODELS_DIR
    assert (s.device, s.host, s.port) == ("auto", "127.0.0.1", 8000)
    assert s.cors_origins == []
    assert (s.max_text_chars, s.max_batch_texts, s.max_beam_size) == (1000, 64, 16)
    assert (s.max_length, s.max_top_k, s.max_body_bytes) == (256, 20, 65536)


def test_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATTNVIZ_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("ATTNVIZ_DEVICE", "CUDA:1")
    monkeypatch.setenv("ATTNVIZ_DEFAULT_MODEL", "en-fr-dot")
    monkeypatch.setenv("ATTNVIZ_CORS_ORIGINS", "http://a.test, http://b.test")
    monkeypatch.setenv("ATTNVIZ_MAX_BEAM_SIZE", "8")
    monkeypatch.setenv("ATTNVIZ_MICRO_BATCH", "false")
    s = Settings()
    assert s.models_dir == tmp_path and s.device == "cuda:1"
    assert s.default_model == "en-fr-dot"
    assert s.cors_origins == ["http://a.test", "http://b.test"]
    assert s.max_beam_size == 8 and s.micro_batch is False


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ATTNVIZ_DEVICE", "gpu"),
        ("ATTNVIZ_MAX_BEAM_SIZE", "17"),  # above the contract's limit
        ("ATTNVIZ_MAX_TEXT_CHARS", "0"),
        ("ATTNVIZ_PORT", "70000"),
    ],
)
def test_bad_environment(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        Settings()


def test_read_once() -> None:
    get_settings.cache_clear()
    try:
        assert get_settings() is get_settings()
    finally:
        get_settings.cache_clear()


def test_intra_op_threads() -> None:
    assert Settings(torch_threads=3).intra_op_threads() == 3
    assert Settings(inference_workers=64).intra_op_threads() == 1


def test_serve_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    monkeypatch.setattr(server, "configure_logging", lambda: None)
    monkeypatch.delenv("ATTNVIZ_HOST", raising=False)
    monkeypatch.delenv("ATTNVIZ_PORT", raising=False)
    assert server.serve_command(None, 8123, tmp_path, "cpu") == 0
    (call,) = calls
    assert (call["host"], call["port"]) == ("127.0.0.1", 8123)
    assert call["app"].state.settings.models_dir == tmp_path
    assert call["app"].state.settings.device == "cpu"


def test_serve_command_refuses_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert server.serve_command(None, None, tmp_path, "tpu") == 2
    assert "device" in capsys.readouterr().err
    assert server.serve_command(None, None, tmp_path / "none", "cpu") == 2
    assert "does not exist" in capsys.readouterr().err
    assert server.serve_command(None, 0, tmp_path, "cpu") == 2
