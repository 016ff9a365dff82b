// Saliency: what the gradient says each output word depended on (|input × gradient| over
// the source words, each row scaled to sum to 1), beside the attention, and how well the two
// agree word by word (Spearman's rho). Asked for lazily, the first time the tab is shown
// for a translation: the same request again with include_saliency, kept for that result.

import { ApiError, postJSON } from "./api.js";
import { drawHeatmap, parsePharaoh, plotText, resetPlot, showPlotError } from "./heatmap.js";
import { baseLayout, theme } from "./theme.js";
import { el, fmt, plotConfig, range } from "./util.js";

/** The mean of the defined correlations, and how many there were. */
export function meanCorrelation(values) {
  const defined = (values || []).filter((v) => typeof v === "number" && Number.isFinite(v));
  if (!defined.length) return { mean: null, count: 0 };
  return { mean: defined.reduce((a, b) => a + b, 0) / defined.length, count: defined.length };
}

function verdict(mean) {
  if (mean >= 0.7) return "attention and saliency mostly rank the source words the same way";
  if (mean >= 0.3) return "attention and saliency partly agree";
  if (mean > -0.3) return "attention says little about which source words drove the output";
  return "attention and saliency rank the source words in opposite ways";
}

export class SaliencyView {
  constructor(root) {
    this.root = root;
    this.q = (id) => root.querySelector(`#${id}`);
    this.status = this.q("sal-status");
    this.pair = this.q("sal-pair");
    this.attnBox = this.q("sal-attn-box");
    this.attnWhat = this.q("sal-attn-what");
    this.attnPlot = this.q("sal-attn");
    this.salPlot = this.q("sal-map");
    this.noAttn = this.q("sal-noattn");
    this.corrBox = this.q("sal-corr-box");
    this.corrPlot = this.q("sal-corr");
    this.mean = this.q("sal-mean");
    this.table = this.q("sal-table");
    this.result = null;
    this.data = null;
    this.pending = null;
  }

  /** A new translation and the request that made it: its saliency is asked for when shown.
   * attentionNote says which attention the response's `attention` is (layer, heads). */
  set(result, request, attentionNote = "") {
    this.attentionNote = attentionNote;
    this.controller?.abort();
    this.controller = null;
    this.pending = null;
    this.result = result;
    this.request = request;
    this.data = null;
    this.drawn = false;
    delete this.root.dataset.state;
  }

  say(message, { error = false, busy = false } = {}) {
    this.status.hidden = !message;
    this.status.textContent = message || "";
    this.status.classList.toggle("error", error);
    this.status.setAttribute("role", error ? "alert" : "status");
    this.root.setAttribute("aria-busy", String(busy));
  }

  async show() {
    if (!this.result) return;
    if (this.data) {
      if (!this.drawn) await this.draw();
      return;
    }
    if (this.pending) return;
    const result = this.result;
    const controller = new AbortController();
    this.controller = controller;
    // the same translation again, with the saliency; nothing else it does not need
    const body = { ...this.request, include_saliency: true, include_heads: false, include_beam: false, n_best: 1 };
    this.root.dataset.state = "loading";
    this.say("Computing the saliency: one gradient for every word of the translation…", { busy: true });
    this.pending = postJSON("/api/translate", body, controller.signal);
    let data;
    try {
      data = await this.pending;
    } catch (error) {
      if (error.name === "AbortError" || this.result !== result) return;
      this.pending = null;
      const message = error instanceof ApiError ? error.message : `Something went wrong: ${error.message}`;
      this.say(`Could not compute the saliency: ${message}`, { error: true });
      this.root.dataset.state = "error";
      return;
    }
    if (this.result !== result) return; // a newer translation came meanwhile
    this.pending = null;
    this.data = data;
    this.say(null);
    await this.draw();
  }

