// What-if: block source words (the decoder may not attend to them) and/or force the
// beginning of the translation, translate again, and compare attention before and after.

import { ApiError, postJSON } from "./api.js";
import { drawHeatmap, noAttentionPanel } from "./heatmap.js";
import { chip, rovingFocus } from "./tokens.js";
import { fieldError, setBusy } from "./util.js";

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
    this.prefix.placeholder = result.target_tokens.slice(0, 2).filter((t) => t !== "</s>").join(" ");
    fieldError(this.prefix, this.error, null);
  }

  toggle(i, node) {
    if (!this.result.attention) return;
    if (this.blocked.has(i)) this.blocked.delete(i);
    else this.blocked.add(i);
    node.classList.toggle("blocked", this.blocked.has(i));
    node.setAttribute("aria-pressed", String(this.blocked.has(i)));
  }

  async show() {
    if (!this.result || !this.dirty) return;
    this.dirty = false;
    const hasAttention = Boolean(this.result.attention);
    const unknown = new Set(this.result.unknown_source_tokens || []);
    this.sourceBox.replaceChildren(
      ...this.result.source_tokens.map((tok, i) => {
        const node = chip(tok, i, { unknown: unknown.has(i) });
        node.setAttribute("aria-pressed", "false");
        node.disabled = !hasAttention;
        return node;
      }),
    );
    this.noAttn.hidden = hasAttention;
    this.beforeText.textContent = this.result.translation;
    this.afterText.textContent = "";
    if (hasAttention) {
      await drawHeatmap(this.before, this.result.attention, this.result.target_tokens, this.result.source_tokens, {
        compact: true,
        showScale: false,
        filename: "attnviz-before",
      });
    } else noAttentionPanel(this.before, true);
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
      masked_source: this.blocked.size ? [...this.blocked].sort((a, b) => a - b) : null,
    };
    fieldError(this.prefix, this.error, null);
    setBusy(this.button, true, "Translating…");
    try {
      this.afterResult = await postJSON("/api/translate", body);
      this.afterMasked = body.masked_source || [];
      await this.drawAfter();
    } catch (error) {
      if (error.name === "AbortError") return;
      const message = error instanceof ApiError ? error.message : String(error);
      fieldError(this.prefix, this.error, message);
    } finally {
      setBusy(this.button, false, "Translate again");
    }
  }

  async drawAfter() {
    const r = this.afterResult;
    this.afterText.textContent = r.translation;
    if (!r.attention) {
      noAttentionPanel(this.after, true);
      return;
    }
    await drawHeatmap(this.after, r.attention, r.target_tokens, r.source_tokens, {
      compact: true,
      showScale: false,
      masked: this.afterMasked,
      forced: (r.steps || []).filter((step) => step.forced).length,
      filename: "attnviz-after",
    });
  }
}
