// Every layer's and head's attention at a glance: one Plotly figure with one small heatmap
// per (layer, head), rows = layers, columns = heads, titled "L1 H1"... A transparent button
// over each map is its keyboard stop (arrow keys move, Enter opens the map in the Heatmap
// tab); the mouse goes through the buttons to the figure (hover, click).

import { checkAttention } from "./checks.js";
import { plotText, resetPlot, showPlotError } from "./heatmap.js";
import { baseLayout, theme } from "./theme.js";
import { clamp, el, plotConfig, range } from "./util.js";

/** At most this many small maps: more layers are shown as a window around the chosen one. */
export const MAX_MAPS = 32;

const SOURCE_AXES = { rows: (n) => `the source has ${n} tokens`, cols: (n) => `the source has ${n} tokens` };
const DECODER_AXES = {
  rows: (n) => `the translation has ${n} target tokens`,
  cols: (n) => `the decoder read ${n} tokens`,
};

/** What each kind of attention is called in the selectors. */
export const KIND_LABELS = {
  cross: "Cross (target → source)",
  encoder: "Encoder self (source → source)",
  decoder: "Decoder self (target → earlier target)",
};

/**
 * The rows and columns of one kind of attention for a result: the token lists, the name of
 * the matrix (for messages) and checkAttention's wording of its axes.
 */
export function kindAxes(result, views, kind) {
  if (kind === "encoder") {
    return { rows: result.source_tokens, cols: result.source_tokens, what: "encoder self-attention", axes: SOURCE_AXES, rowName: "source", colName: "source" };
  }
  if (kind === "decoder") {
    return { rows: result.target_tokens, cols: views?.decoderTokens || [], what: "decoder self-attention", axes: DECODER_AXES, rowName: "target", colName: "decoder input" };
  }
  return { rows: result.target_tokens, cols: result.source_tokens, what: "cross-attention", axes: undefined, rowName: "target", colName: "source" };
}

/** The layers the grid shows: all of them when layers × heads ≤ MAX_MAPS, else as many
 * as fit, around `layer`. */
export function gridLayers(layers, heads, layer) {
  const fit = Math.max(1, Math.floor(MAX_MAPS / heads));
  if (layers <= fit) return range(layers);
  const start = clamp(layer - Math.floor(fit / 2), 0, layers - fit);
  return range(fit).map((i) => start + i);
}

export class HeadGrid {
  /** root: the Heads tab panel; onPick(layer, head) when a map is chosen. */
  constructor(root, { onPick }) {
    this.plot = root.querySelector("#head-grid");
    this.keys = root.querySelector("#head-grid-keys");
    this.note = root.querySelector("#head-grid-note");
    this.onPick = onPick;
    this.cells = [];
    this.keys.addEventListener("click", (event) => {
      const key = event.target.closest("button.head-key");
      if (key) this.onPick(Number(key.dataset.layer), Number(key.dataset.head));
    });
    this.keys.addEventListener("keydown", (event) => this.onKey(event));
  }

