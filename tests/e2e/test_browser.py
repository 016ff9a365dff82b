"""The pages in a real browser (Debian's chromium) against the real service.

Every test fails on a console error, an uncaught exception or a request that leaves
localhost (see conftest.py). The screenshots the README shows are taken here.
"""

from __future__ import annotations

import html
import statistics
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, FloatRect, Page, Response

from tests.e2e.conftest import E2EModels, Watch, open_context, watch_page

pytestmark = pytest.mark.e2e

TEN_WORDS = "The old man reads a red book in the garden."


# -- helpers ------------------------------------------------------------------------------


def _is_translate(response: Response) -> bool:
    return bool(response.url.endswith("/api/translate") and response.request.method == "POST")


def ready(page: Page) -> str:
    """Wait until the page has drawn a translation; its sequence number."""
    page.wait_for_selector("#result[data-ready]", state="attached")
    return str(page.get_attribute("#result", "data-ready"))


def act(page: Page, action: Any) -> dict[str, Any]:
    """Do something that translates; wait for the heatmap; the API's answer."""
    old = page.get_attribute("#result", "data-ready")
    with page.expect_response(_is_translate) as info:
        action()
    response = info.value
    assert response.ok, response.text()
    page.wait_for_function(
        "old => { const r = document.querySelector('#result');"
        " return r.dataset.ready && r.dataset.ready !== old"
        " && r.getAttribute('aria-busy') === 'false'; }",
        arg=old,
    )
    return dict(response.json())


def translate(page: Page, text: str) -> dict[str, Any]:
    page.fill("#text", text)
    return act(page, lambda: page.click("#translate-btn"))


def open_translate(page: Page, base_url: str, query: str = "") -> None:
    page.goto(f"{base_url}/{query}")
    ready(page)


def plot(page: Page, selector: str) -> dict[str, Any]:
    """What Plotly drew in a div: axis labels (unescaped) and the heatmap's z."""
    data = page.evaluate(
        """sel => { const gd = document.querySelector(sel);
            if (!gd || !gd.layout) return null;
            return {x: gd.layout.xaxis.ticktext, y: gd.layout.yaxis.ticktext,
                    z: gd.data[0].z, type: gd.data[0].type}; }""",
        selector,
    )
    assert data is not None, f"nothing drawn in {selector}"
    data["x"] = [html.unescape(t) for t in data["x"]]
    data["y"] = [html.unescape(t) for t in data["y"]]
    return dict(data)


def shot(page: Page, folder: Path, name: str, selector: str | None = None) -> None:
    """A full-page screenshot, or one element with a margin around it."""
    path = folder / f"{name}.png"
    if selector is None:
        page.screenshot(path=str(path), full_page=True)
        return
    box = page.evaluate(
        """sel => { const r = document.querySelector(sel).getBoundingClientRect();
            return {x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height}; }""",
        selector,
    )
    pad = 16
    clip: FloatRect = {
        "x": max(0, box["x"] - pad),
        "y": max(0, box["y"] - pad),
        "width": box["width"] + 2 * pad,
        "height": box["height"] + 2 * pad,
    }
    page.screenshot(path=str(path), full_page=True, clip=clip)


def same_matrix(page: Page, selector: str, matrix: list[list[float]], tol: float = 1e-9) -> None:
    """Wait until the heatmap drawn in `selector` (its first trace's z) is `matrix`."""
    page.wait_for_function(
        """([sel, m, tol]) => { const gd = document.querySelector(sel);
            const z = gd && gd.data && gd.data[0] && gd.data[0].z;
            return Boolean(z) && z.length === m.length && z.every((r, i) =>
                r.length === m[i].length && r.every((v, j) => Math.abs(v - m[i][j]) <= tol)); }""",
        arg=[selector, matrix, tol],
    )


def mean_of(matrices: list[list[list[float]]]) -> list[list[float]]:
    n = len(matrices)
    return [
        [sum(m[t][s] for m in matrices) / n for s in range(len(matrices[0][0]))]
        for t in range(len(matrices[0]))
    ]


