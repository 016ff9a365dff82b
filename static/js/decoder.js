// The animated decoder: one Plotly frame per decoding step (attention over the source
// at that step), with the step's top-k candidates and the translation so far. A step writes
// one piece: for a subword model the page says which target word the piece belongs to, and
// in Words the step's attention is shown over the source words (the piece's row, each
// word's pieces summed: words.js).

import { plotText, showPlotError } from "./heatmap.js";
import { chip, paint, unpaint } from "./tokens.js";
import { baseLayout, theme } from "./theme.js";
import { el, pct, plotConfig, range, reducedMotion } from "./util.js";
import { checkSpans, spansOf, sumColumns, unitFor, wordOfPiece, wordsDiffer, wordsOf } from "./words.js";

const ICONS = {
  play: '<svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true"><path d="M4 2.5v11l9-5.5z" fill="currentColor"/></svg>',
  pause: '<svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true"><path d="M3.5 2.5h3v11h-3zM9.5 2.5h3v11h-3z" fill="currentColor"/></svg>',
};

function label(button, icon, text) {
  button.innerHTML = `${ICONS[icon]}<span>${text}</span>`; // constant markup, no user text
}

export class Decoder {
  constructor(root) {
    this.root = root;
    this.q = (id) => root.querySelector(`#${id}`);
    this.plot = this.q("dec-plot");
    this.slider = this.q("dec-step");
    this.label = this.q("dec-step-label");
    this.playButton = this.q("dec-play");
    this.speed = this.q("dec-speed");
    this.sourceBox = this.q("dec-source");
    this.soFar = this.q("dec-sofar");
    this.topk = this.q("dec-topk");
    this.wordLine = this.q("dec-word");
    this.unitName = this.q("dec-unit");
    this.step = 0;
    this.timer = null;
    this.dirty = false;

    this.q("dec-prev").addEventListener("click", () => this.go(this.step - 1));
    this.q("dec-next").addEventListener("click", () => this.go(this.step + 1));
    this.playButton.addEventListener("click", () => (this.timer ? this.pause() : this.play()));
    this.slider.addEventListener("input", () => this.go(Number(this.slider.value)));
    root.addEventListener("keydown", (event) => this.onKey(event));
  }

  onKey(event) {
    const tag = event.target.tagName;
    if (tag === "SELECT" || (tag === "INPUT" && event.target !== this.slider)) return;
    if (event.target === this.slider && (event.key.startsWith("Arrow") || event.key === "Home" || event.key === "End")) {
      return; // the slider moves itself and fires "input"
    }
    const moves = { ArrowLeft: -1, ArrowRight: 1 };
    if (event.key in moves) {
      event.preventDefault();
      this.pause();
      this.go(this.step + moves[event.key]);
    } else if (event.key === "Home" || event.key === "End") {
      event.preventDefault();
      this.pause();
      this.go(event.key === "Home" ? 0 : this.count - 1);
    } else if (event.key === " " && tag !== "BUTTON") {
      event.preventDefault();
      if (this.timer) this.pause();
      else this.play();
    }
  }

  /** A new translation; drawn when the tab is shown. `matrix`: target pieces x source
   * pieces (null without attention). */
  set(result, matrix) {
    this.pause();
    this.result = result;
    this.matrix = matrix;
    this.count = result.target_tokens.length;
    this.step = 0;
    this.slider.max = String(Math.max(0, this.count - 1));
    this.slider.value = "0";
    this.dirty = true;
  }

  /** The Words / Pieces choice changed: drawn again (now if the tab shows), same step. */
  async refresh() {
    this.dirty = true;
    if (!this.root.hidden) await this.show();
  }

