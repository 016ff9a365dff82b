// The model cards: a table of every model, BLEU by source length for all of them on
// one chart (attention against no attention), and each model's training curves.

import { baseLayout, theme } from "./theme.js";
import { $, el, fmt, fmtParams, plotConfig, plotlyReady, readData } from "./util.js";

const cards = readData("cards-data") || [];

const PALETTE = ["#4338ca", "#0891b2", "#16a34a", "#ca8a04", "#9333ea", "#db2777", "#0d9488", "#65a30d", "#2563eb", "#c026d3", "#ea580c", "#0284c7"];

function colorOf(card, i) {
  return card.has_attention ? PALETTE[i % PALETTE.length] : theme().danger;
}

function decoderOf(card) {
  const c = card.config || {};
  if (c.architecture === "transformer") return `Transformer · ${c.layers} layers`;
  return [c.rnn_type?.toUpperCase(), c.decoder_style].filter(Boolean).join(" · ") || card.architecture;
}

function minutes(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  return seconds < 120 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;
}

function renderTable() {
  const body = $("#models-table tbody");
  const sorted = [...cards].sort((a, b) => (b.metrics?.bleu ?? -1) - (a.metrics?.bleu ?? -1));
  const best = (key, lower = false) => {
    const values = cards.map((c) => c.metrics?.[key]).filter((v) => Number.isFinite(v));
    return values.length ? (lower ? Math.min(...values) : Math.max(...values)) : null;
  };
  const bestBleu = best("bleu");
  const bestChrf = best("chrf");
  const bestAer = best("aer", true);
  const num = (v, digits, bestValue) =>
    el("td", { class: `num${Number.isFinite(v) && v === bestValue ? " best" : ""}`, text: fmt(v, digits) });
  body.replaceChildren(
    ...sorted.map((c) =>
      el("tr", { class: c.has_attention ? "" : "no-attn" }, [
        el("th", { scope: "row", text: c.name }),
        el("td", { text: c.has_attention ? c.attention + (c.attention_heads ? ` (${c.attention_heads} heads)` : "") : "none" }),
        el("td", { text: decoderOf(c) }),
        el("td", { class: "num", text: fmtParams(c.parameters) }),
        num(c.metrics?.bleu, 1, bestBleu),
        num(c.metrics?.chrf, 1, bestChrf),
        c.has_attention ? num(c.metrics?.aer, 3, bestAer) : el("td", { class: "num", text: "n/a" }),
        el("td", {}, [el("a", { href: `/?model=${encodeURIComponent(c.name)}`, text: "Try it" })]),
      ]),
    ),
  );
}

async function drawByLength() {
  const th = theme();
  const div = $("#by-length");
  const withData = cards.filter((c) => Array.isArray(c.bleu_by_length) && c.bleu_by_length.length);
  if (!withData.length) {
    div.replaceChildren(el("p", { class: "notice", text: "No model has been evaluated by length yet: run attnviz evaluate --write-card." }));
    return;
  }
  const buckets = [];
  for (const c of withData) for (const b of c.bleu_by_length) if (!buckets.includes(b.bucket)) buckets.push(b.bucket);
  const data = withData.map((c, i) => {
    const plain = !c.has_attention;
    const byBucket = new Map(c.bleu_by_length.map((b) => [b.bucket, b]));
    return {
      type: "scatter",
      mode: "lines+markers",
      name: plain ? `${c.name} (no attention)` : c.name,
      x: buckets,
      y: buckets.map((b) => byBucket.get(b)?.bleu ?? null),
      customdata: buckets.map((b) => byBucket.get(b)?.sentences ?? 0),
      hovertemplate: `<b>${c.name}</b><br>%{x} words: BLEU %{y:.1f}<br>%{customdata} sentences<extra></extra>`,
      line: { color: colorOf(c, i), width: plain ? 4 : 2, dash: plain ? "dash" : "solid" },
      marker: { size: plain ? 9 : 6, symbol: plain ? "x" : "circle" },
      opacity: plain ? 1 : 0.9,
    };
  });
  const narrow = div.clientWidth < 600;
  // say the drop in words, next to the no-attention line's last point
  const annotations = [];
  for (const c of withData.filter((x) => !x.has_attention)) {
    const points = c.bleu_by_length.filter((b) => Number.isFinite(b.bleu));
    if (points.length < 2) continue;
    const first = points[0];
    const last = points[points.length - 1];
    annotations.push({
      x: last.bucket,
      y: last.bleu,
      text: `no attention: BLEU ${Math.round(first.bleu)} → ${Math.round(last.bleu)}`,
      showarrow: true,
      arrowhead: 0,
      ax: narrow ? -60 : -110,
      ay: -40,
      font: { color: th.danger, size: 13 },
      bgcolor: th.surface,
    });
  }
  const layout = baseLayout({
    annotations,
    height: narrow ? 420 : 400,
    margin: { l: 56, r: 16, t: 10, b: narrow ? 150 : 50 },
    xaxis: { title: { text: "source sentence length (words)" }, type: "category", gridcolor: th.border },
    yaxis: { title: { text: "BLEU" }, rangemode: "tozero", gridcolor: th.border, zeroline: false },
    legend: narrow
      ? { orientation: "h", y: -0.3, x: 0 }
      : { x: 0.01, xanchor: "left", y: 0.03, yanchor: "bottom", bgcolor: th.surface, bordercolor: th.border, borderwidth: 1 },
    hovermode: "closest",
  });
  await window.Plotly.react(div, data, layout, plotConfig("attnviz-bleu-by-length"));
}

