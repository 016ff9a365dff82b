"""Helpers shared by the service tests: which models to use, and settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from attnviz.app.settings import Settings
from attnviz.model.checkpoint import WEIGHTS, CheckpointError, read_card

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "checkpoints"
SAMPLE = REPO / "data" / "sample"
# the real corpora, read in place (never copied into the repository); CI has the folder
SHARED_DATA = Path(os.environ.get("ATTNVIZ_SHARED_DATA") or REPO.parent / "shared" / "data")


def shared_data(name: str) -> Path:
    """A corpus folder of ../shared/data; the test fails (not skips) when it is missing."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.fail(
            f"{path} is missing: the tests read the real corpora in place from ../shared/data "
            "(or ATTNVIZ_SHARED_DATA)"
        )
    return path


def train_tiny_subword(
    root: Path, name: str = "en-fr-subword", pairs: int = 2000, **options: object
) -> Path:
    """A tiny real subword model: SentencePiece pieces trained on the first ``pairs``
    Tatoeba pairs (imported from ../shared/data), a small GRU trained for a few seconds
    (``options`` override TrainConfig fields, e.g. a Transformer)."""
    from attnviz.model.corpus.importers import import_tatoeba
    from attnviz.model.train import TrainConfig, train

    data = root.parent / f"{root.name}-{name}-data"  # beside the models folder, not in it
    import_tatoeba(shared_data("tatoeba-en-fr") / "fra.txt.gz", data, seed=1, limit=pairs)
    src, tgt = name.split("-")[:2]
    values: dict[str, object] = {
        "data": str(data),
        "out": str(root / name),
        "source_lang": src,
        "target_lang": tgt,
        "tokenizer": "sentencepiece",
        "src_pieces": 400,
        "tgt_pieces": 400,
        "emb_dim": 32,
        "hidden_dim": 32,
        "batch_size": 32,
        "lr": 5e-3,
        "max_steps": 120,
        "valid_every": 120,
        "valid_sentences": 20,
        "threads": 1,
        "device": "cpu",
        **options,
    }
    cfg = TrainConfig(**values)  # type: ignore[arg-type]
    train(cfg, progress_bar=False)
    return root / name


SENTENCES = [
    "The boy runs.",
    "Is the Swiss bed pink?",
    "My niece heated their Scottish ham.",
    "I disappeared.",
]


@dataclass(frozen=True)
class Models:
    """Where the test models are and which is which."""

    dir: Path
    attention: str  # an English -> French model with attention
    plain: str | None  # a model without attention, if there is one
    bundled: bool
    attention_folder: Path
    plain_folder: Path | None


def cards(directory: Path) -> dict[str, tuple[Path, dict[str, object]]]:
    """name -> (folder, card) of the folders that look loadable."""
    found: dict[str, tuple[Path, dict[str, object]]] = {}
    if not directory.is_dir():
        return found
    for folder in sorted(directory.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        try:
            card = read_card(folder)
        except CheckpointError:
            continue
        if (folder / WEIGHTS).is_file():
            found[str(card.get("name") or folder.name)] = (folder, card)
    return found


def _attention_of(card: dict[str, object]) -> str:
    config = card.get("config")
    return str(config.get("attention")) if isinstance(config, dict) else "unknown"


def pick(
    cards: dict[str, tuple[Path, dict[str, object]]], directory: Path, bundled: bool
) -> Models:
    with_attention = [
        n
        for n, (_, c) in cards.items()
        if _attention_of(c) != "none" and c.get("source_lang") == "en"
    ]
    without = [n for n, (_, c) in cards.items() if _attention_of(c) == "none"]
    if not with_attention:
        pytest.fail(f"{directory} has no English->French model with attention to test with")
    attention = "en-fr-additive" if "en-fr-additive" in with_attention else with_attention[0]
    plain = "en-fr-none" if "en-fr-none" in without else (without[0] if without else None)
    return Models(
        dir=directory,
        attention=attention,
        plain=plain,
        bundled=bundled,
        attention_folder=cards[attention][0],
        plain_folder=cards[plain][0] if plain else None,
    )


def train_tiny(root: Path) -> None:
    from attnviz.model.train import TrainConfig, train

    for attention in ("additive", "none"):
        cfg = TrainConfig(
            data=str(SAMPLE),
            out=str(root / f"en-fr-{attention}"),
            attention=attention,
            emb_dim=16,
            hidden_dim=16,
            max_steps=30,
            valid_every=30,
            valid_sentences=10,
            threads=1,
            device="cpu",
        )
        train(cfg, progress_bar=False)


def train_tiny_transformer(root: Path, name: str = "en-fr-transformer") -> Path:
    """A tiny real Transformer (2 layers x 2 heads), trained a few steps on data/sample."""
    from attnviz.model.train import TrainConfig, train

    cfg = TrainConfig(
        data=str(SAMPLE),
        out=str(root / name),
        architecture="transformer",
        attention="scaled_dot",
        attention_heads=2,
        layers=2,
        ff_dim=32,
        emb_dim=16,
        hidden_dim=16,
        tie_embeddings=True,
        max_steps=30,
        valid_every=30,
        valid_sentences=10,
        threads=1,
        device="cpu",
    )
    train(cfg, progress_bar=False)
    return root / name


def make_settings(models_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "models_dir": models_dir,
        "device": "auto",
        "torch_threads": 1,
        "inference_workers": 2,
        "log_requests": True,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]
