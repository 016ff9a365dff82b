"""Words, not pieces, in a real browser: a tiny subword (SentencePiece) model served beside
the others (conftest.py trains it), drawn over words by default with a Words / Pieces switch
(static/js/words.js): the heatmap and the token strips, the decoder, the what-if and the
compare page. A lab model's words are its tokens: there the switch is not shown.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page, Route

from tests.e2e.conftest import E2EModels
from tests.e2e.test_browser import _is_translate, act, choose_model, open_translate, plot, shot

pytestmark = pytest.mark.e2e

SENTENCE = "Can you help me, please?"
WORDS = ["Can", "you", "help", "me,", "please?", "</s>"]
TOL = 1e-6


def words(result: dict[str, Any], side: str) -> list[str]:
    return [w["word"] for w in result[f"{side}_words"]]


def spans(result: dict[str, Any], side: str) -> list[tuple[int, int]]:
    return [(w["start"], w["end"]) for w in result[f"{side}_words"]]


def close(a: list[list[float]], b: list[list[float]], tol: float = TOL) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(abs(u - v) <= tol for u, v in zip(x, y, strict=True))
        for x, y in zip(a, b, strict=True)
    )


def multi_piece_word(result: dict[str, Any]) -> int:
    """The index of a source word of several pieces (the tiny model cuts "help" in five)."""
    found = [k for k, (a, b) in enumerate(spans(result, "source")) if b - a > 1]
    assert found, f"no source word of several pieces: {result['source_tokens']}"
    return words(result, "source").index("help") if 2 in found else found[0]


def switch(page: Page, toggle: str, unit: str) -> None:
    """Click Words or Pieces in one of the page's switches (a label, as a person would)."""
    page.click(f"#{toggle} label:has(input[value='{unit}'])")
    assert page.is_checked(f"#{toggle} input[value='{unit}']")


def hover_cell(page: Page, selector: str, t: int, s: int) -> None:
    """Move the mouse over cell (row t, column s) of a Plotly heatmap."""
    page.locator(selector).scroll_into_view_if_needed()
    x, y = page.evaluate(
        """([sel, t, s]) => { const gd = document.querySelector(sel);
            const fl = gd._fullLayout, r = gd.getBoundingClientRect();
            return [r.left + fl.xaxis._offset + fl.xaxis.l2p(s),
                    r.top + fl.yaxis._offset + fl.yaxis.l2p(t)]; }""",
        [selector, t, s],
    )
    page.mouse.move(x, y)


def shapes(page: Page, selector: str) -> list[float]:
    """The columns a heatmap marks as blocked (its dotted rectangles)."""
    return list(
        page.evaluate(
            "sel => (document.querySelector(sel).layout.shapes || [])"
            ".filter(s => s.line && s.line.dash === 'dot').map(s => s.x0 + 0.5)",
            selector,
        )
    )


# -- the heatmap and the strips -------------------------------------------------------------