function stat(label, value, title) {
  return el("div", { title }, [el("dt", { text: label }), el("dd", { text: value })]);
}

function renderCards() {
  const box = $("#cards");
  const nodes = cards.map((c, i) => {
    const curve = el("div", { class: "plot curve", role: "img", "aria-label": `Training curves of ${c.name}: loss and validation BLEU by step` });
    const node = el("article", { class: "panel model-card", id: `card-${c.name}`, "aria-labelledby": `card-title-${i}` }, [
      el("header", {}, [
        el("h3", { id: `card-title-${i}`, text: c.name }),
        c.default ? el("span", { class: "badge accent", text: "default" }) : null,
      ]),
      el("div", { class: "tags" }, [
        el("span", { class: c.has_attention ? "badge accent" : "badge warn", text: c.has_attention ? `${c.attention} attention` : "no attention" }),
        c.attention_heads ? el("span", { class: "badge", text: `${c.attention_heads} heads` }) : null,
        el("span", { class: "badge", text: decoderOf(c) }),
        el("span", { class: "badge", text: `${c.source_lang} → ${c.target_lang}` }),
      ]),
      el("dl", { class: "stats" }, [
        stat("Parameters", fmtParams(c.parameters)),
        stat("BLEU", fmt(c.metrics?.bleu, 1), c.metrics?.bleu_signature),
        stat("chrF", fmt(c.metrics?.chrf, 1), c.metrics?.chrf_signature),
        stat("AER", c.has_attention ? fmt(c.metrics?.aer, 3) : "n/a", "alignment error rate, lower is better"),
        stat("Steps", c.steps ? String(c.steps) : "–"),
        stat("Trained", minutes(c.training_seconds)),
      ]),
      curve,
      el("p", { class: "caption" }, [
        el("a", { href: `/?model=${encodeURIComponent(c.name)}`, text: "Translate with this model" }),
        " · ",
        el("a", { href: `/api/models/${encodeURIComponent(c.name)}`, text: "card JSON" }),
      ]),
    ]);
    node._curve = curve;
    node._card = c;
    return node;
  });
  box.replaceChildren(...nodes);
  // the curves are drawn when their card scrolls into view
  const observer = new IntersectionObserver(
    (entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        drawCurve(entry.target._curve, entry.target._card);
      }
    },
    { rootMargin: "200px" },
  );
  nodes.forEach((n) => observer.observe(n));
}

async function drawCurve(div, card) {
  if (div.dataset.state) return;
  div.dataset.state = "pending";
  await plotlyReady();
  const th = theme();
  const curve = card.curve || [];
  if (!curve.length) {
    div.replaceChildren(el("p", { class: "help", text: "No training curve in this card." }));
    return;
  }
  const steps = curve.map((p) => p.step);
  const data = [
    {
      type: "scatter",
      mode: "lines+markers",
      name: "training loss",
      x: steps,
      y: curve.map((p) => p.loss ?? null),
      line: { color: th.accent, width: 2 },
      marker: { size: 5 },
      hovertemplate: "step %{x}<br>loss %{y:.3f}<extra></extra>",
    },
    {
      type: "scatter",
      mode: "lines+markers",
      name: "valid BLEU",
      x: steps,
      y: curve.map((p) => p.valid_bleu ?? null),
      yaxis: "y2",
      line: { color: th.mark, width: 2 },
      marker: { size: 5 },
      hovertemplate: "step %{x}<br>valid BLEU %{y:.1f}<extra></extra>",
    },
  ];
  const layout = baseLayout({
    height: 220,
    margin: { l: 46, r: 46, t: 8, b: 56 },
    font: { family: th.font, color: th.text, size: 11 },
    xaxis: { title: { text: "step" }, gridcolor: th.border, zeroline: false, rangemode: "tozero", tickformat: "d" },
    yaxis: { title: { text: "loss", font: { color: th.accent } }, gridcolor: th.border, zeroline: false, rangemode: "tozero" },
    yaxis2: {
      title: { text: "valid BLEU", font: { color: th.mark } },
      overlaying: "y",
      side: "right",
      showgrid: false,
      zeroline: false,
      rangemode: "tozero",
      tickmode: "auto",
      nticks: 5,
    },
    legend: { orientation: "h", y: -0.35, x: 0 },
    hovermode: "x unified",
  });
  await window.Plotly.react(div, data, layout, plotConfig(`attnviz-${card.name}-curve`, { displayModeBar: false }));
  div.dataset.state = "plot";
}

if (cards.length) {
  renderTable();
  renderCards();
  plotlyReady().then(drawByLength);
}
