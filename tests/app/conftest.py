"""Fixtures of the service tests: real models, settings, and apps run with their lifespan.

The models are the bundled ones (checkpoints/, or the folder ATTNVIZ_TEST_MODELS_DIR
names) whenever that folder holds at least one loadable model; ATTNVIZ_TEST_BUNDLED=1
makes it an error when it holds none. Otherwise two tiny real models (one with additive
attention, one without attention) are trained for a few seconds on data/sample.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from attnviz.app.main import create_app
from attnviz.app.settings import Settings
from tests.app.support import BUNDLED, Models, cards, make_settings, pick, train_tiny

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    where = Path(os.environ.get("ATTNVIZ_TEST_MODELS_DIR") or BUNDLED)
    bundled = cards(where)
    if os.environ.get("ATTNVIZ_TEST_BUNDLED") == "1" and not bundled:
        pytest.fail(f"ATTNVIZ_TEST_BUNDLED=1 but {where} holds no loadable model")
    if bundled:
        return pick(bundled, where, bundled=True)
    root = tmp_path_factory.mktemp("tiny-models")
    train_tiny(root)
    return pick(cards(root), root, bundled=False)


@pytest.fixture(scope="session")
def two_models_dir(models: Models, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder with only the two test models (symlinks): quick to load."""
    if not models.bundled:
        return models.dir
    root = tmp_path_factory.mktemp("two-models")
    for folder in (models.attention_folder, models.plain_folder):
        if folder is not None:
            (root / folder.name).symlink_to(folder, target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def settings(models: Models) -> Settings:
    return make_settings(models.dir)


@pytest.fixture(scope="session")
def client(settings: Settings) -> Iterator[TestClient]:
    """The app over every test model, with its lifespan running."""
    with TestClient(create_app(settings)) as c:
        yield c
