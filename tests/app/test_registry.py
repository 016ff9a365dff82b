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


def _copy_named(source: Path, folder: Path, name: str) -> None:
    """A model folder with the weights of ``source`` under another name."""
    folder.mkdir()
    card = json.loads((source / CARD).read_text(encoding="utf-8"))
    (folder / CARD).write_text(json.dumps({**card, "name": name}), encoding="utf-8")
    (folder / WEIGHTS).symlink_to(source / WEIGHTS)


def test_a_broken_shortlist_is_left_out_with_a_warning_and_a_failed_model_says_why(
    models: Models, tmp_path: Path
) -> None:
    """A corrupt optional file does not refuse the model: it serves without it, and
    /api/health says so. A request for a model that failed to load is told that, and why
    (the reason /api/health gives), not that the model is unknown."""
    source = models.attention_folder
    (tmp_path / source.name).symlink_to(source, target_is_directory=True)
    _copy_named(source, tmp_path / "shortlist-broken", "en-fr-noshortlist")
    (tmp_path / "shortlist-broken" / "shortlist.safetensors").write_bytes(b"\x00" * 64)
    _copy_named(source, tmp_path / "weights-broken", "en-fr-broken")
    (tmp_path / "weights-broken" / WEIGHTS).unlink()
    (tmp_path / "weights-broken" / WEIGHTS).write_bytes(b"not weights")
    with TestClient(create_app(make_settings(tmp_path))) as c:
        h = c.get("/api/health").json()
        assert h["status"] == "degraded"
        assert sorted(h["models"]) == sorted([models.attention, "en-fr-noshortlist"])
        [warning] = h["warnings"]
        assert (warning["model"], warning["folder"]) == ("en-fr-noshortlist", "shortlist-broken")
        assert warning["warning"].startswith("shortlist-broken/shortlist.safetensors: ")
        assert "serves without its shortlist" in warning["warning"]
        assert str(tmp_path) not in json.dumps(h)
        listed = {m["name"]: m for m in c.get("/api/models").json()["models"]}
        assert listed["en-fr-noshortlist"]["shortlist"] is False
        body = {"text": "The boy runs.", "model": "en-fr-noshortlist"}
        assert c.post("/api/translate", json=body).status_code == 200

        [failed] = h["failed"]
        assert (failed["folder"], failed["name"]) == ("weights-broken", "en-fr-broken")
        assert "model.safetensors" in failed["reason"]
        for name in ("en-fr-broken", "weights-broken"):
            r = c.post("/api/translate", json={"text": "The boy runs.", "model": name})
            assert r.status_code == 503, r.text
            detail = r.json()["detail"]
            assert f"model {name!r} failed to load" in detail and failed["reason"] in detail
            assert models.attention in detail  # what serves instead
        r = c.post("/api/align", json={"text": "a", "target": "b", "model": "en-fr-broken"})
        assert r.status_code == 503
        r = c.get("/api/models/en-fr-broken")
        assert r.status_code == 503 and failed["reason"] in r.json()["detail"]
        r = c.post("/api/translate", json={"text": "The boy runs.", "model": "en-fr-nope"})
        assert r.status_code == 404  # a model that is not there at all is still unknown


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
