"""Fixtures of the browser tests: the real service on a free localhost port, with real
models, driven by Debian's chromium through Playwright.

Models: the bundled ones (checkpoints/, or ATTNVIZ_TEST_MODELS_DIR) when there are any,
else tiny real models trained for a few seconds on data/sample (the helpers of the
service tests). A multi-head model and a Transformer are trained tiny beside the bundled
ones when none is bundled, and a tiny subword (SentencePiece) model always, for the words /
pieces views (their names are in E2EModels.trained). Screenshots go to a
temporary folder, so a test run leaves the work tree as it was; ATTNVIZ_SCREENSHOTS=DIR
chooses the folder, and `make screenshots` sets it to docs/screenshots/ to retake the
README's pictures, which needs the bundled models (tiny models translate badly: their
pictures would not help the README).

Every page a test opens fails the test on a console error, an uncaught exception, or a
request to anything but the local service (route interception).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

from attnviz.app.main import create_app
from tests.app.support import (
    BUNDLED,
    REPO,
    SAMPLE,
    Models,
    cards,
    make_settings,
    pick,
    train_tiny,
    train_tiny_subword,
    train_tiny_transformer,
)

CHROMIUM = Path(os.environ.get("ATTNVIZ_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
SUBWORD = "en-fr-subword"  # the tiny SentencePiece model (tests.app.support.train_tiny_subword)
SCREENSHOTS = REPO / "docs" / "screenshots"


@dataclass(frozen=True)
class E2EModels:
    dir: Path
    models: Models
    multihead: str | None  # a model with several attention heads, if any
    bundled: bool
    transformer: str | None = None  # a Transformer (layers x heads, self-attention)
    trained: frozenset[str] = frozenset()  # models trained tiny for the tests (bad pictures)
    subword: str = SUBWORD  # a subword model: words of several pieces (trained tiny)

    def pictured(self, name: str) -> bool:
        """Whether screenshots of `name` belong in the README (a real, bundled model)."""
        return self.bundled and name not in self.trained


def _train_tiny_multihead(root: Path) -> None:
    """One more tiny model, with two attention heads (for the head selector)."""
    from attnviz.model.train import TrainConfig, train

    cfg = TrainConfig(
        data=str(SAMPLE),
        out=str(root / "en-fr-multihead"),
        attention="multihead",
        attention_heads=2,
        emb_dim=16,
        hidden_dim=16,
        max_steps=30,
        valid_every=30,
        valid_sentences=10,
        threads=1,
        device="cpu",
    )
    train(cfg, progress_bar=False)


def _train_subword(root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The tiny subword model, trained beside (its corpus folder would be a model folder
    that fails to load) and linked into the models folder."""
    built = train_tiny_subword(tmp_path_factory.mktemp("e2e-subword"), SUBWORD)
    (root / SUBWORD).symlink_to(built, target_is_directory=True)


def _attention(card: dict[str, object]) -> str:
    config = card.get("config")
    return str(config.get("attention")) if isinstance(config, dict) else ""


def _architecture(card: dict[str, object]) -> str:
    config = card.get("config")
    return str(config.get("architecture") or "") if isinstance(config, dict) else ""