  /** Arrow keys move between maps (← → heads, ↑ ↓ layers), Home and End to the ends. */
  onKey(event) {
    const keys = [...this.keys.querySelectorAll("button.head-key")];
    const i = keys.indexOf(document.activeElement);
    if (i < 0 || !this.columns) return;
    const n = keys.length;
    const moves = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: this.columns, ArrowUp: -this.columns };
    let j = null;
    if (event.key in moves) j = i + moves[event.key];
    else if (event.key === "Home") j = 0;
    else if (event.key === "End") j = n - 1;
    if (j === null) return;
    event.preventDefault();
    j = clamp(j, 0, n - 1);
    keys[i].tabIndex = -1;
    keys[j].tabIndex = 0;
    keys[j].focus();
  }

  /** Mark the chosen map (aria-pressed) without drawing again. */
  mark(layer, head) {
    for (const key of this.keys.querySelectorAll("button.head-key")) {
      const on = Number(key.dataset.layer) === layer && Number(key.dataset.head) === head;
      key.setAttribute("aria-pressed", String(on));
    }
  }

  /**
   * Draw one kind of attention for every layer and head. view: {result, views (checks.js
   * headViews), kind, layer, head ("mean" or an index)}. Resolves true when drawn.
   */
  async draw({ result, views, kind, layer, head }) {
    const matrices = views.kinds[kind];
    const { rows, cols, what, axes } = kindAxes(result, views, kind);
    const shownLayers = gridLayers(views.layers, views.heads, layer);
    const shownHeads = range(Math.min(views.heads, MAX_MAPS));
    for (const l of shownLayers) {
      for (const h of shownHeads) {
        const problem = checkAttention(matrices[l][h], rows, cols, `${what} of layer ${l + 1}, head ${h + 1}`, axes);
        if (problem) {
          this.keys.replaceChildren();
          showPlotError(this.plot, problem);
          return false;
        }
      }
    }
    if (this.plot.dataset.state !== "plot") resetPlot(this.plot);

    const th = theme();
    const columns = shownHeads.length;
    const available = this.plot.parentElement?.clientWidth || 800;
    const gapX = 14;
    const gapY = 10;
    const titleH = 22;
    const cellW = clamp(Math.floor((available - 4 - (columns - 1) * gapX) / columns), 64, 240);
    const mapH = clamp(Math.round((cellW * rows.length) / Math.max(1, cols.length)), 48, 240);
    const width = columns * cellW + (columns - 1) * gapX;
    const height = shownLayers.length * (titleH + mapH) + (shownLayers.length - 1) * gapY;
    const pad = 2; // room for the maps' frames at the edges

    const src = cols.map(plotText);
    const tgt = rows.map(plotText);
    const labels = rows.map((_, t) => src.map((s) => [tgt[t], s]));
    const traces = [];
    const layout = baseLayout({
      width: width + 2 * pad,
      height: height + 2 * pad,
      autosize: false,
      margin: { l: pad, r: pad, t: pad, b: pad, pad: 0 },
      showlegend: false,
      dragmode: false,
      hovermode: "closest",
      annotations: [],
    });
    this.cells = [];
    const keyNodes = [];
    shownLayers.forEach((l, row) => {
      const top = row * (titleH + mapH + gapY);
      shownHeads.forEach((h, col) => {
        const n = traces.length + 1;
        const suffix = n === 1 ? "" : String(n);
        const left = col * (cellW + gapX);
        const title = `L${l + 1} H${h + 1}`;
        traces.push({
          type: "heatmap",
          z: matrices[l][h],
          xaxis: `x${suffix}`,
          yaxis: `y${suffix}`,
          zmin: 0,
          zmax: 1,
          colorscale: th.scale,
          showscale: false,
          customdata: labels,
          hovertemplate: `<b>${title}</b><br>%{customdata[0]} → %{customdata[1]}<br>weight %{z:.3f}<extra></extra>`,
          name: title,
        });
        const frame = { showticklabels: false, showgrid: false, zeroline: false, ticks: "", fixedrange: true, showline: true, mirror: true, linecolor: th.border };
        layout[`xaxis${suffix}`] = { ...frame, domain: [left / width, (left + cellW) / width], anchor: `y${suffix}`, range: [-0.5, cols.length - 0.5] };
        layout[`yaxis${suffix}`] = {
          ...frame,
          domain: [1 - (top + titleH + mapH) / height, 1 - (top + titleH) / height],
          anchor: `x${suffix}`,
          range: [rows.length - 0.5, -0.5],
        };
        layout.annotations.push({
          text: title,
          xref: "paper",
          yref: "paper",
          x: (left + cellW / 2) / width,
          y: 1 - top / height,
          xanchor: "center",
          yanchor: "top",
          showarrow: false,
          font: { size: 12, color: th.muted },
        });
        this.cells.push({ layer: l, head: h });
        const chosen = l === layer && head !== "mean" && h === Number(head);
        keyNodes.push(
          el("button", {
            type: "button",
            class: "head-key",
            dataset: { layer: String(l), head: String(h) },
            "aria-label": `Layer ${l + 1}, head ${h + 1}: open in the heatmap`,
            "aria-pressed": String(chosen),
            tabindex: "-1",
            style: `left: ${pad + left}px; top: ${pad + top}px; width: ${cellW}px; height: ${titleH + mapH}px`,
          }),
        );
      });
    });
    const focusable = keyNodes.find((k) => k.getAttribute("aria-pressed") === "true") || keyNodes[0];
    if (focusable) focusable.tabIndex = 0;
    this.columns = columns;

    await window.Plotly.react(this.plot, traces, layout, plotConfig(`attnviz-heads-${kind}`, { responsive: false, displayModeBar: false }));
    this.plot.dataset.state = "plot";
    this.plot.dataset.maps = String(traces.length);
    this.plot.dataset.kind = kind;
    this.plot.setAttribute(
      "aria-label",
      `${what}: ${shownLayers.length} layers (rows) by ${columns} heads (columns), one small heatmap each, ` +
        `${rows.length} rows by ${cols.length} columns`,
    );
    this.keys.style.width = `${width + 2 * pad}px`;
    this.keys.style.height = `${height + 2 * pad}px`;
    this.keys.replaceChildren(...keyNodes);
    if (!this.plot.dataset.hooked && this.plot.on) {
      this.plot.dataset.hooked = "1";
      this.plot.on("plotly_click", (event) => {
        const cell = this.cells[event?.points?.[0]?.curveNumber];
        if (cell) this.onPick(cell.layer, cell.head);
      });
    }
    const hidden = views.layers - shownLayers.length;
    this.note.textContent = hidden
      ? `Showing layers ${shownLayers[0] + 1}–${shownLayers.at(-1) + 1} of ${views.layers} (at most ${MAX_MAPS} maps): choose another layer in the Heatmap tab to see the others.`
      : `${views.layers} ${views.layers === 1 ? "layer" : "layers"} × ${views.heads} heads`;
    this.width = available;
    return true;
  }
}
