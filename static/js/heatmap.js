// The attention heatmap: source tokens across (top), target tokens down in reading
// order, one cell per weight, each row's alignment (argmax) outlined.

import { checkAttention } from "./checks.js";
import { baseLayout, theme } from "./theme.js";
import { clamp, el, plotConfig, range } from "./util.js";

const END = "</s>";

/** Pharaoh "i-j" (0-based source i, target j) -> [{s, t}]. */
export function parsePharaoh(text) {
  return (text || "")
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map((pair) => pair.split("-").map(Number))
    .filter(([s, t]) => Number.isInteger(s) && Number.isInteger(t))
    .map(([s, t]) => ({ s, t }));
}

/** Each target word's argmax source word, end tokens left out (as the service does). */
export function argmaxLinks(matrix, targetTokens, sourceTokens) {
  const cols = sourceTokens[sourceTokens.length - 1] === END ? sourceTokens.length - 1 : sourceTokens.length;
  const links = [];
  matrix.forEach((row, t) => {
    if (targetTokens[t] === END || cols === 0) return;
    let best = 0;
    for (let s = 1; s < cols; s += 1) if (row[s] > row[best]) best = s;
    links.push({ s: best, t });
  });
  return links;
}

/** Empty a plot div (Plotly's state and listeners too). */
export function resetPlot(div) {
  if (window.Plotly && div.classList.contains("js-plotly-plot")) window.Plotly.purge(div);
  delete div.dataset.hooked;
  div.replaceChildren();
}

export function showPlotError(div, message) {
  resetPlot(div);
  div.replaceChildren(
    el("div", { class: "plot-error", role: "alert" }, [
      el("strong", { text: "Cannot draw this attention matrix. " }),
      message,
    ]),
  );
  div.dataset.state = "error";
}

export function noAttentionPanel(div, compact = false) {
  resetPlot(div);
  div.replaceChildren(
    el("div", { class: "no-attention", role: "note" }, [
      el("strong", { text: "No attention: the decoder sees one fixed vector" }),
      compact
        ? null
        : el("div", { class: "bottleneck", "aria-hidden": "true" }, [
            el("span", { text: "the whole sentence" }),
            el("span", { text: "→" }),
            el("span", { class: "vector", text: "h" }),
            el("span", { text: "→ every word" }),
          ]),
      el("span", {
        text:
          "This model squeezes the whole source sentence into the encoder's final state; no " +
          "step looks back at any word, so there are no weights to draw.",
      }),
    ]),
  );
  div.dataset.state = "none";
}

