// The beam search tree: every candidate the search looked at, kept or pruned, with the
// chosen hypothesis's path highlighted; choosing a hypothesis shows its heatmap.

import { drawHeatmap, noAttentionPanel, plotText } from "./heatmap.js";
import { baseLayout, theme } from "./theme.js";
import { el, fmt, plotConfig } from "./util.js";

/** Node positions: x = step (root at 0), y = rank within the step, siblings together. */
export function layoutTree(nodes) {
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const y = new Map();
  const steps = new Map();
  for (const node of nodes) {
    const x = node.parent === null || node.parent === undefined ? 0 : node.step + 1;
    if (!steps.has(x)) steps.set(x, []);
    steps.get(x).push(node);
  }
  const xs = [...steps.keys()].sort((a, b) => a - b);
  let widest = 1;
  for (const x of xs) {
    const level = steps.get(x);
    level.sort((a, b) => {
      const pa = y.get(a.parent) ?? 0;
      const pb = y.get(b.parent) ?? 0;
      if (pa !== pb) return pa - pb;
      return (b.score ?? -Infinity) - (a.score ?? -Infinity);
    });
    level.forEach((node, i) => y.set(node.id, i));
    widest = Math.max(widest, level.length);
  }
  return { byId, y, x: (node) => (node.parent === null || node.parent === undefined ? 0 : node.step + 1), widest, depth: xs.length };
}

export class BeamView {
  constructor(root, { onWiden }) {
    this.root = root;
    this.tree = root.querySelector("#beam-tree");
    this.hyps = root.querySelector("#beam-hyps");
    this.heat = root.querySelector("#beam-heatmap");
    this.off = root.querySelector("#beam-off");
    this.body = root.querySelector("#beam-body");
    root.querySelector("#beam-on").addEventListener("click", () => onWiden(4));
    this.dirty = false;
    this.choice = 0;
  }

  set(result) {
    this.result = result;
    this.hypotheses = result.hypotheses?.length ? result.hypotheses : [result];
    this.choice = 0;
    this.dirty = true;
  }

  async show() {
    if (!this.result || !this.dirty) return;
    this.dirty = false;
    const beam = this.result.beam;
    this.off.hidden = Boolean(beam);
    this.body.hidden = !beam;
    if (!beam) return;
    this.renderList();
    await this.drawTree();
    await this.drawHeat();
  }

  renderList() {
    const legend = this.hyps.querySelector("legend");
    const items = this.hypotheses.map((h, i) =>
      el("label", { class: "hyp" }, [
        el("input", { type: "radio", name: "hyp", value: String(i), checked: i === this.choice }),
        el("span", { lang: "fr" }, [el("strong", { text: `${i + 1}. ` }), h.translation || "(empty)"]),
        el("span", { class: "score", text: `${fmt(h.normalized_score, 3)} · log p ${fmt(h.score, 2)}` }),
      ]),
    );
    this.hyps.replaceChildren(legend, ...items);
    this.hyps.onchange = (event) => {
      if (event.target.name === "hyp") this.select(Number(event.target.value));
    };
  }

  async select(i) {
    this.choice = i;
    const input = this.hyps.querySelector(`input[value="${i}"]`);
    if (input) input.checked = true;
    await this.drawTree();
    await this.drawHeat();
    this.root.dataset.hypothesis = String(i); // drawn (the tests wait for this)
  }

  async drawHeat() {
    const h = this.hypotheses[this.choice];
    if (!h.attention) {
      noAttentionPanel(this.heat, true);
      return;
    }
    await drawHeatmap(this.heat, h.attention, h.target_tokens, h.source_tokens, {
      compact: true,
      filename: `attnviz-hypothesis-${this.choice + 1}`,
    });
  }