def choose_model(page: Page, name: str, text: str = TEN_WORDS) -> tuple[dict[str, Any], Any]:
    """Pick a model (it translates at once): the API's answer and the request's body."""
    page.fill("#text", text)
    with page.expect_response(_is_translate) as info:
        result = act(page, lambda: page.select_option("#model", name))
    return result, info.value.request.post_data_json


def say(capsys: pytest.CaptureFixture[str], message: str) -> None:
    with capsys.disabled():
        print(f"\n[e2e] {message}")


# -- translate page ------------------------------------------------------------------------


def test_heatmap_axes_are_the_tokens_and_timing(
    page: Page, base_url: str, shots: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    open_translate(page, base_url)
    result = translate(page, TEN_WORDS)
    drawn = plot(page, "#heatmap")
    assert drawn["type"] == "heatmap"
    assert drawn["x"] == result["source_tokens"]
    assert drawn["y"] == result["target_tokens"]
    assert drawn["z"] == result["attention"]
    assert page.inner_text("#translation") == result["translation"]
    chips = page.locator("#src-tokens .tok").all_inner_texts()
    assert chips == result["source_tokens"]

    # hovering a target word lights up the source word it attended to most, and back
    page.hover("#tgt-tokens .tok >> nth=0")
    row = result["attention"][0]
    best = max(range(len(row)), key=row.__getitem__)
    assert page.locator("#src-tokens .tok.top").inner_text() == result["source_tokens"][best]
    page.hover(f"#src-tokens .tok >> nth={best}")
    assert page.locator("#tgt-tokens .tok.top").count() == 1

    # Translate -> heatmap on screen (performance marks in the page), warm runs
    times = []
    for _ in range(5):
        act(page, lambda: page.click("#translate-btn"))
        times.append(
            page.evaluate(
                "performance.getEntriesByName('attnviz:translate-to-heatmap').at(-1).duration"
            )
        )
    say(
        capsys,
        f"Translate -> heatmap drawn, {len(TEN_WORDS.split())}-word sentence "
        f"({len(result['source_tokens'])} source tokens): "
        f"median {statistics.median(times):.0f} ms (runs: {', '.join(f'{t:.0f}' for t in times)})",
    )
    shot(page, shots, "translate")
    shot(page, shots, "heatmap", "#panel-heatmap")


def test_downloads(page: Page, base_url: str) -> None:
    open_translate(page, base_url)
    with page.expect_download() as info:
        page.click("#dl-pharaoh")
    pharaoh = Path(info.value.path()).read_text()
    assert all(len(pair.split("-")) == 2 for pair in pharaoh.split())
    with page.expect_download() as info:
        page.click("#dl-json")
    assert '"attention"' in Path(info.value.path()).read_text()
    with page.expect_download() as info:
        page.click("#dl-svg")
    assert Path(info.value.path()).read_text().lstrip().startswith("<svg")
    with page.expect_download() as info:
        page.click("#dl-png")
    assert Path(info.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_decoder_one_frame_per_step(
    page: Page, base_url: str, shots: Path, e2e_models: E2EModels
) -> None:
    open_translate(page, base_url)
    result = translate(page, TEN_WORDS)
    page.click("#tab-decoder")
    page.wait_for_selector("#dec-plot[data-frames]", state="attached")
    n = len(result["target_tokens"])
    frames = page.evaluate(
        "() => { const gd = document.querySelector('#dec-plot');"
        " return [Number(gd.dataset.frames), gd._transitionData._frames.length]; }"
    )
    assert frames == [n, n]

    page.focus("#panel-decoder")
    highlighted, painted = [], []
    for t in range(n):
        assert page.inner_text("#dec-step-label") == f"Step {t + 1} of {n}"
        row = result["attention"][t]
        best = max(range(len(row)), key=row.__getitem__)
        word = page.locator("#dec-source .is-argmax").inner_text()
        assert word == result["source_tokens"][best]
        highlighted.append(word)
        painted.append(
            page.evaluate(
                "[...document.querySelectorAll('#dec-source .tok')]"
                ".map(e => e.style.getPropertyValue('--w')).join()"
            )
        )
        assert page.locator("#dec-sofar .tok.current").inner_text() == result["target_tokens"][t]
        if t == min(2, n - 1):
            shot(page, shots, "decoder", "#panel-decoder")
        page.keyboard.press("ArrowRight")
    assert len(set(painted)) > 1, "the attention shown never changed between steps"
    if e2e_models.bundled:
        assert len(set(highlighted)) > 1, f"the highlighted word never changed: {highlighted}"
    page.keyboard.press("ArrowLeft")
    assert page.inner_text("#dec-step-label") == f"Step {n - 1} of {n}"

    # play from the start, fast: the steps advance by themselves; pause stops them
    page.keyboard.press("Home")
    page.select_option("#dec-speed", "180")
    page.click("#dec-play")
    assert page.get_attribute("#dec-play", "aria-pressed") == "true"
    page.wait_for_function(
        "() => Number(document.querySelector('#panel-decoder').dataset.step) >= 1"
    )
    page.click("#dec-play")
    assert page.get_attribute("#dec-play", "aria-pressed") == "false"


def test_beam_tree_and_hypotheses(page: Page, base_url: str, shots: Path) -> None:
    open_translate(page, base_url)
    page.fill("#text", TEN_WORDS)
    result = act(page, lambda: page.select_option("#beam", "4"))
    assert result["beam"] is not None and len(result["hypotheses"]) >= 2
    page.click("#tab-beam")
    page.wait_for_selector("#beam-tree[data-nodes]", state="attached")
    assert page.get_attribute("#beam-tree", "data-nodes") == str(len(result["beam"]["nodes"]))
    assert page.locator("#beam-hyps .hyp").count() == len(result["hypotheses"])
    first = plot(page, "#beam-heatmap")
    assert first["y"] == result["hypotheses"][0]["target_tokens"]

    page.click("#beam-hyps .hyp >> nth=1")
    page.wait_for_function("() => document.querySelector('#panel-beam').dataset.hypothesis === '1'")
    second = plot(page, "#beam-heatmap")
    assert second["y"] == result["hypotheses"][1]["target_tokens"]
    assert second["z"] == result["hypotheses"][1]["attention"]
    assert (second["y"], second["z"]) != (first["y"], first["z"])
    shot(page, shots, "beam", "#panel-beam")


def test_whatif_blocking_removes_the_column(page: Page, base_url: str, shots: Path) -> None:
    open_translate(page, base_url)
    before = translate(page, TEN_WORDS)
    page.click("#tab-whatif")
    blocked = 1
    page.click(f"#whatif-source .tok >> nth={blocked}")
    assert page.get_attribute(f"#whatif-source .tok >> nth={blocked}", "aria-pressed") == "true"
    with page.expect_response(_is_translate) as info:
        page.click("#whatif-btn")
    after = info.value.json()
    sent = info.value.request.post_data_json
    # a word is blocked whole (a lab model's words are its tokens: the same column)
    assert sent is not None and sent["masked_words"] == [blocked]
    assert sent.get("masked_source") is None
    page.wait_for_selector("#after-heatmap[data-state=plot]", state="attached")
    drawn = plot(page, "#after-heatmap")
    assert drawn["z"] == after["attention"]
    assert all(row[blocked] == 0 for row in drawn["z"])
    assert any(row[blocked] > 0 for row in before["attention"])
    assert plot(page, "#before-heatmap")["z"] == before["attention"]
    shot(page, shots, "whatif", "#panel-whatif")


def test_whatif_prefix_error_shown_by_the_field(page: Page, base_url: str, watch: Watch) -> None:
    watch.expect_status(422)
    open_translate(page, base_url)
    page.click("#tab-whatif")
    page.fill("#prefix", "zzzqqq")
    page.click("#whatif-btn")
    page.wait_for_selector("#prefix-error:not([hidden])")
    assert "forced_prefix" in page.inner_text("#prefix-error")
    assert page.get_attribute("#prefix", "aria-invalid") == "true"


def test_empty_input_shows_the_services_error(page: Page, base_url: str, watch: Watch) -> None:
    watch.expect_status(422)
    open_translate(page, base_url)
    page.fill("#text", "   ")
    with page.expect_response(_is_translate) as info:
        page.click("#translate-btn")
    assert info.value.status == 422
    page.wait_for_selector("#text-error:not([hidden])")
    message = page.inner_text("#text-error")
    assert message == info.value.json()["detail"][0]["msg"]
    assert "empty" in message
    assert page.get_attribute("#text", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "text"


def test_wrong_shapes_are_refused_before_drawing(page: Page, base_url: str) -> None:
    """The page checks rows = target tokens, columns = source tokens, rows sum to 1."""
    open_translate(page, base_url)
    draw = """async ([m, rows, cols]) => {
        const {drawHeatmap} = await import('/static/js/heatmap.js');
        const div = document.querySelector('#heatmap');
        const drawn = await drawHeatmap(div, m, rows, cols);
        return [drawn, div.innerText]; }"""
    drawn, text = page.evaluate(draw, [[[0.5, 0.5]], ["a", "</s>"], ["x", "</s>"]])
    assert not drawn and "1 rows but the translation has 2 target tokens" in text
    drawn, text = page.evaluate(draw, [[[0.5, 0.5, 0.0]], ["</s>"], ["x", "</s>"]])
    assert not drawn and "has 3 columns but the source has 2 tokens" in text
    drawn, text = page.evaluate(draw, [[[0.5, 0.4]], ["</s>"], ["x", "</s>"]])
    assert not drawn and "sums to 0.9000, not 1" in text
    drawn, _ = page.evaluate(draw, [[[0.25, 0.75]], ["</s>"], ["x", "</s>"]])
    assert drawn


def test_heads_selector(page: Page, base_url: str, e2e_models: E2EModels) -> None:
    """A multi-head RNN: one layer, a head selector, no layer or self-attention choice."""
    if e2e_models.multihead is None:
        pytest.skip("no multi-head model to test with")
    open_translate(page, base_url)
    result, sent = choose_model(page, e2e_models.multihead)
    assert sent["include_heads"] is True
    heads = result["heads"]
    assert heads is not None and heads["layers"] == 1 and heads["alignment_layer"] == 0
    assert heads["encoder_self"] is None and heads["decoder_self"] is None
    assert page.locator("#head option").count() == heads["heads"] + 1
    assert page.input_value("#head") == "mean"
    assert page.is_visible("#head-field")
    assert not page.is_visible("#layer-field") and not page.is_visible("#kind-field")
    assert page.is_visible("#tab-heads")
    assert plot(page, "#heatmap")["z"] == result["attention"]
    page.select_option("#head", "1")
    same_matrix(page, "#heatmap", heads["cross"][0][1], tol=0)
    page.select_option("#head", "mean")
    same_matrix(page, "#heatmap", result["attention"], tol=0)

    # a single-head model asks for no heads, and the head choice and the Heads tab go away
    result, sent = choose_model(page, e2e_models.models.attention)
    assert sent["include_heads"] is False and result["heads"] is None
    assert not page.is_visible("#head-field") and not page.is_visible("#tab-heads")


def test_transformer_layers_and_heads(page: Page, base_url: str, e2e_models: E2EModels) -> None:
    """The layer selector lists the Transformer's layers; each layer and head is drawn."""
    assert e2e_models.transformer
    open_translate(page, base_url)
    result, sent = choose_model(page, e2e_models.transformer)
    assert sent["include_heads"] is True
    heads = result["heads"]
    layers, count, align = heads["layers"], heads["heads"], heads["alignment_layer"]
    assert layers >= 2 and count >= 2
    cross = heads["cross"]

    options = page.locator("#layer option")
    assert options.count() == layers
    assert [options.nth(i).get_attribute("value") for i in range(layers)] == [
        str(i) for i in range(layers)
    ]
    assert options.all_inner_texts()[align] == f"Layer {align + 1} (alignment)"
    assert page.input_value("#layer") == str(align)
    assert page.locator("#head option").all_inner_texts() == [f"Average of {count} heads"] + [
        f"Head {h + 1}" for h in range(count)
    ]
    assert page.input_value("#head") == "mean"
    # the default is the alignment layer's average: the response's `attention`, as sent
    assert plot(page, "#heatmap")["z"] == result["attention"]

    seen = [plot(page, "#heatmap")["z"]]
    for layer, head in [(0, "mean"), (0, "1"), (layers - 1, "0"), (layers - 1, "1")]:
        page.select_option("#layer", str(layer))
        page.select_option("#head", head)
        want = mean_of(cross[layer]) if head == "mean" else cross[layer][int(head)]
        same_matrix(page, "#heatmap", want, tol=1e-9)
        assert page.get_attribute("#heatmap", "data-view") == f"cross:{layer}:{head}"
        drawn = plot(page, "#heatmap")
        assert drawn["x"] == result["source_tokens"] and drawn["y"] == result["target_tokens"]
        seen.append(drawn["z"])
    assert len({str(z) for z in seen}) > 1, "every layer and head drew the same matrix"
    label = page.get_attribute("#heatmap", "aria-label") or ""
    assert f"layer {layers}, head 2" in label


def test_transformer_heads_grid(
    page: Page, base_url: str, e2e_models: E2EModels, shots: Path, tmp_path: Path
) -> None:
    """The Heads tab: L x H small maps; a click (mouse or keyboard) opens one."""
    assert e2e_models.transformer
    open_translate(page, base_url)
    result, _ = choose_model(page, e2e_models.transformer)
    heads = result["heads"]
    layers, count = heads["layers"], heads["heads"]
    assert layers * count <= 32
    page.click("#tab-heads")
    page.wait_for_selector(f"#head-grid[data-maps='{layers * count}']", state="attached")
    grid = page.evaluate(
        """() => { const gd = document.querySelector('#head-grid');
            return {z: gd.data.map(t => t.z), types: gd.data.map(t => t.type),
                    titles: gd.layout.annotations.map(a => a.text)}; }"""
    )
    assert grid["types"] == ["heatmap"] * (layers * count)
    assert grid["z"] == [heads["cross"][i][h] for i in range(layers) for h in range(count)]
    assert grid["titles"] == [f"L{i + 1} H{h + 1}" for i in range(layers) for h in range(count)]
    assert page.locator("#head-grid-keys .head-key").count() == layers * count

    folder = shots if e2e_models.pictured(e2e_models.transformer) else tmp_path
    shot(page, folder, "heads", "#panel-heads")

    # a mouse click on a small map (through its transparent key) opens it in the heatmap
    target = page.locator("#head-grid-keys .head-key[data-layer='1'][data-head='0']")
    target.scroll_into_view_if_needed()
    box = target.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.6)
    page.wait_for_function("() => !document.querySelector('#panel-heatmap').hidden")
    assert page.get_attribute("#tab-heatmap", "aria-selected") == "true"
    assert page.input_value("#layer") == "1" and page.input_value("#head") == "0"
    same_matrix(page, "#heatmap", heads["cross"][1][0], tol=0)

    # the keyboard: the chosen map is the grid's tab stop; arrows move, Enter opens
    page.click("#tab-heads")
    key = "#head-grid-keys .head-key[data-layer='1'][data-head='0']"
    page.wait_for_selector(f"{key}[aria-pressed='true']", state="attached")
    page.focus("#head-grid-keys .head-key[tabindex='0']")
    focused = "[document.activeElement.dataset.layer, document.activeElement.dataset.head]"
    assert page.evaluate(focused) == ["1", "0"]
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowUp")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == (
        "Layer 1, head 2: open in the heatmap"
    )
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#layer').value === '0'")
    assert page.input_value("#head") == "1"
    same_matrix(page, "#heatmap", heads["cross"][0][1], tol=0)

    # the grid draws the self-attention too, chosen beside it
    page.click("#tab-heads")
    page.select_option("#grid-kind", "decoder")
    page.wait_for_selector("#head-grid[data-kind='decoder']", state="attached")
    z = page.evaluate("document.querySelector('#head-grid').data.map(t => t.z)")
    assert z == [heads["decoder_self"][i][h] for i in range(layers) for h in range(count)]
    assert page.input_value("#attn-kind") == "decoder"


def test_transformer_self_attention(page: Page, base_url: str, e2e_models: E2EModels) -> None:
    """Encoder self: source tokens on both axes. Decoder self: causal (upper triangle 0)."""
    assert e2e_models.transformer
    open_translate(page, base_url)
    result, _ = choose_model(page, e2e_models.transformer)
    heads = result["heads"]
    align = heads["alignment_layer"]
    assert page.is_visible("#kind-field")
    assert page.locator("#attn-kind option").all_inner_texts() == [
        "Cross (target → source)",
        "Encoder self (source → source)",
        "Decoder self (target → earlier target)",
    ]

    page.select_option("#attn-kind", "encoder")
    page.wait_for_selector(f"#heatmap[data-view='encoder:{align}:mean']", state="attached")
    drawn = plot(page, "#heatmap")
    assert drawn["x"] == result["source_tokens"] and drawn["y"] == result["source_tokens"]
    same_matrix(page, "#heatmap", mean_of(heads["encoder_self"][align]), tol=1e-9)
    page.select_option("#head", "0")
    same_matrix(page, "#heatmap", heads["encoder_self"][align][0], tol=0)
    assert "English words" in page.inner_text("#heat-axes")

    page.select_option("#attn-kind", "decoder")
    page.wait_for_selector(f"#heatmap[data-view='decoder:{align}:0']", state="attached")
    drawn = plot(page, "#heatmap")
    assert drawn["y"] == result["target_tokens"]
    assert drawn["x"] == heads["decoder_tokens"] == ["<s>", *result["target_tokens"][:-1]]
    same_matrix(page, "#heatmap", heads["decoder_self"][align][0], tol=0)
    z = drawn["z"]
    assert all(z[t][s] == 0 for t in range(len(z)) for s in range(t + 1, len(z[t])))
    assert all(abs(sum(row) - 1) < 1e-3 for row in z)
    assert "upper triangle" in page.inner_text("#heat-axes")

    page.select_option("#attn-kind", "cross")
    same_matrix(page, "#heatmap", heads["cross"][align][0], tol=0)
    assert plot(page, "#heatmap")["x"] == result["source_tokens"]

    # an RNN model has no self-attention to choose
    if e2e_models.multihead:
        choose_model(page, e2e_models.multihead)
        assert not page.is_visible("#kind-field")
        assert page.get_attribute("#heatmap", "data-view") == "cross:0:mean"


def _is_saliency(response: Response) -> bool:
    body = response.request.post_data_json if response.request.method == "POST" else None
    return _is_translate(response) and bool(body and body.get("include_saliency"))


def test_saliency_view(
    page: Page, base_url: str, e2e_models: E2EModels, shots: Path, tmp_path: Path
) -> None:
    """Asked for when the tab opens (once per translation), beside the attention."""
    asked: list[str] = []
    page.on(
        "request",
        lambda r: (
            asked.append(r.url)
            if r.method == "POST" and (r.post_data_json or {}).get("include_saliency")
            else None
        ),
    )
    open_translate(page, base_url)
    result = translate(page, TEN_WORDS)
    assert result["saliency"] is None and asked == []  # not asked for the first heatmap
    with page.expect_response(_is_saliency) as info:
        page.click("#tab-saliency")
    assert info.value.ok
    sal = info.value.json()
    assert (info.value.request.post_data_json or {}).get("text") == TEN_WORDS
    page.wait_for_selector("#panel-saliency[data-state='ready']", state="attached")
    assert sal["target_tokens"] == result["target_tokens"]

    drawn = plot(page, "#sal-map")
    assert drawn["x"] == result["source_tokens"] and drawn["y"] == result["target_tokens"]
    assert drawn["z"] == sal["saliency"]
    assert len(drawn["z"]) == len(result["target_tokens"])
    assert all(abs(sum(row) - 1) < 1e-3 and min(row) >= 0 for row in drawn["z"])
    beside = plot(page, "#sal-attn")
    assert (beside["x"], beside["y"]) == (drawn["x"], drawn["y"])
    assert beside["z"] == sal["attention"] == result["attention"]

    rho = sal["saliency_correlation"]
    assert rho is not None and len(rho) == len(result["target_tokens"])
    bars = page.evaluate("document.querySelector('#sal-corr').data[0].y")
    assert bars == rho
    defined = [r for r in rho if r is not None]
    mean = sum(defined) / len(defined)
    assert f"Mean ρ = {mean:.2f}" in page.inner_text("#sal-mean")
    assert "same ranking of source words" in page.inner_text("#sal-corr-box")
    assert page.locator("#sal-table tbody tr").count() == len(rho)
    shot(
        page,
        shots if e2e_models.pictured(e2e_models.models.attention) else tmp_path,
        "saliency",
        "#panel-saliency",
    )

    # cached for this translation: back and forth asks nothing more
    page.click("#tab-heatmap")
    page.click("#tab-saliency")
    page.wait_for_selector("#panel-saliency[data-state='ready']", state="attached")
    assert len(asked) == 1

    # a model without attention: the saliency alone, and said so
    if e2e_models.models.plain:
        with page.expect_response(_is_saliency) as info:
            act(page, lambda: page.select_option("#model", e2e_models.models.plain))
        plain = info.value.json()
        page.wait_for_selector("#panel-saliency[data-state='ready']", state="attached")
        assert plain["attention"] is None
        assert page.is_visible("#sal-noattn") and "no attention" in page.inner_text("#sal-noattn")
        assert not page.is_visible("#sal-attn-box") and not page.is_visible("#sal-corr-box")
        alone = plot(page, "#sal-map")
        assert alone["z"] == plain["saliency"]
        assert all(abs(sum(row) - 1) < 1e-3 for row in alone["z"])


def test_keyboard_tabs_and_focus(page: Page, base_url: str) -> None:
    open_translate(page, base_url)
    page.focus("#tab-heatmap")
    page.keyboard.press("ArrowRight")
    assert page.get_attribute("#tab-decoder", "aria-selected") == "true"
    assert page.evaluate("document.activeElement.id") == "tab-decoder"
    assert page.is_visible("#panel-decoder") and not page.is_visible("#panel-heatmap")
    page.keyboard.press("End")
    assert page.get_attribute("#tab-whatif", "aria-selected") == "true"
    # every form control has a label
    unlabeled = page.evaluate(
        "[...document.querySelectorAll('input, select, textarea')]"
        ".filter(e => e.type !== 'radio' && !(e.labels && e.labels.length)"
        " && !e.getAttribute('aria-label')).map(e => e.id)"
    )
    assert unlabeled == []
    # focus is visible: an outline on the focused tab
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_long_input_stays_responsive(
    page: Page, base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    open_translate(page, base_url)
    words = (TEN_WORDS.rstrip(".") + " and ") * 10
    text = " ".join(words.split()[:99]) + " ."
    result = translate(page, text)
    assert len(result["source_tokens"]) >= 100
    drawn = page.evaluate(
        "performance.getEntriesByName('attnviz:translate-to-heatmap').at(-1).duration"
    )
    server = result["timing_ms"]["total"]
    start = page.evaluate("performance.now()")
    page.click("#tab-decoder")
    page.wait_for_selector("#dec-plot[data-frames]", state="attached")
    decoder = page.evaluate(f"performance.now() - {start}")
    say(
        capsys,
        f"100-word input: {len(result['target_tokens'])} steps; Translate -> heatmap "
        f"{drawn:.0f} ms (service {server:.0f} ms); decoder tab drawn in {decoder:.0f} ms",
    )
    assert plot(page, "#heatmap")["x"] == result["source_tokens"]


def test_phone_width(phone: Page, base_url: str, shots: Path, e2e_models: E2EModels) -> None:
    open_translate(phone, base_url)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"the page is {width} px wide on a 360 px screen"
    assert phone.is_visible("#heatmap .main-svg")
    shot(phone, shots, "translate-phone")
    if e2e_models.transformer:  # its attention, layer and head choices fit too
        choose_model(phone, e2e_models.transformer, "The boy runs.")
        assert phone.is_visible("#kind-field") and phone.is_visible("#layer-field")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"the Transformer's page is {width} px wide on a 360 px screen"


# -- compare and models ----------------------------------------------------------------------


def test_compare_two_models(page: Page, base_url: str, shots: Path, e2e_models: E2EModels) -> None:
    models = e2e_models.models
    names = [models.attention] + ([models.plain] if models.plain else [])
    if len(names) < 2:
        pytest.skip("one model only")
    page.goto(f"{base_url}/compare?models={','.join(names)}")
    page.wait_for_selector("#compare-result[data-ready]", state="attached")
    cards = page.locator(".compare-card")
    assert cards.count() == 2
    assert cards.nth(0).get_attribute("data-model") == names[0]
    assert page.locator(f".compare-card[data-model='{names[0]}'] .main-svg").count() >= 1
    assert "BLEU" in cards.nth(0).inner_text()
    plain = page.locator(f".compare-card[data-model='{names[1]}'] .no-attention")
    assert "one fixed vector" in plain.inner_text()
    shot(page, shots, "compare")

    # fewer than two models: said next to the choice, nothing sent
    page.uncheck(f"#model-picks input[value='{names[1]}']")
    page.click("#compare-btn")
    assert "2 to 4" in page.inner_text("#picks-error")


def test_models_page(page: Page, base_url: str, shots: Path) -> None:
    page.goto(f"{base_url}/models")
    cards = page.evaluate("JSON.parse(document.getElementById('cards-data').textContent)")
    assert page.locator(".model-card").count() == len(cards)
    assert page.locator("#models-table tbody tr").count() == len(cards)
    evaluated = [c for c in cards if c.get("bleu_by_length")]
    if evaluated:  # one line per evaluated model, on one chart
        page.wait_for_selector("#by-length .main-svg")
        assert page.evaluate("document.querySelector('#by-length').data.length") == len(evaluated)
    else:  # models trained for the tests only are not evaluated
        assert "evaluate" in page.inner_text("#by-length")
    # each card's training curves are drawn when it scrolls into view: every one of them
    for k in range(len(cards)):
        page.locator(".model-card").nth(k).scroll_into_view_if_needed()
    page.wait_for_function(
        """() => [...document.querySelectorAll('.model-card .curve')]
              .every(c => c.querySelector('.main-svg') || c.querySelector('p.help'))"""
    )
    assert page.locator(".model-card .curve .main-svg").count() >= 1
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, shots, "models")


def test_no_console_errors_on_every_page(browser: Browser, base_url: str) -> None:
    """Each page loads cleanly (the fixture-less way, to cover the pages no test opens)."""
    context, watch = open_context(browser)
    page = context.new_page()
    watch_page(page, watch)
    for path in ("/", "/compare", "/models", "/docs"):
        page.goto(f"{base_url}{path}", wait_until="networkidle")
    context.close()
    watch.check()
