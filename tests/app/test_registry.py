"""The model registry: broken folders are reported with their reason while the others
serve; names are looked up, never joined into paths; the default model."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from attnviz.app.main import create_app
from attnviz.app.registry import (
    BadModelNameError,
    UnknownModelError,
    load_registry,
)
from attnviz.model.checkpoint import CARD, WEIGHTS
from tests.app.support import Models, make_settings

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def broken_dir(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One good model, and beside it folders broken in different ways."""
    root = tmp_path_factory.mktemp("broken-models")
    source = models.attention_folder
    (root / source.name).symlink_to(source, target_is_directory=True)
    truncated = root / "truncated-weights"
    truncated.mkdir()
    shutil.copyfile(source / CARD, truncated / CARD)
    with (source / WEIGHTS).open("rb") as f:
        (truncated / WEIGHTS).write_bytes(f.read(max(1, (source / WEIGHTS).stat().st_size // 3)))
    bad_card = root / "bad-card"
    bad_card.mkdir()
    (bad_card / CARD).write_text('{"format": "attnviz-model", ', encoding="utf-8")
    (bad_card / WEIGHTS).symlink_to(source / WEIGHTS)
    (root / "no-card").mkdir()  # e.g. a model still training
    (root / ".hidden").mkdir()  # skipped
    (root / "README.txt").write_text("not a model folder\n", encoding="utf-8")
    return root


def test_broken_folders_are_reported_and_the_others_serve(
    broken_dir: Path, models: Models, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="attnviz.app"),
        TestClient(create_app(make_settings(broken_dir))) as c,
    ):
        health = c.get("/api/health")
        assert health.status_code == 200
        h = health.json()
        assert h["status"] == "degraded"
        assert h["models"] == [models.attention]
        failed = {f["folder"]: f["reason"] for f in h["failed"]}
        assert set(failed) == {"truncated-weights", "bad-card", "no-card"}
        assert "model.safetensors" in failed["truncated-weights"]
        assert "not valid JSON" in failed["bad-card"]
        assert "card.json" in failed["no-card"] and "missing" in failed["no-card"]
        assert str(broken_dir) not in json.dumps(h), "reasons name files inside the models dir"
        r = c.post("/api/translate", json={"text": "The boy runs."})
        assert r.status_code == 200 and r.json()["model"] == models.attention
        metrics = c.get("/metrics").text
        assert 'attnviz_model_loaded{model="",folder="truncated-weights"} 0' in metrics
        assert "attnviz_model_load_failures 3" in metrics
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "attnviz.app"]
    logged = {e["folder"]: e["reason"] for e in events if e["event"] == "model_load_failed"}
    assert logged == failed


def test_duplicate_names_keep_the_first(models: Models, tmp_path: Path) -> None:
    for name in ("a-copy", "b-copy"):
        (tmp_path / name).symlink_to(models.attention_folder, target_is_directory=True)
    registry = load_registry(tmp_path, CPU)
    assert registry.names == [models.attention]
    assert registry.entries[0].folder == "a-copy"
    (failure,) = registry.failures
    assert failure.folder == "b-copy" and "duplicate model name" in failure.reason


def test_lookup_by_name_only(two_models_dir: Path, models: Models) -> None:
    registry = load_registry(two_models_dir, CPU)
    assert registry.get(None).name == registry.default_name == models.attention
    assert registry.get(models.attention).translator.name == models.attention
    for path_like in (
        "../en-fr-additive",
        str(models.attention_folder),
        "en-fr-additive/../../x",
        "C:\\models",
        ".hidden",
    ):
        with pytest.raises(BadModelNameError, match="looks like a path"):
            registry.get(path_like)
    with pytest.raises(UnknownModelError, match=models.attention):
        registry.get("en-fr-unknown")


def test_default_model(two_models_dir: Path, models: Models) -> None:
    if models.plain is not None:
        chosen = load_registry(two_models_dir, CPU, default_model=models.plain)
        assert chosen.default_name == models.plain
    missing = load_registry(two_models_dir, CPU, default_model="not-there")
    assert missing.default_name == models.attention  # falls back, with a warning


def test_empty_models_dir(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as c:
        r = c.get("/api/health")
        assert r.status_code == 503
        assert r.json()["status"] == "unavailable"
        r = c.post("/api/translate", json={"text": "The boy runs."})
        assert r.status_code == 404
        assert "no model is loaded" in r.json()["detail"]
        assert c.get("/api/models").json() == {"models": [], "default_model": None}


def test_missing_models_dir(tmp_path: Path) -> None:
    registry = load_registry(tmp_path / "nowhere", CPU)
    assert len(registry) == 0 and registry.default_name is None
