"""Settings from ATTNVIZ_* variables, and ``attnviz serve``'s function."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from attnviz.app import server
from attnviz.app.settings import BUNDLED_MODELS_DIR, Settings, get_settings
from attnviz.model.translator import usable_cores


@pytest.fixture(autouse=True)
def _no_attnviz_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from no ATTNVIZ_* variable, and whatever it sets is undone (setenv
    first: monkeypatch restores only what it has recorded)."""
    for key in [k for k in os.environ if k.startswith("ATTNVIZ_")]:
        monkeypatch.setenv(key, "")
        monkeypatch.delenv(key)


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
    assert Settings(inference_workers=1).intra_op_threads() == usable_cores()


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


def test_serve_command_sets_uvicorns_limits_on_slow_clients(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(kw))
    monkeypatch.setattr(server, "configure_logging", lambda: None)
    assert server.serve_command(None, 8123, tmp_path, "cpu") == 0
    monkeypatch.setenv("ATTNVIZ_KEEP_ALIVE_S", "2")
    monkeypatch.setenv("ATTNVIZ_LIMIT_CONCURRENCY", "0")
    assert server.serve_command(None, 8123, tmp_path, "cpu") == 0
    defaults, changed = calls
    assert (defaults["timeout_keep_alive"], defaults["limit_concurrency"]) == (5, 512)
    assert (changed["timeout_keep_alive"], changed["limit_concurrency"]) == (2, None)
    # every option is one uvicorn.Config takes
    uvicorn.Config(app="attnviz.app.server:worker_app", **defaults)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_half_sent_requests_are_closed_and_bounded(tmp_path: Path) -> None:
    """Through uvicorn on a real socket: a POST whose body stops arriving gets a 408 after
    ATTNVIZ_BODY_TIMEOUT_S and its connection is closed (uvicorn itself would wait for
    ever); beyond ATTNVIZ_LIMIT_CONCURRENCY connections a request gets a 503 at once."""
    import threading

    import uvicorn

    from attnviz.app.main import create_app

    settings = Settings(
        models_dir=tmp_path, port=_free_port(), body_timeout_s=0.5, limit_concurrency=3,
        log_requests=False,
    )  # fmt: skip
    options = {**server.uvicorn_options(settings), "log_level": "critical"}
    uv = uvicorn.Server(uvicorn.Config(create_app(settings), **options))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not uv.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        head = (
            b"POST /api/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n"
        )
        slow = [socket.create_connection(("127.0.0.1", settings.port)) for _ in range(2)]
        for conn in slow:
            conn.settimeout(10)
            conn.sendall(head + b'{"text": "The')  # and then nothing more
        time.sleep(0.1)
        more = socket.create_connection(("127.0.0.1", settings.port), timeout=10)
        more.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert more.recv(4096).startswith(b"HTTP/1.1 503")  # 3 open connections: the limit
        more.close()
        start = time.monotonic()
        for conn in slow:
            answer = b""
            while chunk := conn.recv(4096):  # until the server closes the connection
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b"did not arrive within 0.5 s" in answer
            conn.close()
        assert time.monotonic() - start < 5
        with httpx.Client(base_url=f"http://127.0.0.1:{settings.port}") as client:
            assert client.get("/api/health").status_code == 503  # serving (no model here)
    finally:
        uv.should_exit = True
        thread.join(timeout=30)


def test_serve_command_refuses_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert server.serve_command(None, None, tmp_path, "tpu") == 2
    assert "device" in capsys.readouterr().err
    assert server.serve_command(None, None, tmp_path / "none", "cpu") == 2
    assert "does not exist" in capsys.readouterr().err
    assert server.serve_command(None, 0, tmp_path, "cpu") == 2


