// The translate page: the form, the translation with linked tokens, and the views of the
// attention (heatmap, every head, decoder, beam search, saliency, what-if), each drawn when
// first shown. Multi-head and Transformer models: a layer, a head and (Transformer) a kind
// of attention (cross, encoder self, decoder self) choose what the heatmap and the grid draw.
// Subword models: the strips, the heatmap, the decoder and the what-if show words or pieces
// (one Words / Pieces choice for the page, words.js); the heads, beam search and saliency
// views stay over pieces and say so.

import { ApiError, postJSON } from "./api.js";
import { BeamView } from "./beam.js";
import { headViews, KINDS, meanMatrix } from "./checks.js";
import { Decoder } from "./decoder.js";
import { HeadGrid, KIND_LABELS, kindAxes } from "./heads.js";
import { drawHeatmap, noAttentionPanel, parsePharaoh, showPlotError } from "./heatmap.js";
import { SaliencyView } from "./saliency.js";
import { TokenLinker } from "./tokens.js";
import { WhatIf } from "./whatif.js";
import { checkSpans, crossIn, decoderInputWords, onUnit, spansOf, toWords, UnitToggle, unitFor, wordsDiffer, wordsOf } from "./words.js";
import { $, download, el, fieldError, fmt, nextFrame, plotlyReady, readData, setBusy, slug } from "./util.js";

const LANGS = { en: "English", fr: "French" };
const models = readData("models-data") || { models: [] };
const examples = readData("examples-data") || [];
const byName = new Map(models.models.map((m) => [m.name, m]));

const form = $("#translate-form");
const text = $("#text");
const textLabel = $("#text-label");
const textError = $("#text-error");
const modelSelect = $("#model");
const beamSelect = $("#beam");
const exampleSelect = $("#example");
const button = $("#translate-btn");
const resultBox = $("#result");
const heatmap = $("#heatmap");
const headField = $("#head-field");
const headSelect = $("#head");
const layerField = $("#layer-field");
const layerSelect = $("#layer");
const kindField = $("#kind-field");
const kindSelect = $("#attn-kind");
const gridKindField = $("#grid-kind-field");
const gridKindSelect = $("#grid-kind");
const headsTab = $("#tab-heads");
const headsError = $("#heads-error");

const state = {
  result: null,
  request: null,
  matrix: null,
  controller: null,
  tab: "heatmap",
  mainStale: false, // the Words / Pieces choice changed while another tab showed
  seq: 0,
  // what the heatmap and the grid show: a kind of attention, a layer, a head ("mean" = the
  // average of the layer's heads); views = checks.js headViews of the response
  views: null,
  kind: "cross",
  layer: 0,
  head: "mean",
  means: new Map(),
  gridDirty: true,
};

const linker = resultBox ? new TokenLinker($("#src-tokens"), $("#tgt-tokens"), $("#link-hint")) : null;
const decoder = resultBox ? new Decoder($("#panel-decoder")) : null;
const beamView = resultBox
  ? new BeamView($("#panel-beam"), {
      onWiden: (k) => {
        beamSelect.value = String(k);
        translate({ keepTab: true });
      },
    })
  : null;
const whatIf = resultBox ? new WhatIf($("#panel-whatif")) : null;
const headGrid = resultBox ? new HeadGrid($("#panel-heads"), { onPick: (layer, head) => pickHead(layer, head) }) : null;
const saliency = resultBox ? new SaliencyView($("#panel-saliency")) : null;
const unitToggles = [...document.querySelectorAll(".unit-toggle")].map((node) => new UnitToggle(node));

// -- the form -------------------------------------------------------------------------------

function currentModel() {
  return byName.get(modelSelect.value) || models.models[0];
}

function syncLanguage() {
  const m = currentModel();
  if (!m) return;
  const src = LANGS[m.source_lang] || m.source_lang;
  const tgt = LANGS[m.target_lang] || m.target_lang;
  textLabel.textContent = `${src} sentence`;
  text.lang = m.source_lang;
  $("#src-label").textContent = src;
  $("#tgt-label").textContent = tgt;
  $("#translation").lang = m.target_lang;
}

