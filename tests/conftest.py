"""Fixtures shared by the model, service and browser tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.app.support import train_tiny_subword


@pytest.fixture(scope="session")
def tiny_subword(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real English->French subword model (SentencePiece pieces, trained for seconds
    on 2,000 Tatoeba pairs read from ../shared/data), as a model folder."""
    return train_tiny_subword(tmp_path_factory.mktemp("subword"))