  async show() {
    if (!this.result || !this.dirty) return;
    this.dirty = false;
    const result = this.result;
    const unit = unitFor(result);
    this.unit = unit;
    const unknown = new Set(result.unknown_source_tokens || []);
    const srcWords = wordsOf(result, "source");
    // the bars and source chips: one per source word (the step's row, pieces summed) or piece
    let problem = null;
    this.rows = this.matrix;
    if (unit === "words") {
      problem = checkSpans(result.source_words, result.source_tokens, "source");
      this.labels = srcWords.map((w) => w.word);
      this.sourceChips = srcWords.map((w, k) =>
        chip(w.word, k, { tag: "span", unknown: range(w.end - w.start).some((i) => unknown.has(w.start + i)) }),
      );
      if (this.matrix && !problem) this.rows = sumColumns(this.matrix, spansOf(srcWords));
    } else {
      this.labels = result.source_tokens;
      this.sourceChips = result.source_tokens.map((tok, i) => chip(tok, i, { tag: "span", unknown: unknown.has(i) }));
    }
    if (this.unitName) this.unitName.textContent = unit === "words" ? "words" : wordsDiffer(result) ? "pieces" : "words";
    this.sourceBox.replaceChildren(...this.sourceChips);
    // the translation so far: one chip per step (a piece), in a box per word for a subword model
    this.targetChips = result.target_tokens.map((tok, i) =>
      chip(tok, i, { tag: "span", extraClass: result.steps?.[i]?.forced ? "forced" : "" }),
    );
    this.targetWords = wordsDiffer(result) && !checkSpans(result.target_words, result.target_tokens, "target")
      ? result.target_words
      : null;
    this.wordOf = this.targetWords ? wordOfPiece(this.targetWords, this.count) : null;
    if (this.targetWords) {
      this.wordBoxes = this.targetWords.map((w, k) =>
        el("span", { class: "word-box", dataset: { word: String(k) }, title: `the word “${w.word}”` }, this.targetChips.slice(w.start, w.end)),
      );
      this.soFar.replaceChildren(...this.wordBoxes);
    } else {
      this.wordBoxes = null;
      this.soFar.replaceChildren(...this.targetChips);
    }
    if (this.wordLine) this.wordLine.hidden = !this.targetWords;
    if (problem) {
      showPlotError(this.plot, problem);
      this.plot.dataset.frames = "0";
      this.rows = null;
    } else if (this.matrix) await this.drawFrames();
    else {
      if (window.Plotly && this.plot.classList.contains("js-plotly-plot")) window.Plotly.purge(this.plot);
      this.plot.replaceChildren(
        el("p", { class: "notice", text: "No attention: every step reads the same fixed summary of the sentence." }),
      );
      this.plot.dataset.frames = "0";
    }
    this.go(this.step, false, this.step > 0); // drawn at step 0 (a new translation's first)
    this.root.dataset.unit = unit; // after drawing: a test waiting for it finds the new plot
  }

  colors(t) {
    const th = theme();
    const row = this.rows[t];
    let best = 0;
    row.forEach((w, s) => {
      if (w > row[best]) best = s;
    });
    return row.map((_, s) => (s === best ? th.mark : th.accent));
  }

  async drawFrames() {
    const th = theme();
    const src = this.labels.map(plotText);
    const n = src.length;
    const trace = {
      type: "bar",
      x: range(n),
      y: this.rows[0],
      marker: { color: this.colors(0) },
      customdata: src,
      hovertemplate: "%{customdata}: %{y:.3f}<extra></extra>",
    };
    const layout = baseLayout({
      height: 230,
      margin: { l: 40, r: 8, t: 8, b: 8 },
      bargap: 0.15,
      xaxis: {
        tickmode: "array",
        tickvals: range(n),
        ticktext: src,
        tickangle: n > 10 ? -50 : 0,
        ticklabeloverflow: "allow",
        automargin: true,
        fixedrange: true,
      },
      yaxis: { range: [0, 1], title: { text: "weight" }, gridcolor: th.border, fixedrange: true, tickformat: ".1f" },
      showlegend: false,
    });
    const Plotly = window.Plotly;
    if (this.plot.classList.contains("js-plotly-plot")) Plotly.purge(this.plot);
    this.plot.replaceChildren();
    await Plotly.newPlot(this.plot, [trace], layout, plotConfig("decoder-step", { displayModeBar: false }));
    const frames = this.rows.map((row, t) => ({
      name: String(t),
      data: [{ y: row, marker: { color: this.colors(t) } }],
      traces: [0],
    }));
    await Plotly.addFrames(this.plot, frames);
    this.plot.dataset.frames = String(frames.length);
  }