function requestBody() {
  const m = currentModel();
  const beam = Number(beamSelect.value) || 1;
  return {
    text: text.value,
    model: m ? m.name : null,
    beam_size: beam,
    n_best: Math.min(beam, 5),
    top_k: 5,
    include_beam: beam > 1,
    include_heads: Boolean(m && ((m.attention_heads || 0) > 1 || (m.layers || 0) > 1)),
  };
}

function saveToUrl(body) {
  const params = new URLSearchParams({ text: body.text.trim(), model: body.model || "", beam: String(body.beam_size) });
  history.replaceState(null, "", `?${params}`);
}

async function translate({ keepTab = false } = {}) {
  const body = requestBody();
  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  const seq = ++state.seq;
  fieldError(text, textError, null);
  setBusy(button, true, "Translating…");
  resultBox.setAttribute("aria-busy", "true");
  performance.clearMarks("attnviz:translate:start");
  performance.mark("attnviz:translate:start");
  try {
    const [result] = await Promise.all([postJSON("/api/translate", body, controller.signal), plotlyReady()]);
    if (seq !== state.seq) return;
    await show(result, body, keepTab);
    saveToUrl(body);
  } catch (error) {
    if (error.name === "AbortError" || seq !== state.seq) return;
    const message = error instanceof ApiError ? error.message : `Something went wrong: ${error.message}`;
    fieldError(text, textError, message);
    text.focus();
  } finally {
    if (seq === state.seq) {
      setBusy(button, false, "Translate");
      resultBox.setAttribute("aria-busy", "false");
    }
  }
}

// -- showing a result -----------------------------------------------------------------------

async function show(result, request, keepTab) {
  const sameModel = state.result?.model === result.model;
  state.result = result;
  state.request = request;
  resultBox.hidden = false;
  $("#translation").textContent = result.translation || "(empty translation)";
  const m = byName.get(result.model);
  const steps = result.target_tokens.length;
  const meta = [
    `${result.model}`,
    m && !m.has_attention ? "no attention" : m ? `${m.attention} attention` : null,
    request.beam_size > 1 ? `beam ${request.beam_size}` : "greedy",
    `${steps} steps`,
    `log p ${fmt(result.score, 2)}`,
    `model ${fmt(result.timing_ms?.total, 0)} ms`,
  ].filter(Boolean);
  $("#meta").textContent = meta.join(" · ");

  const unknown = result.unknown_source_tokens || [];
  const note = $("#unknown-note");
  note.hidden = unknown.length === 0;
  if (unknown.length) {
    const words = unknown.map((i) => `“${result.source_tokens[i]}”`).join(", ");
    note.textContent = `${unknown.length === 1 ? "1 word is" : `${unknown.length} words are`} unknown to this model and read as <unk>: ${words}.`;
  }

  setupHeads(result, sameModel);
  state.matrix = matrixFor(state.kind);
  const differ = wordsDiffer(result);
  for (const toggle of unitToggles) toggle.show(differ);
  for (const note of document.querySelectorAll(".piece-note")) note.hidden = !differ;
  linker.set(result, matrixFor("cross"), unitFor(result));
  decoder.set(result, result.attention);
  beamView.set(result);
  whatIf.set(result, request);
  const views = state.views;
  saliency.set(
    result,
    request,
    views && views.layers * views.heads > 1
      ? `layer ${views.alignmentLayer + 1}, average of ${views.heads} ${views.heads === 1 ? "head" : "heads"}`
      : "",
  );

  if ((!keepTab && state.tab !== "heatmap") || (state.tab === "heads" && headsTab.hidden)) selectTab("heatmap", false);
  await drawMain();
  await nextFrame();
  performance.clearMarks("attnviz:heatmap:drawn");
  performance.mark("attnviz:heatmap:drawn");
  performance.clearMeasures("attnviz:translate-to-heatmap");
  const measure = performance.measure("attnviz:translate-to-heatmap", "attnviz:translate:start", "attnviz:heatmap:drawn");
  $("#meta").textContent += ` · on screen in ${Math.round(measure.duration)} ms`;
  resultBox.dataset.ready = String(state.seq);
  if (state.tab !== "heatmap") await showTab(state.tab);
}