def test_heatmap_shows_words_and_pieces_on_request(
    page: Page, base_url: str, e2e_models: E2EModels, shots: Path, tmp_path: Path
) -> None:
    open_translate(page, base_url)
    # a lab model: its words are its tokens, there is nothing to choose
    assert page.get_attribute("#heatmap", "data-unit") == "pieces"
    assert not page.is_visible("#unit-heatmap")

    result, _ = choose_model(page, e2e_models.subword, SENTENCE)
    assert words(result, "source") == WORDS
    assert result["source_words"][-1] == {
        "word": "</s>",
        "start": len(result["source_tokens"]) - 1,
        "end": len(result["source_tokens"]),
    }
    assert len(result["source_tokens"]) > len(WORDS)  # some word has several pieces
    assert page.is_visible("#unit-heatmap")
    assert page.is_checked("#unit-heatmap input[value='words']")  # words by default

    # words: the service's word_attention, words on both axes, the word alignment outlined
    page.wait_for_selector("#heatmap[data-unit='words']", state="attached")
    drawn = plot(page, "#heatmap")
    assert drawn["x"] == WORDS
    assert drawn["y"] == words(result, "target")
    assert drawn["z"] == result["word_attention"]
    assert all(abs(sum(row) - 1) < 1e-3 for row in drawn["z"])
    assert page.locator("#src-tokens .tok").all_inner_texts() == WORDS
    assert page.locator("#tgt-tokens .tok").all_inner_texts() == words(result, "target")
    assert "sum of its pieces" in page.inner_text("#heat-axes")
    links = page.evaluate(
        "document.querySelector('#heatmap').layout.shapes"
        ".map(s => `${s.x0 + 0.5}-${s.y0 + 0.5}`).join(' ')"
    )
    assert links == result["alignment"]  # Pharaoh links words: source word - target word

    # the page's rule (words.js) gives what the service sent
    aggregated = page.evaluate(
        """async ([m, src, tgt]) => { const w = await import('/static/js/words.js');
            return w.toWords(m, w.spansOf(tgt), w.spansOf(src)); }""",
        [result["attention"], result["source_words"], result["target_words"]],
    )
    # (the service rounds every weight to 6 decimals: a word of 8 pieces may differ by 4e-6)
    assert close(aggregated, result["word_attention"], tol=1e-5)

    # hover linking, in words: a target word lights its most-attended source word, a cell
    # of the heatmap both of its words
    page.hover("#tgt-tokens .tok >> nth=0")
    row = result["word_attention"][0]
    best = max(range(len(row)), key=row.__getitem__)
    assert page.locator("#src-tokens .tok.top").inner_text() == WORDS[best]
    page.hover(f"#src-tokens .tok >> nth={best}")
    assert page.locator("#tgt-tokens .tok.top").count() == 1
    assert f"“{WORDS[best]}” was looked at" in page.inner_text("#link-hint")
    help_ = WORDS.index("help")
    hover_cell(page, "#heatmap", 0, help_)
    page.wait_for_function(
        "() => document.querySelector('#src-tokens .tok.active')?.textContent === 'help'"
    )
    assert page.locator("#tgt-tokens .tok.active").inner_text() == words(result, "target")[0]
    weight = result["word_attention"][0][help_]
    assert f"→ “help”: weight {weight:.3f}" in page.inner_text("#link-hint")
    folder = shots if e2e_models.pictured(e2e_models.subword) else tmp_path
    shot(page, folder, "words-heatmap", "#result")
    page.mouse.move(0, 0)

    # pieces: today's attention, the pieces as the API gives them ("▁Ca", "n", ...)
    switch(page, "unit-heatmap", "pieces")
    page.wait_for_selector("#heatmap[data-unit='pieces']", state="attached")
    drawn = plot(page, "#heatmap")
    assert drawn["x"] == result["source_tokens"] and drawn["x"][0].startswith("▁")
    assert drawn["y"] == result["target_tokens"]
    assert drawn["z"] == result["attention"]
    assert page.locator("#src-tokens .tok").all_inner_texts() == result["source_tokens"]
    assert "pieces" in page.inner_text("#heat-axes")
    shot(page, folder, "pieces-heatmap", "#panel-heatmap")

    # one choice for the page: the decoder opens in pieces, and its switch brings words back
    assert page.is_checked("#unit-decoder input[value='pieces']")
    page.click("#tab-decoder")
    page.wait_for_selector("#panel-decoder[data-unit='pieces']", state="attached")
    switch(page, "unit-decoder", "words")
    page.wait_for_selector("#panel-decoder[data-unit='words']", state="attached")
    assert page.locator("#src-tokens .tok").all_inner_texts() == WORDS  # the strips at once
    page.click("#tab-heatmap")  # the heatmap, when its tab shows
    page.wait_for_selector("#heatmap[data-unit='words']", state="attached")
    assert plot(page, "#heatmap")["x"] == WORDS

    # the piece-level views say so
    page.click("#tab-beam")
    assert "over the pieces" in page.inner_text("#panel-beam .piece-note")
    page.click("#tab-saliency")
    page.wait_for_selector("#panel-saliency[data-state='ready']", state="attached")
    assert "stay over pieces" in page.inner_text("#panel-saliency .help")

    # and back to a lab model: no switch, tokens as before, no notes
    page.click("#tab-heatmap")
    result, _ = choose_model(page, e2e_models.models.attention)
    assert not page.is_visible("#unit-heatmap")
    assert plot(page, "#heatmap")["x"] == result["source_tokens"]
    assert page.get_attribute("#panel-beam .piece-note", "hidden") is not None