  go(step, animate = true, movePlot = true) {
    if (!this.result) return;
    const t = Math.max(0, Math.min(this.count - 1, step));
    this.step = t;
    this.slider.value = String(t);
    this.label.textContent = `Step ${t + 1} of ${this.count}`;
    this.root.dataset.step = String(t);
    const result = this.result;

    this.targetChips?.forEach((node, i) => {
      node.classList.toggle("future", i > t);
      node.classList.toggle("current", i === t);
    });
    if (this.targetWords && this.wordLine) {
      const k = this.wordOf[t];
      const w = this.targetWords[k];
      this.wordBoxes.forEach((box, j) => box.classList.toggle("current-word", j === k));
      this.wordLine.dataset.word = String(k);
      this.wordLine.replaceChildren(
        ...(w.word === "</s>"
          ? ["This step writes the end token ", el("b", { text: "</s>" }), "."]
          : w.end - w.start === 1
            ? ["This step writes the piece ", el("code", { text: result.target_tokens[t] }), ": the whole word ", el("b", { text: `“${w.word}”` }), "."]
            : [
                "This step writes the piece ",
                el("code", { text: result.target_tokens[t] }),
                `, piece ${t - w.start + 1} of ${w.end - w.start} of the word `,
                el("b", { text: `“${w.word}”` }),
                ".",
              ]),
      );
    }

    if (this.rows && this.sourceChips) {
      const best = paint(this.sourceChips, this.rows[t], { topClass: "top" });
      this.sourceChips.forEach((node, i) => node.classList.toggle("is-argmax", i === best));
      const ms = animate && !reducedMotion() ? Math.min(250, Number(this.speed.value) * 0.5) : 0;
      if (movePlot && this.plot.dataset.frames && window.Plotly && this.plot.classList.contains("js-plotly-plot")) {
        window.Plotly.animate(this.plot, [String(t)], {
          mode: "immediate",
          frame: { duration: ms, redraw: true }, // redraw: the bar colours change too
          transition: { duration: ms, easing: "cubic-in-out" },
        });
      }
    } else if (this.sourceChips) {
      unpaint(this.sourceChips);
    }

    const info = result.steps?.[t];
    const items = [];
    if (info) {
      const top = info.top_k?.length ? [...info.top_k] : [];
      if (!top.some((c) => c.token === info.token)) top.push({ token: info.token, prob: info.prob, outside: true });
      for (const c of top) {
        const chosen = c.token === info.token;
        items.push(
          el("li", { class: chosen ? "chosen" : "" }, [
            el("span", { text: c.token, lang: "fr" }),
            el("span", { class: "bar", "aria-hidden": "true" }, [el("span", { style: `width:${(c.prob * 100).toFixed(1)}%` })]),
            el("span", { class: "p", text: pct(c.prob) }),
          ]),
        );
        if (chosen) {
          items[items.length - 1].setAttribute(
            "aria-label",
            `${c.token}, ${pct(c.prob)}, chosen${info.forced ? " (forced)" : ""}`,
          );
        }
      }
      if (info.forced) items.push(el("li", { class: "help", text: "This word was forced (what-if prefix)." }));
      if (!info.top_k?.length) items.push(el("li", { class: "help", text: "Only the chosen word was reported for this step." }));
    }
    this.topk.replaceChildren(...items);
  }

  play() {
    if (!this.result) return;
    if (this.step >= this.count - 1) this.go(0);
    label(this.playButton, "pause", "Pause");
    this.playButton.setAttribute("aria-pressed", "true");
    const tick = () => {
      if (this.step >= this.count - 1) {
        this.pause();
        return;
      }
      this.go(this.step + 1);
      this.timer = setTimeout(tick, Number(this.speed.value));
    };
    this.timer = setTimeout(tick, Number(this.speed.value));
  }

  pause() {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    label(this.playButton, "play", "Play");
    this.playButton.setAttribute("aria-pressed", "false");
  }
}
