"""The model registry: every model folder of the models directory, loaded once.

The lifespan calls :func:`load_registry`; routes reach the result through a dependency.
A folder that cannot be loaded is kept as a :class:`LoadFailure` with its reason (shown by
``/api/health`` and logged) and the other models still serve; a request for it is told that
it failed to load, and why. A model whose optional file (the shortlist) is broken serves
without it, with a warning in ``/api/health``. Requests name models by the name in their
card; a name is only ever looked up here, never joined into a path.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attnviz.app.logs import app_logger, log_event
from attnviz.app.schemas import MODEL_NAME_PATTERN
from attnviz.app.settings import PREFERRED_DEFAULT_MODEL
from attnviz.model.checkpoint import CheckpointError, load_checkpoint, read_card
from attnviz.model.translator import Translator

MODEL_NAME = re.compile(MODEL_NAME_PATTERN)  # what the request schemas state


class UnknownModelError(LookupError):
    """No loaded model has this name; the message lists the available ones."""


class BadModelNameError(ValueError):
    """The name looks like a path: models are chosen by name, never by path."""


class ModelUnavailableError(LookupError):
    """The model's folder is there but failed to load; the message says why."""


@dataclass(frozen=True)
class ModelEntry:
    """One loaded model."""

    name: str
    folder: str  # the folder's name inside the models directory
    translator: Translator
    load_ms: float
    # what is wrong with the folder but does not stop the model (a broken shortlist), with
    # paths relative to the models directory
    warnings: tuple[str, ...] = ()

    @property
    def card(self) -> dict[str, Any]:
        return self.translator.loaded.card


@dataclass(frozen=True)
class LoadFailure:
    """A folder of the models directory that did not load, and why."""

    folder: str
    reason: str
    name: str | None = None  # the model's name, when its card could be read


class ModelRegistry:
    """The loaded models by name, the folders that failed, and the default model."""

    def __init__(
        self,
        entries: Sequence[ModelEntry],
        failures: Sequence[LoadFailure],
        device: torch.device,
        models_dir: Path,
        default_name: str | None = None,
    ) -> None:
        self._entries = {e.name: e for e in entries}
        self.failures: tuple[LoadFailure, ...] = tuple(failures)
        self.device = device
        self.models_dir = models_dir
        if default_name is not None and default_name not in self._entries:
            raise ValueError(f"default model {default_name!r} is not loaded")
        self.default_name = default_name
        self.loaded_at = time.time()

    @property
    def names(self) -> list[str]:
        return sorted(self._entries)

    @property
    def entries(self) -> list[ModelEntry]:
        return [self._entries[n] for n in self.names]

    def __len__(self) -> int:
        return len(self._entries)

    def available(self) -> str:
        return ", ".join(self.names) or "none (no model loaded: see GET /api/health)"

    def get(self, name: str | None) -> ModelEntry:
        """The model called ``name`` (None: the default model).

        BadModelNameError for a name that looks like a path; UnknownModelError (listing
        the available models) for a name no model has.
        """
        if name is None:
            if self.default_name is None:
                raise UnknownModelError(
                    f"no model is loaded, so there is no default model: {self.available()}"
                )
            return self._entries[self.default_name]
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        for failure in self.failures:
            if name in (failure.name, failure.folder) and MODEL_NAME.match(name):
                raise ModelUnavailableError(
                    f"model {name!r} failed to load when the service started: "
                    f"{failure.reason}. Choose one of the models that serve ({self.available()})"
                )
        if _looks_like_a_path(name):
            raise BadModelNameError(
                f"{name[:100]!r} looks like a path, not a model name: give one of the names "
                f"listed by GET /api/models ({self.available()})"
            )
        raise UnknownModelError(
            f"unknown model {name[:100]!r}: the available models are {self.available()}"
        )


def _looks_like_a_path(name: str) -> bool:
    return any(c in name for c in "/\\:\x00") or name.startswith((".", "~"))


def _choose_default(names: list[str], wanted: str | None) -> str | None:
    if wanted and wanted in names:
        return wanted
    if wanted:
        log_event(
            app_logger,
            logging.WARNING,
            "default_model_missing",
            wanted=wanted,
            available=names,
        )
    if PREFERRED_DEFAULT_MODEL in names:
        return PREFERRED_DEFAULT_MODEL
    return names[0] if names else None


def relative_to_models_dir(text: str, models_dir: Path) -> str:
    """``text`` with the models directory left out of the paths it names."""
    return text.replace(str(models_dir.resolve()) + os.sep, "").replace(
        str(models_dir) + os.sep, ""
    )


def _reason(error: BaseException, models_dir: Path) -> str:
    text = str(error) or type(error).__name__
    if not isinstance(error, ValueError | OSError):  # not a CheckpointError: name its kind
        text = f"{type(error).__name__}: {text}"
    return relative_to_models_dir(text, models_dir)


def _card_name(folder: Path) -> str | None:
    """The name in a folder's card, when the card can be read (a model that failed later)."""
    try:
        name = read_card(folder).get("name")
    except (CheckpointError, OSError):
        return None
    return name if isinstance(name, str) and MODEL_NAME.match(name) else None


def load_registry(
    models_dir: Path, device: torch.device, default_model: str | None = None
) -> ModelRegistry:
    """Load every sub-folder of ``models_dir`` (hidden ones skipped) onto ``device``."""
    entries: list[ModelEntry] = []
    failures: list[LoadFailure] = []
    if not models_dir.is_dir():
        log_event(app_logger, logging.WARNING, "models_dir_missing", models_dir=str(models_dir))
        folders: list[Path] = []
    else:
        folders = sorted(
            p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
    seen: dict[str, str] = {}
    for folder in folders:
        start = time.perf_counter()
        try:
            translator = Translator(load_checkpoint(folder, device, skip_broken_optional=True))
        except Exception as e:  # any failure of one folder must not stop the others
            failures.append(LoadFailure(folder.name, _reason(e, models_dir), _card_name(folder)))
            continue
        name = translator.name
        if not MODEL_NAME.match(name):
            failures.append(
                LoadFailure(folder.name, f"card.json: the model name {name[:100]!r} is not valid")
            )
            continue
        if name in seen:
            failures.append(
                LoadFailure(
                    folder.name,
                    f"duplicate model name {name!r}: already loaded from folder {seen[name]!r}",
                )
            )
            continue
        seen[name] = folder.name
        warnings = tuple(relative_to_models_dir(w, models_dir) for w in translator.loaded.warnings)
        entries.append(
            ModelEntry(
                name, folder.name, translator, (time.perf_counter() - start) * 1000.0, warnings
            )
        )
    for entry in entries:
        log_event(
            app_logger,
            logging.INFO,
            "model_loaded",
            model=entry.name,
            folder=entry.folder,
            device=str(device),
            ms=round(entry.load_ms, 1),
        )
        for warning in entry.warnings:
            log_event(
                app_logger,
                logging.WARNING,
                "model_loaded_with_warning",
                model=entry.name,
                folder=entry.folder,
                warning=warning,
            )
    for failure in failures:
        log_event(
            app_logger,
            logging.ERROR,
            "model_load_failed",
            folder=failure.folder,
            reason=failure.reason,
        )
    default = _choose_default(sorted(seen), default_model)
    return ModelRegistry(entries, failures, device, models_dir, default)