def test_broken_word_spans_are_refused_before_drawing(
    page: Page, base_url: str, e2e_models: E2EModels
) -> None:
    """Spans must tile the pieces: the page says what is wrong instead of drawing."""
    page.goto(f"{base_url}/models")  # any page: the module is imported on its own
    checks = page.evaluate(
        """async () => { const w = await import('/static/js/words.js');
            const t = ['a', 'b', 'c'];
            const W = (word, start, end) => ({word, start, end});
            return [w.checkSpans([W('ab', 0, 2), W('c', 2, 3)], t),
                    w.checkSpans([W('a', 0, 1), W('c', 2, 3)], t),
                    w.checkSpans([W('ab', 0, 2)], t),
                    w.checkSpans([W('x', 0, 0), W('abc', 0, 3)], t),
                    w.sumColumns([[0.25, 0.25, 0.5]], [[0, 2], [2, 3]]),
                    w.meanRows([[1, 0], [0, 1], [0.5, 0.5]], [[0, 2], [2, 3]])]; }"""
    )
    assert checks[0] is None
    assert "must cover the 3 source pieces once, in order (next piece: 1)" in checks[1]
    assert "cover 2 pieces, but there are 3" in checks[2]
    assert "covers pieces 0–0" in checks[3]
    assert checks[4] == [[0.5, 0.5]]
    assert checks[5] == [[0.5, 0.5], [0.5, 0.5]]

    def broken(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["source_words"][1]["end"] += 1  # overlaps the next word
        route.fulfill(response=response, json=body)

    page.route("**/api/translate", broken)
    open_translate(page, base_url)
    choose_model(page, e2e_models.subword, SENTENCE)
    page.wait_for_selector("#heatmap[data-state='error']", state="attached")
    assert "must cover the" in page.inner_text("#heatmap")
    switch(page, "unit-heatmap", "pieces")  # pieces need no spans
    page.wait_for_selector("#heatmap[data-state='plot']", state="attached")


# -- the decoder ----------------------------------------------------------------------------


def test_decoder_steps_are_pieces_of_words(
    page: Page, base_url: str, e2e_models: E2EModels, shots: Path, tmp_path: Path
) -> None:
    open_translate(page, base_url)
    result, _ = choose_model(page, e2e_models.subword, SENTENCE)
    page.click("#tab-decoder")
    page.wait_for_selector("#dec-plot[data-frames]", state="attached")
    n = len(result["target_tokens"])
    targets = result["target_words"]
    src = spans(result, "source")
    drawn = page.evaluate(
        """() => { const gd = document.querySelector('#dec-plot');
            return {frames: gd._transitionData._frames.map(f => f.data[0].y),
                    ticks: gd.layout.xaxis.ticktext, count: Number(gd.dataset.frames)}; }"""
    )
    # one frame per piece; in words each frame is the piece's row, pieces summed per word
    assert drawn["count"] == n == len(drawn["frames"])
    assert [html.unescape(t) for t in drawn["ticks"]] == WORDS
    want = [[sum(row[a:b]) for a, b in src] for row in result["attention"]]
    assert close(drawn["frames"], want)
    assert page.locator("#dec-source .tok").all_inner_texts() == WORDS
    assert page.locator("#dec-sofar .word-box").count() == len(targets)
    assert page.inner_text("#dec-unit") == "words"

    page.focus("#panel-decoder")
    for t in range(n):
        assert page.inner_text("#dec-step-label") == f"Step {t + 1} of {n}"
        k = next(i for i, w in enumerate(targets) if w["start"] <= t < w["end"])
        word = targets[k]
        assert page.get_attribute("#dec-word", "data-word") == str(k)
        line = page.inner_text("#dec-word")
        if word["word"] == "</s>":
            assert "end token" in line
        else:
            assert f"“{word['word']}”" in line and result["target_tokens"][t] in line
            if word["end"] - word["start"] > 1:
                assert f"piece {t - word['start'] + 1} of {word['end'] - word['start']}" in line
        current = page.locator("#dec-sofar .word-box.current-word .tok.current")
        assert current.inner_text() == result["target_tokens"][t]
        best = max(range(len(want[t])), key=want[t].__getitem__)
        assert page.locator("#dec-source .is-argmax").inner_text() == WORDS[best]
        if t == 1:
            folder = shots if e2e_models.pictured(e2e_models.subword) else tmp_path
            shot(page, folder, "decoder-words", "#panel-decoder")
        page.keyboard.press("ArrowRight")

    # pieces: the step stays, the bars are the pieces
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    switch(page, "unit-decoder", "pieces")
    page.wait_for_selector("#panel-decoder[data-unit='pieces']", state="attached")
    ticks = page.evaluate("document.querySelector('#dec-plot').layout.xaxis.ticktext")
    assert [html.unescape(t) for t in ticks] == result["source_tokens"]
    assert page.inner_text("#dec-step-label") == f"Step 2 of {n}"
    assert page.locator("#dec-source .tok").count() == len(result["source_tokens"])
    assert page.is_visible("#dec-word")  # the step's word is said in pieces too


# -- what-if --------------------------------------------------------------------------------


def test_whatif_blocks_a_whole_word(
    page: Page, base_url: str, e2e_models: E2EModels, shots: Path, tmp_path: Path
) -> None:
    open_translate(page, base_url)
    before, _ = choose_model(page, e2e_models.subword, SENTENCE)
    k = multi_piece_word(before)
    start, end = spans(before, "source")[k]
    page.click("#tab-whatif")
    chips = page.locator("#whatif-source .tok")
    assert chips.all_inner_texts() == WORDS  # one chip per word
    page.click(f"#whatif-source .tok >> nth={k}")
    assert chips.nth(k).get_attribute("aria-pressed") == "true"
    assert "blocked" in (chips.nth(k).get_attribute("class") or "")
    with page.expect_response(_is_translate) as info:
        page.click("#whatif-btn")
    after = info.value.json()
    sent = info.value.request.post_data_json
    assert sent is not None
    assert sent["masked_words"] == [k] and sent.get("masked_source") is None
    # every piece of the word gets nothing, so the word gets nothing
    assert all(row[i] == 0 for row in after["attention"] for i in range(start, end))
    assert all(row[k] == 0 for row in after["word_attention"])
    assert any(row[i] > 0 for row in before["attention"] for i in range(start, end))

    page.wait_for_selector("#after-heatmap[data-unit='words']", state="attached")
    drawn = plot(page, "#after-heatmap")
    assert drawn["x"] == WORDS and drawn["z"] == after["word_attention"]
    assert shapes(page, "#after-heatmap") == [k]  # the word's column, dotted
    assert plot(page, "#before-heatmap")["z"] == before["word_attention"]
    shot(
        page,
        shots if e2e_models.pictured(e2e_models.subword) else tmp_path,
        "whatif-words",
        "#panel-whatif",
    )

    # in pieces, all the word's pieces are the dotted columns
    switch(page, "unit-whatif", "pieces")
    page.wait_for_selector("#after-heatmap[data-unit='pieces']", state="attached")
    drawn = plot(page, "#after-heatmap")
    assert drawn["x"] == after["source_tokens"] and drawn["z"] == after["attention"]
    assert shapes(page, "#after-heatmap") == list(range(start, end))
    assert chips.all_inner_texts() == WORDS  # blocking stays by word
    assert chips.nth(k).get_attribute("aria-pressed") == "true"


# -- compare --------------------------------------------------------------------------------


def test_compare_words_and_pieces(
    page: Page, base_url: str, e2e_models: E2EModels, shots: Path, tmp_path: Path
) -> None:
    lab, sub = e2e_models.models.attention, e2e_models.subword
    expected = {
        name: page.request.post(
            f"{base_url}/api/translate",
            data={"text": SENTENCE, "model": name, "beam_size": 1, "n_best": 1, "top_k": 0},
        ).json()
        for name in (lab, sub)
    }
    page.goto(f"{base_url}/compare?{urlencode({'models': f'{lab},{sub}', 'text': SENTENCE})}")
    page.wait_for_selector("#compare-result[data-ready]", state="attached")
    card = f".compare-card[data-model='{sub}'] .plot"
    page.wait_for_selector(f"{card}[data-unit='words']", state="attached")
    assert page.is_visible("#unit-compare") and page.is_visible("#compare-unit-note")
    drawn = plot(page, card)
    assert drawn["x"] == WORDS and drawn["z"] == expected[sub]["word_attention"]
    assert drawn["y"] == words(expected[sub], "target")
    other = f".compare-card[data-model='{lab}'] .plot"
    assert plot(page, other)["x"] == expected[lab]["source_tokens"]
    shot(page, shots if e2e_models.pictured(sub) else tmp_path, "compare-words")

    switch(page, "unit-compare", "pieces")
    page.wait_for_selector(f"{card}[data-unit='pieces']", state="attached")
    drawn = plot(page, card)
    assert drawn["x"] == expected[sub]["source_tokens"] and drawn["z"] == expected[sub]["attention"]
    assert plot(page, other)["x"] == expected[lab]["source_tokens"]  # its words are its tokens

    switch(page, "unit-compare", "words")
    page.wait_for_selector(f"{card}[data-unit='words']", state="attached")
    assert plot(page, card)["x"] == WORDS


def test_unit_is_remembered_in_the_page(page: Page, base_url: str, e2e_models: E2EModels) -> None:
    """A new translation keeps the choice (and so does the tab: sessionStorage)."""
    open_translate(page, base_url)
    choose_model(page, e2e_models.subword, SENTENCE)
    switch(page, "unit-heatmap", "pieces")
    page.wait_for_selector("#heatmap[data-unit='pieces']", state="attached")
    page.fill("#text", "Thank you.")
    result = act(page, lambda: page.click("#translate-btn"))
    assert page.get_attribute("#heatmap", "data-unit") == "pieces"
    assert plot(page, "#heatmap")["x"] == result["source_tokens"]
    page.reload()
    page.wait_for_selector("#heatmap[data-unit='pieces']", state="attached")
    assert page.is_checked("#unit-heatmap input[value='pieces']")