/** The layer, head and kind selectors for a new result (kept for the same model). */
function setupHeads(result, sameModel) {
  const views = headViews(result.heads);
  const problem = views?.problem || null;
  headsError.hidden = !problem;
  headsError.textContent = problem ? `Cannot show the heads: ${problem}.` : "";
  state.views = views && !problem ? views : null;
  state.means = new Map();
  state.gridDirty = true;
  const v = state.views;
  if (!v || !sameModel) {
    state.kind = "cross";
    state.layer = v ? v.alignmentLayer : 0;
    state.head = "mean";
  } else {
    if (!v.kinds[state.kind]) state.kind = "cross";
    if (state.layer >= v.layers) state.layer = v.alignmentLayer;
    if (state.head !== "mean" && state.head >= v.heads) state.head = "mean";
  }
  const kinds = v ? KINDS.filter((k) => v.kinds[k]) : [];
  kindField.hidden = !v || !v.kinds.encoder; // self-attention: the Transformer only
  gridKindField.hidden = kindField.hidden;
  for (const select of [kindSelect, gridKindSelect]) {
    select.replaceChildren(...kinds.map((k) => el("option", { value: k, text: KIND_LABELS[k] })));
    select.value = state.kind;
  }
  layerField.hidden = !v || v.layers < 2;
  headField.hidden = !v || v.heads < 2;
  headsTab.hidden = !v || v.layers * v.heads < 2;
  if (!v) return;
  layerSelect.replaceChildren(
    ...Array.from({ length: v.layers }, (_, i) =>
      el("option", { value: String(i), text: i === v.alignmentLayer && v.layers > 1 ? `Layer ${i + 1} (alignment)` : `Layer ${i + 1}` }),
    ),
  );
  headSelect.replaceChildren(
    el("option", { value: "mean", text: `Average of ${v.heads} heads` }),
    ...Array.from({ length: v.heads }, (_, i) => el("option", { value: String(i), text: `Head ${i + 1}` })),
  );
  syncSelectors();
}

function syncSelectors() {
  kindSelect.value = state.kind;
  gridKindSelect.value = state.kind;
  layerSelect.value = String(state.layer);
  headSelect.value = String(state.head);
}

/** The matrix of one kind of attention at the chosen layer and head (null: none). */
function matrixFor(kind, layer = state.layer, head = state.head) {
  const r = state.result;
  if (!r.attention) return null;
  const v = state.views;
  if (!v) return kind === "cross" ? r.attention : null;
  const layers = v.kinds[kind];
  if (!layers) return null;
  if (head !== "mean") return layers[layer][head];
  // the response's `attention` is the alignment layer's average: drawn as sent
  if (kind === "cross" && layer === v.alignmentLayer) return r.attention;
  const key = `${kind}:${layer}`;
  if (!state.means.has(key)) state.means.set(key, meanMatrix(layers[layer]));
  return state.means.get(key);
}

/** The Words / Pieces choice changed: every view in words or pieces draws again. */
async function changeUnit() {
  const r = state.result;
  if (!r || !wordsDiffer(r)) return;
  linker.set(r, matrixFor("cross"), unitFor(r));
  // the heatmap is sized to its panel: drawn when its tab shows
  if (state.tab === "heatmap") await Promise.all([drawMain(), decoder.refresh(), whatIf.refresh()]);
  else {
    state.mainStale = true;
    await Promise.all([decoder.refresh(), whatIf.refresh()]);
  }
}

/**
 * The matrix drawn in the heatmap in the page's unit: {matrix, rows, cols, problem} and
 * kindAxes's names. Words: rows and columns are words, pieces aggregated (words.js); for
 * self-attention both axes are words (the decoder's inputs: <s>, then the words it wrote).
 */