@pytest.fixture(scope="session")
def e2e_models(tmp_path_factory: pytest.TempPathFactory) -> E2EModels:
    where = Path(os.environ.get("ATTNVIZ_TEST_MODELS_DIR") or BUNDLED)
    found = cards(where)
    if found:
        chosen = pick(found, where, bundled=True)
        heads = [n for n, (_, c) in found.items() if _attention(c) == "multihead"]
        transformers = [
            n
            for n, (_, c) in found.items()
            if _architecture(c) == "transformer" and c.get("source_lang") == "en"
        ]
        # a folder of symlinks to the few models the tests use: quick to load
        root = tmp_path_factory.mktemp("e2e-models")
        names = [
            chosen.attention,
            chosen.plain,
            heads[0] if heads else None,
            transformers[0] if transformers else None,
        ]
        for name in dict.fromkeys(n for n in names if n):
            folder = found[name][0]
            (root / folder.name).symlink_to(folder, target_is_directory=True)
        # none bundled yet: tiny ones beside them, so the heads and layers views are tested
        trained: set[str] = set()
        if not heads:
            _train_tiny_multihead(root)
            trained.add("en-fr-multihead")
        if not transformers:
            train_tiny_transformer(root)
            trained.add("en-fr-transformer")
        if SUBWORD in found:  # one trained before (ATTNVIZ_TEST_MODELS_DIR): used as it is
            (root / SUBWORD).symlink_to(found[SUBWORD][0], target_is_directory=True)
        else:
            _train_subword(root, tmp_path_factory)
        trained.add(SUBWORD)
        return E2EModels(
            root,
            chosen,
            heads[0] if heads else "en-fr-multihead",
            bundled=True,
            transformer=transformers[0] if transformers else "en-fr-transformer",
            trained=frozenset(trained),
        )
    root = tmp_path_factory.mktemp("e2e-tiny-models")
    train_tiny(root)
    _train_tiny_multihead(root)
    train_tiny_transformer(root)
    _train_subword(root, tmp_path_factory)
    return E2EModels(
        root,
        pick(cards(root), root, bundled=False),
        "en-fr-multihead",
        False,
        transformer="en-fr-transformer",
        trained=frozenset({"en-fr-multihead", "en-fr-transformer", SUBWORD}),
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def base_url(e2e_models: E2EModels) -> Iterator[str]:
    """The real service (uvicorn, lifespan and all) in a thread, on 127.0.0.1 only."""
    settings = make_settings(e2e_models.dir, log_requests=False)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, name="attnviz-e2e-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the attnviz service did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `bash scripts/system-deps.sh` (installs Debian's "
            "chromium) or point ATTNVIZ_CHROMIUM at a Chromium binary"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@dataclass
class Watch:
    """What a page did wrong: console errors, uncaught exceptions, outside requests."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    expected_statuses: set[int] = field(default_factory=set)

    def expect_status(self, status: int) -> None:
        """A test that provokes an error answer: chromium logs it, and that is fine."""
        self.expected_statuses.add(status)

    def check(self) -> None:
        assert not self.outside, f"requests left localhost: {self.outside}"
        assert not self.page_errors, f"uncaught errors in the page: {self.page_errors}"
        expected = [f"status of {s} " for s in self.expected_statuses]
        errors = [e for e in self.console_errors if not any(x in e for x in expected)]
        assert not errors, f"console errors: {errors}"


def _local(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in ("data", "blob", "about"):
        return True
    return parts.scheme in ("http", "https", "ws") and parts.hostname in LOCAL_HOSTS


def open_context(
    browser: Browser, width: int = 1280, height: int = 900, watch: Watch | None = None
) -> tuple[BrowserContext, Watch]:
    watch = watch or Watch()
    context = browser.new_context(
        viewport={"width": width, "height": height},
        device_scale_factor=1,
        reduced_motion="reduce",
        color_scheme="light",
        accept_downloads=True,
    )

    def route(route: Route) -> None:
        url = route.request.url
        if _local(url):
            route.continue_()
        else:
            watch.outside.append(url)
            route.abort()

    context.route("**/*", route)
    return context, watch


def watch_page(page: Page, watch: Watch) -> None:
    page.on(
        "console",
        lambda m: watch.console_errors.append(m.text) if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: watch.page_errors.append(str(e)))


@pytest.fixture
def watch() -> Watch:
    """The watch over the test's page (tests that provoke errors say which)."""
    return Watch()


@pytest.fixture
def page(browser: Browser, base_url: str, watch: Watch) -> Iterator[Page]:
    """A desktop-sized page whose console, errors and requests are watched."""
    context, _ = open_context(browser, watch=watch)
    page = context.new_page()
    watch_page(page, watch)
    page.set_default_timeout(30_000)
    yield page
    context.close()
    watch.check()


@pytest.fixture
def phone(browser: Browser, base_url: str) -> Iterator[Page]:
    """A 360-pixel-wide page (a small phone)."""
    context, watch = open_context(browser, width=360, height=740)
    page = context.new_page()
    watch_page(page, watch)
    page.set_default_timeout(30_000)
    yield page
    context.close()
    watch.check()


@pytest.fixture(scope="session")
def shots(e2e_models: E2EModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go (see the module docstring)."""
    chosen = os.environ.get("ATTNVIZ_SCREENSHOTS")
    if not chosen:
        return tmp_path_factory.mktemp("screenshots")
    folder = Path(chosen).resolve()
    if folder == SCREENSHOTS and not e2e_models.bundled:
        pytest.exit(
            f"the README's screenshots ({SCREENSHOTS}) need the bundled models "
            "(checkpoints/): none were found, and tiny test models translate badly",
            returncode=4,
        )
    folder.mkdir(parents=True, exist_ok=True)
    return folder