  async draw() {
    const d = this.data;
    const hasAttention = Array.isArray(d.attention);
    const stem = `attnviz-${d.model}`;
    this.drawn = true;
    this.attnBox.hidden = !hasAttention;
    this.noAttn.hidden = hasAttention;
    this.pair.classList.toggle("single", !hasAttention);
    if (!Array.isArray(d.saliency)) {
      showPlotError(this.salPlot, "the service sent no saliency for this model");
      this.corrBox.hidden = true;
      this.root.dataset.state = "ready";
      return;
    }
    const common = { compact: true, showScale: false };
    await drawHeatmap(this.salPlot, d.saliency, d.target_tokens, d.source_tokens, {
      ...common,
      what: "saliency",
      valueName: "saliency",
      filename: `${stem}-saliency`,
      label: `Saliency heatmap: ${d.target_tokens.length} target tokens (rows) by ${d.source_tokens.length} source tokens (columns)`,
    });
    if (hasAttention) {
      this.attnWhat.textContent = this.attentionNote || "";
      await drawHeatmap(this.attnPlot, d.attention, d.target_tokens, d.source_tokens, {
        ...common,
        links: parsePharaoh(d.alignment),
        filename: `${stem}-attention`,
      });
    } else resetPlot(this.attnPlot);
    const rho = d.saliency_correlation;
    this.corrBox.hidden = !hasAttention || !Array.isArray(rho);
    if (!this.corrBox.hidden) await this.drawCorrelation(d.target_tokens, rho);
    this.root.dataset.state = "ready";
  }

  async drawCorrelation(tokens, rho) {
    const th = theme();
    const { mean, count } = meanCorrelation(rho);
    const left = tokens.length - count;
    if (mean === null) {
      this.mean.textContent = "No word has a defined correlation (a constant row has no ranking).";
    } else {
      this.mean.textContent =
        `Mean ρ = ${fmt(mean, 2)} over ${count} ${count === 1 ? "word" : "words"}: ${verdict(mean)}.` +
        (left ? ` ${left} left out: their ρ is undefined (a constant row has no ranking).` : "");
    }
    const x = range(tokens.length);
    const y = rho.map((v) => (typeof v === "number" && Number.isFinite(v) ? v : null));
    const trace = {
      type: "bar",
      x,
      y,
      marker: { color: y.map((v) => (v === null ? th.border : v >= 0 ? th.accent : th.danger)) },
      customdata: tokens.map(plotText),
      hovertemplate: "<b>%{customdata}</b><br>ρ = %{y:.2f}<extra></extra>",
    };
    const shapes = mean === null ? [] : [{
      type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: mean, y1: mean,
      line: { color: th.mark, width: 2, dash: "dash" },
    }];
    const narrow = (this.corrPlot.clientWidth || 600) < 560;
    const layout = baseLayout({
      height: 220,
      margin: { l: 44, r: 78, t: 10, b: narrow ? 70 : 60 },
      bargap: 0.25,
      xaxis: {
        tickmode: "array",
        tickvals: x,
        ticktext: tokens.map(plotText),
        tickangle: tokens.length > 8 || narrow ? -45 : 0,
        fixedrange: true,
        showgrid: false,
      },
      yaxis: { range: [-1.05, 1.05], tickvals: [-1, -0.5, 0, 0.5, 1], title: { text: "ρ" }, fixedrange: true, zeroline: true, zerolinecolor: th.muted, gridcolor: th.border },
      shapes,
      annotations: mean === null ? [] : [{
        xref: "paper", x: 1, xanchor: "left", xshift: 4, yref: "y", y: mean, yanchor: "middle",
        text: `mean ${fmt(mean, 2)}`, showarrow: false, font: { size: 12, color: th.mark },
      }],
      dragmode: false,
    });
    await window.Plotly.react(this.corrPlot, [trace], layout, plotConfig("attnviz-saliency-correlation", { displayModeBar: false }));
    this.corrPlot.setAttribute(
      "aria-label",
      mean === null ? "Correlation per word: undefined" : `Correlation of attention and saliency per target word, mean ${fmt(mean, 2)}`,
    );
    const body = this.table.tBodies[0];
    body.replaceChildren(
      ...tokens.map((tok, i) =>
        el("tr", {}, [el("th", { scope: "row", text: tok }), el("td", { class: "num", text: y[i] === null ? "undefined" : y[i].toFixed(2) })]),
      ),
    );
  }
}