function inUnit(kind, matrix, unit) {
  const r = state.result;
  const axes = kindAxes(r, state.views, kind);
  if (unit !== "words") return { ...axes, matrix, problem: null };
  if (kind === "cross") return { ...axes, axes: WORD_AXES, ...crossIn(r, matrix, unit) };
  const src = r.source_words;
  const tgt = r.target_words;
  if (kind === "encoder") {
    const problem = checkSpans(src, r.source_tokens, "source");
    if (problem) return { ...axes, problem };
    const labels = src.map((w) => w.word);
    return { ...axes, matrix: toWords(matrix, spansOf(src), spansOf(src)), rows: labels, cols: labels, problem };
  }
  const inputs = decoderInputWords(tgt || [], axes.cols.length);
  const problem = checkSpans(tgt, r.target_tokens, "target") || checkSpans(inputs, axes.cols, "decoder input");
  if (problem) return { ...axes, problem };
  return {
    ...axes,
    matrix: toWords(matrix, spansOf(tgt), spansOf(inputs)),
    rows: tgt.map((w) => w.word),
    cols: inputs.map((w) => w.word),
    problem,
  };
}

const WORD_AXES = {
  rows: (n) => `the translation has ${n} target words`,
  cols: (n) => `the source has ${n} words`,
};

// the captions of a subword model: how words are made of pieces, or what the pieces are
const WORD_RULE = "A word cut into several pieces gets the sum of its pieces' weights as a column and the mean of its pieces' rows as a row, so each row still sums to 1.";
const PIECE_CAPTIONS = {
  cross: ["Rows: the French pieces in the order they were written (one decoder step each; ▁ begins a word). Columns: the English pieces the model reads.", "each piece's column with the most weight"],
  encoder: ["Rows and columns: the English pieces (▁ begins a word). Each row is one piece as the encoder reads the sentence again, and how much it looks at every piece.", "each row's column with the most weight"],
  decoder: ["Rows: the French pieces written. Columns: what the decoder had read when it wrote each of them (<s>, then the pieces already written): it can only look back, so the upper triangle is empty.", "each row's column with the most weight"],
};

const CAPTIONS = {
  cross: ["Rows: the French words in the order they were written. Columns: the English words.", "each word's alignment (its column with the most weight)"],
  encoder: ["Rows and columns: the English words. Each row is one word as the encoder reads the sentence again, and how much it looks at every word.", "each row's column with the most weight"],
  decoder: ["Rows: the French words written. Columns: what the decoder had read when it wrote each of them (<s>, then the words already written): it can only look back, so the upper triangle is empty.", "each row's column with the most weight"],
};

/** The selectors changed: the heatmap (and the grid, when it shows) draw the new choice. */
async function refreshViews() {
  state.matrix = matrixFor(state.kind);
  linker.setMatrix(matrixFor("cross"));
  syncSelectors();
  state.gridDirty = true;
  if (state.tab === "heads") await drawGrid();
  else headGrid.mark(state.layer, state.head === "mean" ? -1 : Number(state.head));
  await drawMain();
}

/** A map of the grid was chosen: the heatmap shows it. */
async function pickHead(layer, head) {
  state.layer = layer;
  state.head = head;
  syncSelectors();
  selectTab("heatmap");
  await refreshViews();
}

async function drawGrid() {
  if (!state.views || !state.result?.attention) return;
  const width = headGrid.plot.parentElement?.clientWidth || 0;
  if (!state.gridDirty && Math.abs(width - (headGrid.width || 0)) < 24) return;
  state.gridDirty = false;
  const { views, kind, layer, head } = state;
  await headGrid.draw({ result: state.result, views, kind, layer, head });
}

