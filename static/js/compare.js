// The compare page: one sentence through 2-4 models, heatmaps on one colour scale
// (0 to 1), each model's test BLEU and AER beside its translation. Subword models are drawn
// over words or pieces (the Words / Pieces choice, words.js): in words, models with
// different pieces share the rows and columns a person reads.

import { ApiError, postJSON } from "./api.js";
import { drawHeatmap, noAttentionPanel, showPlotError } from "./heatmap.js";
import { $, el, fieldError, fmt, plotlyReady, readData, setBusy, slug } from "./util.js";
import { crossIn, onUnit, UnitToggle, unitFor, wordsDiffer } from "./words.js";

const models = readData("models-data") || { models: [] };
const examples = readData("examples-data") || [];
const byName = new Map(models.models.map((m) => [m.name, m]));

const form = $("#compare-form");
const text = $("#text");
const textError = $("#text-error");
const picks = $("#model-picks");
const picksError = $("#picks-error");
const button = $("#compare-btn");
const grid = $("#compare-grid");
const result = $("#compare-result");
const unitToggle = $("#unit-compare") ? new UnitToggle($("#unit-compare")) : null;
const unitNote = $("#compare-unit-note");
let seq = 0;
let shown = []; // [{node, result}] of the last comparison: drawn again when the unit changes

function chosen() {
  return [...picks.querySelectorAll("input:checked")].map((i) => i.value);
}

function stat(label, value, title) {
  return el("div", { title }, [el("dt", { text: label }), el("dd", { text: value })]);
}

function card(name) {
  const m = byName.get(name) || { name, metrics: {} };
  const aer = m.metrics?.aer;
  const plot = el("div", { class: "plot", dataset: { model: name } });
  const node = el("article", { class: "panel compare-card", dataset: { model: name }, "aria-label": name }, [
    el("header", {}, [
      el("h3", { text: name }),
      el("span", { class: m.has_attention === false ? "badge warn" : "badge accent", text: m.has_attention === false ? "no attention" : `${m.attention} attention` }),
    ]),
    el("dl", { class: "stats" }, [
      stat("BLEU", fmt(m.metrics?.bleu, 1), "test-set BLEU (sacrebleu)"),
      stat("chrF", fmt(m.metrics?.chrf, 1), "test-set chrF (sacrebleu)"),
      stat("AER", m.has_attention === false ? "n/a" : aer === null || aer === undefined ? "–" : fmt(aer, 3), "alignment error rate of the attention against the gold links (lower is better)"),
    ]),
    el("p", { class: "translation", lang: m.target_lang || "fr", text: "…" }),
    plot,
  ]);
  node._plot = plot;
  return node;
}

async function compare() {
  const names = chosen();
  fieldError(text, textError, null);
  fieldError(null, picksError, null);
  if (names.length < 2 || names.length > 4) {
    fieldError(null, picksError, `Choose 2 to 4 models (${names.length} chosen).`);
    return;
  }
  const mySeq = ++seq;
  setBusy(button, true, "Comparing…");
  const beam = Number($("#beam").value) || 1;
  const body = (model) => ({ text: text.value, model, beam_size: beam, n_best: 1, top_k: 0 });
  try {
    const settled = await Promise.allSettled([plotlyReady(), ...names.map((n) => postJSON("/api/translate", body(n)))]);
    if (mySeq !== seq) return;
    const answers = settled.slice(1);
    // an input problem is the same for every model: show it once, where the user typed
    const failures = answers.filter((a) => a.status === "rejected");
    if (failures.length === answers.length) {
      const error = failures[0].reason;
      fieldError(text, textError, error instanceof ApiError ? error.message : String(error));
      return;
    }
    result.hidden = false;
    const cards = names.map(card);
    grid.replaceChildren(...cards);
    await Promise.all(
      answers.map(async (a, i) => {
        const node = cards[i];
        const tr = node.querySelector(".translation");
        if (a.status === "rejected") {
          tr.textContent = "";
          node._plot.replaceChildren(el("p", { class: "error", role: "alert", text: a.reason.message }));
          return;
        }
        const r = a.value;
        tr.textContent = r.translation || "(empty translation)";
        await drawCard(node, r);
      }),
    );
    shown = answers.map((a, i) => ({ node: cards[i], result: a.status === "fulfilled" ? a.value : null })).filter((x) => x.result);
    const differ = shown.some((x) => wordsDiffer(x.result));
    unitToggle?.show(differ);
    if (unitNote) unitNote.hidden = !differ;
    result.dataset.ready = String(mySeq);
    const params = new URLSearchParams({ text: text.value.trim(), models: names.join(","), beam: String(beam) });
    history.replaceState(null, "", `?${params}`);
  } finally {
    if (mySeq === seq) setBusy(button, false, "Compare");
  }
}

/** One model's attention in the page's unit (words for a subword model, unless Pieces). */
async function drawCard(node, r) {
  if (!r.attention) {
    noAttentionPanel(node._plot);
    return;
  }
  const unit = unitFor(r);
  const drawn = crossIn(r, r.attention, unit);
  if (drawn.problem) {
    showPlotError(node._plot, drawn.problem);
    return;
  }
  await drawHeatmap(node._plot, drawn.matrix, drawn.rows, drawn.cols, {
    compact: true,
    showScale: false,
    zmax: 1,
    filename: `attnviz-${r.model}-${slug(text.value)}`,
  });
  node._plot.dataset.unit = unit;
}

onUnit(async () => {
  await Promise.all(shown.map(({ node, result: r }) => drawCard(node, r)));
});

if (form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    compare();
  });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      compare();
    }
  });
  text.addEventListener("input", () => fieldError(text, textError, null));
  picks.addEventListener("change", () => fieldError(null, picksError, null));
  $("#example").addEventListener("change", (event) => {
    const e = examples[Number(event.target.value)];
    if (!e) return;
    text.value = e.text;
    compare();
  });
  const params = new URLSearchParams(location.search);
  if (params.get("text")) text.value = params.get("text");
  if (params.get("models")) {
    const wanted = new Set(params.get("models").split(","));
    for (const input of picks.querySelectorAll("input")) input.checked = wanted.has(input.value);
  }
  if (params.get("beam")) $("#beam").value = params.get("beam");
  const shown = examples.findIndex((e) => e.text === text.value);
  if (shown >= 0) $("#example").value = String(shown);
  if (text.value.trim() && chosen().length >= 2) compare();
}
