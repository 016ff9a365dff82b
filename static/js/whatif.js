// What-if: block source words (the decoder may not attend to them) and/or force the
// beginning of the translation, translate again, and compare attention before and after.
// A blocked word is a whole word: the request names it in `masked_words` (indices of
// source_words) and the service masks every piece of it. The heatmaps follow the page's
// Words / Pieces choice (words.js).

import { ApiError, postJSON } from "./api.js";
import { drawHeatmap, noAttentionPanel, showPlotError } from "./heatmap.js";
import { chip, rovingFocus } from "./tokens.js";
import { fieldError, range, setBusy } from "./util.js";
import { crossIn, piecesOfWords, unitFor, wordsOf } from "./words.js";

export class WhatIf {
  constructor(root) {
    this.root = root;
    this.form = root.querySelector("#whatif-form");
    this.sourceBox = root.querySelector("#whatif-source");
    this.noAttn = root.querySelector("#whatif-noattn");
    this.prefix = root.querySelector("#prefix");
    this.error = root.querySelector("#prefix-error");
    this.button = root.querySelector("#whatif-btn");
    this.before = root.querySelector("#before-heatmap");
    this.after = root.querySelector("#after-heatmap");
    this.beforeText = root.querySelector("#before-text");
    this.afterText = root.querySelector("#after-text");
    this.blocked = new Set();
    this.dirty = false;
    rovingFocus(this.sourceBox);
    this.sourceBox.addEventListener("click", (event) => {
      const node = event.target.closest("button.tok");
      if (node) this.toggle(Number(node.dataset.i), node);
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.run();
    });
    this.afterPlaceholder = this.after.innerHTML;
  }

  /** A new translation (the "before") and the request that made it. */
  set(result, request) {
    this.result = result;
    this.request = request;
    this.blocked.clear();
    this.afterResult = null;
    this.dirty = true;
    this.prefix.value = "";
    this.prefix.placeholder = wordsOf(result, "target").slice(0, 2).map((w) => w.word).filter((w) => w !== "</s>").join(" ");
    fieldError(this.prefix, this.error, null);
  }

  toggle(i, node) {
    if (!this.result.attention) return;
    if (this.blocked.has(i)) this.blocked.delete(i);
    else this.blocked.add(i);
    node.classList.toggle("blocked", this.blocked.has(i));
    node.setAttribute("aria-pressed", String(this.blocked.has(i)));
  }

  /** The Words / Pieces choice changed: the heatmaps are drawn again (if the tab shows). */
  async refresh() {
    if (!this.result || this.dirty) return;
    this.stale = true;
    if (!this.root.hidden) await this.show();
  }

  async show() {
    if (!this.result) return;
    if (!this.dirty) {
      if (!this.stale) return;
      this.stale = false; // the chips are words either way: only the heatmaps change
      await this.drawBefore();
      if (this.afterResult) await this.drawAfter();
      return;
    }
    this.dirty = false;
    this.stale = false;
    const hasAttention = Boolean(this.result.attention);
    const unknown = new Set(this.result.unknown_source_tokens || []);
    // one chip per source word (the end token too): blocking a word blocks all its pieces
    this.sourceBox.replaceChildren(
      ...wordsOf(this.result, "source").map((w, k) => {
        const node = chip(w.word, k, { unknown: range(w.end - w.start).some((i) => unknown.has(w.start + i)) });
        node.setAttribute("aria-pressed", "false");
        if (w.end - w.start > 1) node.title = `${w.end - w.start} pieces: blocking the word blocks them all`;
        node.disabled = !hasAttention;
        return node;
      }),
    );
    this.noAttn.hidden = hasAttention;
    this.beforeText.textContent = this.result.translation;
    this.afterText.textContent = "";
    await this.drawBefore();
    if (this.afterResult) await this.drawAfter();
    else {
      if (window.Plotly && this.after.classList.contains("js-plotly-plot")) window.Plotly.purge(this.after);
      delete this.after.dataset.hooked;
      this.after.innerHTML = this.afterPlaceholder;
      delete this.after.dataset.state;
    }
  }

  async run() {
    if (!this.result) return;
    const body = {
      ...this.request,
      include_heads: false, // the what-if view draws the `attention` only
      include_saliency: false,
      forced_prefix: this.prefix.value.trim() || null,
      masked_words: this.blocked.size ? [...this.blocked].sort((a, b) => a - b) : null,
    };
    fieldError(this.prefix, this.error, null);
    setBusy(this.button, true, "Translating…");
    try {
      this.afterResult = await postJSON("/api/translate", body);
      this.afterMasked = body.masked_words || []; // word indices
      await this.drawAfter();
    } catch (error) {
      if (error.name === "AbortError") return;
      const message = error instanceof ApiError ? error.message : String(error);
      fieldError(this.prefix, this.error, message);
    } finally {
      setBusy(this.button, false, "Translate again");
    }
  }

  /** One result's attention in the page's unit, into `div`; masked: blocked word indices. */
  async drawOne(div, r, { masked = [], filename }) {
    if (!r.attention) {
      noAttentionPanel(div, true);
      return;
    }
    const unit = unitFor(r);
    const shown = crossIn(r, r.attention, unit);
    if (shown.problem) {
      showPlotError(div, shown.problem);
      return;
    }
    const forcedPieces = (r.steps || []).filter((step) => step.forced).length;
    const words = unit === "words";
    await drawHeatmap(div, shown.matrix, shown.rows, shown.cols, {
      compact: true,
      showScale: false,
      masked: words ? masked : piecesOfWords(wordsOf(r, "source"), masked),
      forced: words ? shown.rowWords.filter((w) => w.end <= forcedPieces).length : forcedPieces,
      filename,
    });
    div.dataset.unit = unit;
  }

  async drawBefore() {
    await this.drawOne(this.before, this.result, { filename: "attnviz-before" });
  }

  async drawAfter() {
    const r = this.afterResult;
    this.afterText.textContent = r.translation;
    await this.drawOne(this.after, r, { masked: this.afterMasked, filename: "attnviz-after" });
  }
}