/** The alignment: Pharaoh links between words (indices of source_words, target_words). */
function renderLinks(r) {
  $("#pharaoh").textContent = r.alignment || "(none)";
  const links = parsePharaoh(r.alignment);
  const lang = byName.get(r.model)?.target_lang;
  const src = wordsOf(r, "source");
  const tgt = wordsOf(r, "target");
  const weights = r.word_attention || r.attention;
  $("#links").replaceChildren(
    ...links.map(({ s, t }) =>
      el("li", { onmouseenter: () => linker.link(t, s), onmouseleave: () => linker.clear() }, [
        el("span", { text: tgt[t]?.word ?? "?", lang }),
        el("span", { class: "arrow", text: "←" }),
        el("span", { text: src[s]?.word ?? "?" }),
        el("span", { class: "w", text: typeof weights?.[t]?.[s] === "number" ? weights[t][s].toFixed(2) : "" }),
      ]),
    ),
  );
}

async function drawMain() {
  const r = state.result;
  state.mainStale = false;
  renderLinks(r);
  const unit = unitFor(r);
  const differ = wordsDiffer(r);
  if (!r.attention) {
    noAttentionPanel(heatmap);
    heatmap.dataset.unit = unit;
    return;
  }
  const { kind, layer, head, views } = state;
  const axes = inUnit(kind, state.matrix, unit);
  if (axes.problem) {
    showPlotError(heatmap, axes.problem);
    heatmap.dataset.unit = unit;
    return;
  }
  const matrix = axes.matrix;
  const cross = kind === "cross";
  const [axesText, outlineText] = (differ && unit === "pieces" ? PIECE_CAPTIONS : CAPTIONS)[kind];
  $("#heat-axes").textContent = differ && unit === "words" ? `${axesText} ${WORD_RULE}` : axesText;
  $("#heat-outline").textContent = outlineText;
  const which = views
    ? `, layer ${layer + 1}${head === "mean" ? `, average of ${views.heads} heads` : `, head ${Number(head) + 1}`}`
    : "";
  const tokens = differ ? unit : "tokens"; // a word-level model: words are its tokens
  // the service's alignment links words: outlined where the heatmap shows them
  const aligned = cross && state.matrix === r.attention && (unit === "words" || !differ);
  await drawHeatmap(heatmap, matrix, axes.rows, axes.cols, {
    links: aligned ? parsePharaoh(r.alignment) : undefined,
    filename: views ? `${fileStem()}-${kind}-L${layer + 1}-${head === "mean" ? "avg" : `H${Number(head) + 1}`}` : fileStem(),
    what: axes.what,
    axes: axes.axes,
    label: `${axes.what[0].toUpperCase()}${axes.what.slice(1)} heatmap${which}: ${axes.rows.length} ${axes.rowName} ${tokens} (rows) by ${axes.cols.length} ${axes.colName} ${tokens} (columns)`,
    onHover: cross ? (t, s) => linker.cell(t, s) : undefined,
    onUnhover: cross ? () => linker.clear() : undefined,
  });
  heatmap.dataset.view = `${kind}:${layer}:${head}`;
  heatmap.dataset.unit = unit; // after drawing: a test waiting for it finds the new plot
}

function fileStem() {
  const r = state.result;
  return `attnviz-${r.model}-${slug(state.request.text)}`;
}

// -- tabs -----------------------------------------------------------------------------------

const tabs = [...document.querySelectorAll('[role="tab"]')];

async function showTab(name) {
  if (!state.result) return;
  try {
    if (name === "decoder") await decoder.show();
    else if (name === "heads") await drawGrid();
    else if (name === "beam") await beamView.show();
    else if (name === "saliency") await saliency.show();
    else if (name === "whatif") await whatIf.show();
    else if (name === "heatmap" && state.mainStale) await drawMain();
  } catch (error) {
    showPlotError($(`#panel-${name} .plot`) || heatmap, String(error.message || error));
  }
}

function selectTab(name, focus = true) {
  state.tab = name;
  for (const tab of tabs) {
    const on = tab.id === `tab-${name}`;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`#${tab.getAttribute("aria-controls")}`).hidden = !on;
    if (on && focus) tab.focus();
  }
  showTab(name);
  if (name === "heatmap" && heatmap.classList.contains("js-plotly-plot")) window.Plotly.Plots.resize(heatmap);
}