  async drawTree() {
    const th = theme();
    const beam = this.result.beam;
    const nodes = beam.nodes;
    const { byId, y, x, widest, depth } = layoutTree(nodes);
    const path = new Set(beam.paths?.[this.choice] || []);
    path.add(0);
    const edges = { pruned: { x: [], y: [] }, kept: { x: [], y: [] }, chosen: { x: [], y: [] } };
    const groups = { pruned: [], kept: [], finished: [], chosen: [] };
    for (const node of nodes) {
      const onPath = path.has(node.id);
      if (node.parent !== null && node.parent !== undefined) {
        const parent = byId.get(node.parent);
        const kind = onPath && path.has(parent.id) ? "chosen" : node.kept ? "kept" : "pruned";
        edges[kind].x.push(x(parent), x(node), null);
        edges[kind].y.push(y.get(parent.id), y.get(node.id), null);
      }
      const group = onPath ? "chosen" : node.finished ? "finished" : node.kept ? "kept" : "pruned";
      groups[group].push(node);
    }
    const many = nodes.length > 320;
    const edgeTrace = (e, color, width, dash) => ({
      type: "scatter",
      mode: "lines",
      x: e.x,
      y: e.y,
      line: { color, width, dash },
      hoverinfo: "skip",
      showlegend: false,
    });
    const status = (n) => (n.finished ? "finished" : n.kept ? "kept" : "pruned");
    const nodeTrace = (list, marker, textColor, name) => ({
      type: "scatter",
      mode: many ? "markers" : "markers+text",
      name,
      x: list.map(x),
      y: list.map((n) => y.get(n.id)),
      text: list.map((n) => plotText(n.token)),
      textposition: "top center",
      textfont: { size: 11, color: textColor },
      marker,
      customdata: list.map((n) => [plotText(n.token), fmt(n.score, 3), fmt(n.logprob, 3), status(n), n.id]),
      hovertemplate: "<b>%{customdata[0]}</b><br>score %{customdata[1]}<br>log p %{customdata[2]}<br>%{customdata[3]}<extra></extra>",
      showlegend: false,
    });
    const data = [
      edgeTrace(edges.pruned, th.border, 1, "dot"),
      edgeTrace(edges.kept, th.muted, 1.2, "solid"),
      edgeTrace(edges.chosen, th.mark, 3.5, "solid"),
      nodeTrace(groups.pruned, { size: 7, color: th.surface, line: { color: th.muted, width: 1 } }, th.muted, "pruned"),
      nodeTrace(groups.kept, { size: 9, color: th.accent }, th.text, "kept"),
      nodeTrace(groups.finished, { size: 11, symbol: "diamond", color: th.accent }, th.text, "finished"),
      nodeTrace(
        groups.chosen,
        { size: 12, color: th.mark, symbol: groups.chosen.map((n) => (n.finished ? "diamond" : "circle")) },
        th.text,
        "chosen",
      ),
    ];
    const width = Math.max(this.tree.parentElement.clientWidth || 600, depth * 78 + 60);
    const layout = baseLayout({
      height: Math.max(220, widest * 30 + 60),
      width,
      margin: { l: 20, r: 20, t: 24, b: 36 },
      xaxis: { title: { text: "step" }, dtick: 1, zeroline: false, gridcolor: th.border, range: [-0.4, depth - 0.5] },
      yaxis: { visible: false, autorange: false, range: [widest - 0.4, -1] },
      hovermode: "closest",
      dragmode: "pan",
    });
    this.tree.style.overflowX = "auto";
    await window.Plotly.react(this.tree, data, layout, plotConfig("attnviz-beam", { responsive: false }));
    this.tree.dataset.nodes = String(nodes.length);
    if (!this.tree.dataset.hooked) {
      this.tree.dataset.hooked = "1";
      this.tree.on("plotly_click", (event) => {
        const id = event?.points?.[0]?.customdata?.[4];
        const k = (this.result.beam.paths || []).findIndex((p) => p[p.length - 1] === id);
        if (k >= 0 && k !== this.choice) this.select(k);
      });
    }
  }
}
