"""The page routes without a browser: HTML, plotly.js from the installed package, no
inline script (the Content-Security-Policy allows none), examples from the corpus."""

from __future__ import annotations

import gzip
import importlib.resources
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from attnviz.app.examples import EXAMPLES
from attnviz.app.main import create_app
from tests.app.support import SAMPLE, make_settings
from tests.e2e.conftest import E2EModels

PAGES = ("/", "/compare", "/models")
SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S | re.I)


@pytest.fixture(scope="module")
def client(e2e_models: E2EModels) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(e2e_models.dir, log_requests=False))) as c:
        yield c


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_without_inline_scripts(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    scripts = SCRIPT.findall(r.text)
    assert scripts
    for attrs, body in scripts:
        if 'type="application/json"' in attrs:
            continue  # data, not code: never executed
        assert "src=" in attrs and not body.strip(), f"inline script on {path}: {attrs}"
    for url in re.findall(r'(?:src|href)="([^"]+)"', r.text):
        assert not url.startswith(("http:", "https:", "//")), f"outside URL on {path}: {url}"
        if url.startswith(("/static/", "/vendor/")):
            assert client.get(url).status_code == 200, url


def test_plotly_comes_from_the_installed_package(client: TestClient) -> None:
    installed = (
        importlib.resources.files("plotly") / "package_data" / "plotly.min.js"
    ).read_bytes()
    plain = client.get("/vendor/plotly.min.js", headers={"accept-encoding": "identity"})
    assert plain.status_code == 200
    assert plain.content == installed
    assert "immutable" in plain.headers["cache-control"]
    zipped = client.get("/vendor/plotly.min.js", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert int(zipped.headers["content-length"]) < len(installed) // 2
    again = client.get("/vendor/plotly.min.js", headers={"if-none-match": plain.headers["etag"]})
    assert again.status_code == 304
    assert gzip.decompress(gzip.compress(installed)) == installed


def test_examples_are_corpus_sentences() -> None:
    pairs: dict[str, tuple[str, str, str]] = {}
    for split in ("test", "valid", "train"):
        for line in (SAMPLE / f"{split}.tsv").read_text(encoding="utf-8").splitlines():
            en, fr, _, phenomena = line.split("\t")
            pairs.setdefault(en, (split, fr, phenomena))
    assert len({e.label for e in EXAMPLES}) == len(EXAMPLES)
    for e in EXAMPLES:
        assert e.text in pairs, e.text
        assert pairs[e.text] == (e.split, e.reference, e.phenomena)


def test_pages_without_models_say_what_to_do(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, log_requests=False))) as c:
        for path in PAGES:
            r = c.get(path)
            assert r.status_code == 200
            assert "No model is loaded" in r.text and "/api/health" in r.text