for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab.id.slice(4), false));
  tab.addEventListener("keydown", (event) => {
    const shown = tabs.filter((t) => !t.hidden); // the Heads tab only for several heads
    const i = shown.indexOf(tab);
    let j = null;
    if (event.key === "ArrowRight") j = (i + 1) % shown.length;
    else if (event.key === "ArrowLeft") j = (i - 1 + shown.length) % shown.length;
    else if (event.key === "Home") j = 0;
    else if (event.key === "End") j = shown.length - 1;
    if (j === null) return;
    event.preventDefault();
    selectTab(shown[j].id.slice(4));
  });
}

// -- wiring ---------------------------------------------------------------------------------

if (form) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    translate({ keepTab: true });
  });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      translate({ keepTab: true });
    }
  });
  text.addEventListener("input", () => fieldError(text, textError, null));
  onUnit(() => changeUnit());
  exampleSelect.addEventListener("change", () => {
    const e = examples[Number(exampleSelect.value)];
    if (!e) return;
    text.value = currentModel()?.source_lang === "fr" ? e.reference : e.text;
    translate({ keepTab: true });
  });
  modelSelect.addEventListener("change", () => {
    syncLanguage();
    if (state.result) translate({ keepTab: true });
  });
  beamSelect.addEventListener("change", () => {
    if (state.result) translate({ keepTab: true });
  });
  headSelect.addEventListener("change", () => {
    state.head = headSelect.value === "mean" ? "mean" : Number(headSelect.value);
    refreshViews();
  });
  layerSelect.addEventListener("change", () => {
    state.layer = Number(layerSelect.value);
    refreshViews();
  });
  for (const select of [kindSelect, gridKindSelect]) {
    select.addEventListener("change", () => {
      state.kind = select.value;
      refreshViews();
    });
  }

  $("#dl-png").addEventListener("click", () => exportImage("png"));
  $("#dl-svg").addEventListener("click", () => exportImage("svg"));
  $("#dl-json").addEventListener("click", () => {
    if (state.result) download(`${fileStem()}.json`, `${JSON.stringify(state.result, null, 2)}\n`, "application/json");
  });
  $("#dl-pharaoh").addEventListener("click", () => {
    if (state.result) download(`${fileStem()}.align`, `${state.result.alignment}\n`, "text/plain");
  });

  // the page opens on a sentence: from the address (shared link) or the first example
  const params = new URLSearchParams(location.search);
  if (params.get("model") && byName.has(params.get("model"))) modelSelect.value = params.get("model");
  if (params.get("beam") && [...beamSelect.options].some((o) => o.value === params.get("beam"))) {
    beamSelect.value = params.get("beam");
  }
  if (params.get("text")) text.value = params.get("text");
  syncLanguage();
  const shown = examples.findIndex((e) => e.text === text.value || e.reference === text.value);
  if (shown >= 0) exampleSelect.value = String(shown);
  if (text.value.trim()) translate();

  // the heatmap is sized to its container: redraw when the container's width changes
  let lastWidth = heatmap.clientWidth;
  let pending = null;
  new ResizeObserver(() => {
    const width = heatmap.clientWidth;
    if (!state.result || Math.abs(width - lastWidth) < 24 || heatmap.offsetParent === null) return;
    lastWidth = width;
    clearTimeout(pending);
    pending = setTimeout(() => drawMain(), 150);
  }).observe(heatmap);

  // and the grid of heads, when it shows
  let pendingGrid = null;
  new ResizeObserver(() => {
    if (state.tab !== "heads" || !state.result) return;
    clearTimeout(pendingGrid);
    pendingGrid = setTimeout(() => drawGrid(), 150);
  }).observe(headGrid.plot.parentElement);
}

function exportImage(format) {
  if (!state.result?.attention || !heatmap.classList.contains("js-plotly-plot")) return;
  window.Plotly.downloadImage(heatmap, {
    format,
    filename: fileStem(),
    width: Math.max(heatmap.clientWidth, 480),
    height: heatmap.clientHeight,
    scale: format === "png" ? 2 : 1,
  });
}