/** Plotly reads pseudo-HTML in labels: "</s>" would vanish, so escape it. */
export function plotText(token) {
  return String(token).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

const longest = (tokens) => tokens.reduce((m, t) => Math.max(m, [...t].length), 0);

/** Cell size, margins and the figure's size for a matrix in a container `width` wide. */
export function heatmapGeometry(rows, cols, targetTokens, sourceTokens, width, options = {}) {
  const narrow = width < 560;
  const scale = options.showScale !== false;
  const charPx = 7.4;
  const left = Math.min(170, Math.ceil(longest(targetTokens) * charPx) + 16);
  const srcLen = longest(sourceTokens);
  const lastLen = [...(sourceTokens[sourceTokens.length - 1] || "")].length;
  // a slanted label leans right: room for the last column's
  const right = scale && !narrow ? 78 : Math.max(10, Math.ceil(lastLen * charPx * 0.6));
  const maxCell = options.compact ? 34 : 46;
  const cellPx = clamp(Math.floor((width - left - right) / cols), 12, maxCell);
  const angle = srcLen * charPx > cellPx - 4 ? -55 : 0;
  const top = angle ? 18 + Math.ceil(Math.min(srcLen, 18) * charPx * 0.82) : 30;
  const bottom = scale && narrow ? 58 : 8;
  return {
    narrow,
    cellPx,
    angle,
    margin: { l: left, r: right, t: top, b: bottom },
    width: left + cols * cellPx + right,
    height: top + rows * cellPx + bottom,
    fontSize: cellPx < 18 ? 10 : cellPx < 26 ? 12 : 13,
  };
}

/**
 * Draw `matrix` (rows = target, cols = source) into `div`. Resolves true when drawn,
 * false when the shapes were wrong (the error is shown in the div instead).
 *
 * options: links [{s,t}] (default: argmax), masked [source indices], forced (rows),
 * zmax (1),
 * showScale, compact (smaller cells), filename, onHover(t, s), onUnhover(),
 * what ("attention": names the matrix in messages), axes (checkAttention's wording of the
 * rows and columns), label (the div's aria-label), valueName ("weight", in the hover).
 */
export async function drawHeatmap(div, matrix, targetTokens, sourceTokens, options = {}) {
  const problem = checkAttention(matrix, targetTokens, sourceTokens, options.what, options.axes);
  if (problem) {
    showPlotError(div, problem);
    return false;
  }
  if (div.dataset.state !== "plot") resetPlot(div);
  const th = theme();
  const rows = targetTokens.length;
  const cols = sourceTokens.length;
  const available = div.clientWidth || div.parentElement?.clientWidth || 600;
  const geo = heatmapGeometry(rows, cols, targetTokens, sourceTokens, available, options);
  const { cellPx, narrow } = geo;
  const links = options.links ?? argmaxLinks(matrix, targetTokens, sourceTokens);
  const masked = options.masked ?? [];
  const showText = rows * cols <= 300 && cellPx >= 30;
  const src = sourceTokens.map(plotText);
  const forced = options.forced ?? 0; // rows forced by a what-if prefix: in italics
  const tgt = targetTokens.map((t, i) => (i < forced ? `<i>${plotText(t)}</i>` : plotText(t)));
  const labels = matrix.map((_, t) => src.map((s) => [tgt[t], s]));

  const heat = {
    type: "heatmap",
    z: matrix,
    x: range(cols),
    y: range(rows),
    zmin: 0,
    zmax: options.zmax ?? 1,
    colorscale: th.scale,
    xgap: cellPx > 18 ? 1 : 0,
    ygap: cellPx > 18 ? 1 : 0,
    customdata: labels,
    hovertemplate: `<b>%{customdata[0]}</b> → %{customdata[1]}<br>${options.valueName || "weight"} %{z:.3f}<extra></extra>`,
    showscale: options.showScale !== false,
    colorbar: narrow
      ? { orientation: "h", thickness: 10, len: 1, y: -8 / geo.height, yanchor: "top", title: { text: options.valueName || "weight", side: "right", font: { size: 12 } }, outlinewidth: 0, tickformat: ".1f" }
      : { thickness: 12, len: Math.min(1, 260 / (rows * cellPx)), lenmode: "fraction", y: 1, yanchor: "top", x: 1, xpad: 12, title: { text: options.valueName || "weight", side: "right" }, outlinewidth: 0, tickformat: ".1f" },
  };
  if (showText) {
    heat.text = matrix.map((row) => row.map((w) => (w >= 0.1 ? w.toFixed(2) : "")));
    heat.texttemplate = "%{text}";
    heat.textfont = { size: 10 };
  }
  const shapes = links.map(({ s, t }) => ({
    type: "rect",
    xref: "x",
    yref: "y",
    x0: s - 0.5,
    x1: s + 0.5,
    y0: t - 0.5,
    y1: t + 0.5,
    line: { color: th.mark, width: cellPx >= 20 ? 2.5 : 1.5 },
    layer: "above",
  }));
  for (const s of masked) {
    shapes.push({
      type: "rect",
      xref: "x",
      yref: "paper",
      x0: s - 0.5,
      x1: s + 0.5,
      y0: 0,
      y1: 1,
      line: { color: th.danger, width: 1.5, dash: "dot" },
      fillcolor: "rgba(180, 35, 24, 0.10)",
      layer: "above",
    });
  }
  const tickFont = { size: geo.fontSize };
  const layout = baseLayout({
    width: geo.width,
    height: geo.height,
    autosize: false,
    margin: geo.margin,
    xaxis: {
      tickmode: "array",
      tickvals: range(cols),
      ticktext: src,
      tickfont: tickFont,
      side: "top",
      tickangle: geo.angle,
      ticklabeloverflow: "allow", // the margins hold the labels; Plotly's check is slow
      range: [-0.5, cols - 0.5],
      showgrid: false,
      zeroline: false,
      ticks: "",
      fixedrange: true,
    },
    yaxis: {
      tickmode: "array",
      tickvals: range(rows),
      ticktext: tgt,
      tickfont: tickFont,
      ticklabeloverflow: "allow",
      range: [rows - 0.5, -0.5],
      showgrid: false,
      zeroline: false,
      ticks: "",
      fixedrange: true,
    },
    shapes,
    dragmode: false,
  });
  await window.Plotly.react(div, [heat], layout, plotConfig(options.filename || "attention", {
    responsive: false,
    displayModeBar: false, // PNG and SVG export have their own buttons
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines", "zoom2d", "pan2d", "zoomIn2d", "zoomOut2d", "resetScale2d"],
  }));
  div.dataset.state = "plot";
  div.setAttribute(
    "aria-label",
    options.label || `Attention heatmap: ${rows} target tokens (rows) by ${cols} source tokens (columns)`,
  );
  if (!div.dataset.hooked && div.on) {
    div.dataset.hooked = "1";
    div.on("plotly_hover", (event) => {
      const p = event?.points?.[0];
      if (p && div._onHover) div._onHover(Math.round(p.y), Math.round(p.x));
    });
    div.on("plotly_unhover", () => div._onUnhover && div._onUnhover());
  }
  div._onHover = options.onHover;
  div._onUnhover = options.onUnhover;
  return true;
}
