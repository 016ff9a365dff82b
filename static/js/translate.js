// The translate page: the form, the translation with linked tokens, and four views of
// the attention (heatmap, decoder, beam search, what-if), each drawn when first shown.

import { ApiError, postJSON } from "./api.js";
import { BeamView } from "./beam.js";
import { headLayers, meanMatrix } from "./checks.js";
import { Decoder } from "./decoder.js";
import { drawHeatmap, noAttentionPanel, parsePharaoh, showPlotError } from "./heatmap.js";
import { TokenLinker } from "./tokens.js";
import { WhatIf } from "./whatif.js";
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

const state = { result: null, request: null, matrix: null, controller: null, tab: "heatmap", seq: 0 };

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
    include_heads: Boolean(m && m.attention_heads && m.attention_heads > 1),
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

  setupHeads(result);
  state.matrix = currentMatrix();
  linker.set(result, state.matrix);
  decoder.set(result, result.attention);
  beamView.set(result);
  whatIf.set(result, request);

  if (!keepTab && state.tab !== "heatmap") selectTab("heatmap", false);
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

function setupHeads(result) {
  const layers = headLayers(result.heads);
  state.layers = layers;
  headField.hidden = !layers;
  layerField.hidden = !layers || layers.length < 2;
  if (!layers) return;
  const layer = layers.length - 1;
  layerSelect.replaceChildren(...layers.map((_, i) => el("option", { value: String(i), text: `Layer ${i + 1}`, selected: i === layer })));
  fillHeads(layer);
}

function fillHeads(layer) {
  const heads = state.layers[layer];
  headSelect.replaceChildren(
    el("option", { value: "mean", text: `Average of ${heads.length} heads` }),
    ...heads.map((_, i) => el("option", { value: String(i), text: `Head ${i + 1}` })),
  );
}

function currentMatrix() {
  const r = state.result;
  if (!r.attention) return null;
  if (!state.layers || headField.hidden) return r.attention;
  const layer = Number(layerSelect.value || state.layers.length - 1);
  const heads = state.layers[layer];
  if (headSelect.value === "mean") return layer === state.layers.length - 1 ? r.attention : meanMatrix(heads);
  return heads[Number(headSelect.value)];
}

function renderLinks(r) {
  $("#pharaoh").textContent = r.alignment || "(none)";
  const links = parsePharaoh(r.alignment);
  const lang = byName.get(r.model)?.target_lang;
  $("#links").replaceChildren(
    ...links.map(({ s, t }) =>
      el("li", { onmouseenter: () => linker.cell(t, s), onmouseleave: () => linker.clear() }, [
        el("span", { text: r.target_tokens[t], lang }),
        el("span", { class: "arrow", text: "←" }),
        el("span", { text: r.source_tokens[s] }),
        el("span", { class: "w", text: r.attention ? r.attention[t][s].toFixed(2) : "" }),
      ]),
    ),
  );
}

async function drawMain() {
  const r = state.result;
  renderLinks(r);
  if (!r.attention) {
    noAttentionPanel(heatmap);
    return;
  }
  const matrix = state.matrix;
  const isMean = matrix === r.attention;
  await drawHeatmap(heatmap, matrix, r.target_tokens, r.source_tokens, {
    links: isMean ? parsePharaoh(r.alignment) : undefined,
    filename: fileStem(),
    onHover: (t, s) => linker.cell(t, s),
    onUnhover: () => linker.clear(),
  });
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
    else if (name === "beam") await beamView.show();
    else if (name === "whatif") await whatIf.show();
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
    const i = tabs.indexOf(tab);
    let j = null;
    if (event.key === "ArrowRight") j = (i + 1) % tabs.length;
    else if (event.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
    else if (event.key === "Home") j = 0;
    else if (event.key === "End") j = tabs.length - 1;
    if (j === null) return;
    event.preventDefault();
    selectTab(tabs[j].id.slice(4));
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
  headSelect.addEventListener("change", async () => {
    state.matrix = currentMatrix();
    linker.setMatrix(state.matrix);
    await drawMain();
  });
  layerSelect.addEventListener("change", async () => {
    fillHeads(Number(layerSelect.value));
    state.matrix = currentMatrix();
    linker.setMatrix(state.matrix);
    await drawMain();
  });

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