def test_processes_share_the_cores() -> None:
    cores = usable_cores()
    one = Settings(processes=1)
    assert one.workers_per_process() == max(1, min(2, cores))
    assert one.intra_op_threads() == max(1, cores // one.workers_per_process())
    two = Settings(processes=2)
    assert two.workers_per_process() == max(1, min(2, cores // 2))
    assert two.intra_op_threads() == max(1, cores // (2 * two.workers_per_process()))
    assert one.workers_per_process("cuda") == two.workers_per_process("cuda") == 1
    assert Settings(processes=2, inference_workers=3).workers_per_process() == 3
    with pytest.raises(ValidationError):
        Settings(processes=0)


def test_serve_command_hands_the_options_to_worker_processes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append({"app": app, **kw}))
    monkeypatch.setattr(server, "configure_logging", lambda: None)
    with monkeypatch.context() as scoped:
        for key in ("HOST", "PORT", "MODELS_DIR", "DEVICE", "PROCESSES", "METRICS_DIR"):
            scoped.setenv(f"ATTNVIZ_{key}", "")  # recorded, so the command's value is undone
            scoped.delenv(f"ATTNVIZ_{key}")
        assert server.serve_command(None, 8124, tmp_path, "cpu", 2) == 0
        (call,) = calls
        assert call["app"] == "attnviz.app.server:worker_app"
        assert call["factory"] is True and call["workers"] == 2
        assert call["timeout_worker_healthcheck"] >= 60  # loading every model takes a while
        # what each worker process will build, from the environment it inherits
        settings = server.worker_app().state.settings
        assert (settings.port, settings.models_dir, settings.device) == (8124, tmp_path, "cpu")
        assert settings.processes == 2
        assert settings.metrics_dir is not None  # made for them, removed when they end
        assert not settings.metrics_dir.exists()
    for key in ("PROCESSES", "PORT", "METRICS_DIR"):
        assert f"ATTNVIZ_{key}" not in os.environ


@pytest.mark.slow
def test_two_server_processes_serve_translations(tmp_path: Path) -> None:
    """`attnviz serve --processes 2` for real: two processes load the model and answer."""
    models = tmp_path / "models"
    models.mkdir()
    (models / "en-fr-additive").symlink_to(BUNDLED_MODELS_DIR / "en-fr-additive")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "serve.log"
    cmd = [
        sys.executable, "-m", "attnviz.app.cli", "serve", "--port", str(port),
        "--models-dir", str(models), "--device", "cpu", "--processes", "2",
    ]  # fmt: skip
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {**os.environ, "ATTNVIZ_LOG_REQUESTS": "false", "ATTNVIZ_METRICS_DIR": str(shared)}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        started: set[int] = set()
        deadline = time.monotonic() + 120
        while len(started) < 2:  # every process logs "started" with its pid once loaded
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
            for line in log.read_text().splitlines(keepends=True):
                if not (line.startswith("{") and line.endswith("\n")):
                    continue  # not a log event, or one still being written
                event = json.loads(line)
                if event.get("event") == "started":
                    started.add(event["process"])
        assert proc.pid not in started  # the parent only supervises
        for _ in range(6):  # a new connection each time
            r = httpx.post(
                f"{url}/api/translate", json={"text": "The old man reads a red book."}, timeout=30
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["target_tokens"][-1] == "</s>"
            assert len(body["attention"]) == len(body["target_tokens"])
        # each process publishes its counters every second; any one of them answers
        # /metrics with the service's total
        time.sleep(2.5)
        line = re.compile(
            r'^attnviz_requests_total\{method="POST",path="/api/translate",status="200"\} (\d+)$',
            re.MULTILINE,
        )
        for _ in range(4):
            m = line.search(httpx.get(f"{url}/metrics", timeout=30).text)
            assert m is not None and int(m.group(1)) == 6
        # both processes publish, and their own counts are what the total adds up
        published = {int(p.stem): json.loads(p.read_text()) for p in shared.glob("*.json")}
        assert set(published) == started
        served = [
            sum(n for _, path, status, n in snap["requests"] if path == "/api/translate")
            for snap in published.values()
        ]
        assert sum(served) == 6
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the supervisor and its workers
            proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()[-3000:]
