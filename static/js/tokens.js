// The token strips: hover or focus a target word and the source words it attended to
// light up (and the other way round). One tab stop per strip; arrow keys move. The strips
// show words or pieces (words.js): the chips, the matrix and the hints are in that unit.

import { el, pct } from "./util.js";
import { crossIn, meanRows, wordsDiffer, wordsOf } from "./words.js";

const SPECIAL = new Set(["</s>", "<s>", "<unk>", "<pad>"]);

export function isSpecial(token) {
  return SPECIAL.has(token);
}

/** Roving tabindex inside a group of buttons: ← → Home End move the focus. */
export function rovingFocus(container) {
  container.addEventListener("keydown", (event) => {
    const items = [...container.querySelectorAll("button.tok")];
    const i = items.indexOf(document.activeElement);
    if (i < 0) return;
    let j = null;
    if (event.key === "ArrowRight" || event.key === "ArrowDown") j = Math.min(items.length - 1, i + 1);
    else if (event.key === "ArrowLeft" || event.key === "ArrowUp") j = Math.max(0, i - 1);
    else if (event.key === "Home") j = 0;
    else if (event.key === "End") j = items.length - 1;
    if (j === null) return;
    event.preventDefault();
    items[i].tabIndex = -1;
    items[j].tabIndex = 0;
    items[j].focus();
  });
}

/** A token chip: a button (so it can take focus), marked when special or unknown. */
export function chip(token, index, { unknown = false, tag = "button", extraClass = "" } = {}) {
  const node = el(tag, {
    class: `tok${isSpecial(token) ? " special" : ""}${unknown ? " unk" : ""}${extraClass ? ` ${extraClass}` : ""}`,
    type: tag === "button" ? "button" : undefined,
    dataset: { i: String(index) },
    tabindex: tag === "button" ? (index === 0 ? "0" : "-1") : undefined,
    title: unknown ? "Unknown to this model: it reads <unk> here" : undefined,
    text: token,
  });
  if (unknown) node.setAttribute("aria-description", "unknown word");
  return node;
}

/** Paint chips with weights (0..1; the square root, so small weights still show); mark
 * the largest. */
export function paint(chips, weights, { topClass = "top" } = {}) {
  let best = -1;
  weights.forEach((w, i) => {
    if (best < 0 || w > weights[best]) best = i;
  });
  chips.forEach((node, i) => {
    const w = Math.sqrt(Math.max(0, weights[i]));
    node.style.setProperty("--w", w.toFixed(3));
    node.classList.toggle("on-dark", w > 0.55);
    node.classList.toggle(topClass, i === best);
  });
  return best;
}

export function unpaint(chips, classes = ["top", "active"]) {
  for (const node of chips) {
    node.style.removeProperty("--w");
    node.classList.remove("on-dark", ...classes);
  }
}

function describe(weights, tokens, limit = 3) {
  return weights
    .map((w, i) => ({ w, i }))
    .sort((a, b) => b.w - a.w)
    .filter((x, k) => k === 0 || x.w >= 0.05)
    .slice(0, limit)
    .map(({ w, i }) => `“${tokens[i]}” ${pct(w)}`)
    .join(", ");
}

export class TokenLinker {
  constructor(sourceBox, targetBox, hint) {
    this.sourceBox = sourceBox;
    this.targetBox = targetBox;
    this.hint = hint;
    this.defaultHint = hint.textContent;
    this.matrix = null;
    rovingFocus(sourceBox);
    rovingFocus(targetBox);
    const bind = (box, side) => {
      const on = (event) => {
        const node = event.target.closest(".tok");
        if (node && box.contains(node)) this.highlight(side, Number(node.dataset.i));
      };
      box.addEventListener("mouseover", on);
      box.addEventListener("focusin", on);
      box.addEventListener("mouseleave", () => this.clear());
      box.addEventListener("focusout", (event) => {
        if (!box.contains(event.relatedTarget)) this.clear();
      });
    };
    bind(sourceBox, "source");
    bind(targetBox, "target");
  }

  /** A new result; `matrix` (target pieces x source pieces, or null) shown in `unit`. */
  set(result, matrix, unit = "pieces") {
    this.result = result;
    this.unit = unit;
    this.words = { source: wordsOf(result, "source"), target: wordsOf(result, "target") };
    const unknown = new Set(result.unknown_source_tokens || []);
    const forced = (i) => Boolean(result.steps?.[i]?.forced);
    const some = (w, test) => Array.from({ length: w.end - w.start }, (_, k) => w.start + k).some(test);
    if (unit === "words") {
      this.labels = { source: this.words.source.map((w) => w.word), target: this.words.target.map((w) => w.word) };
      this.sourceChips = this.words.source.map((w, k) => chip(w.word, k, { unknown: some(w, (i) => unknown.has(i)) }));
      this.targetChips = this.words.target.map((w, k) => chip(w.word, k, { extraClass: some(w, forced) ? "forced" : "" }));
    } else {
      this.labels = { source: result.source_tokens, target: result.target_tokens };
      this.sourceChips = result.source_tokens.map((tok, i) => chip(tok, i, { unknown: unknown.has(i) }));
      this.targetChips = result.target_tokens.map((tok, i) => chip(tok, i, { extraClass: forced(i) ? "forced" : "" }));
    }
    this.sourceBox.dataset.unit = unit;
    this.targetBox.dataset.unit = unit;
    this.sourceBox.replaceChildren(...this.sourceChips);
    this.targetBox.replaceChildren(...this.targetChips);
    this.setMatrix(matrix);
  }

  /** The (target pieces, source pieces) matrix the strips link by (null: none). */
  setMatrix(matrix) {
    this.matrix = matrix && this.unit === "words" ? crossIn(this.result, matrix, "words").matrix : matrix;
    this.clear();
  }

  /** Light up what target word t attended to ("target"), or who attended to source s. */
  highlight(side, index) {
    if (!this.result) return;
    this.clear(false);
    const src = this.labels.source;
    const tgt = this.labels.target;
    const own = side === "target" ? this.targetChips : this.sourceChips;
    own[index]?.classList.add("active");
    if (!this.matrix) {
      this.hint.textContent = "This model has no attention: no word is linked to another.";
      return;
    }
    if (side === "target") {
      const weights = this.matrix[index];
      paint(this.sourceChips, weights);
      this.hint.textContent = `“${tgt[index]}” looked at ${describe(weights, src)}`;
    } else {
      const weights = this.matrix.map((row) => row[index]);
      paint(this.targetChips, weights);
      this.hint.textContent = `“${src[index]}” was looked at most by ${describe(weights, tgt)}`;
    }
  }

  /** Both ends of one cell (heatmap hover). */
  cell(t, s) {
    if (!this.result || !this.matrix) return;
    this.clear(false);
    this.targetChips[t]?.classList.add("active");
    this.sourceChips[s]?.classList.add("active");
    paint(this.sourceChips, this.matrix[t]);
    const w = this.matrix[t]?.[s];
    this.hint.textContent = `“${this.labels.target[t]}” → “${this.labels.source[s]}”: weight ${w?.toFixed(3)}`;
  }

  /** An alignment link between target word t and source word s (indices of the words):
   * in pieces, all the pieces of both words, the source painted with the word's mean row. */
  link(t, s) {
    if (this.unit === "words" || !wordsDiffer(this.result)) {
      this.cell(t, s);
      return;
    }
    const tw = this.words?.target[t];
    const sw = this.words?.source[s];
    if (!tw || !sw || !this.matrix) return;
    this.clear(false);
    for (let i = tw.start; i < tw.end; i += 1) this.targetChips[i]?.classList.add("active");
    for (let i = sw.start; i < sw.end; i += 1) this.sourceChips[i]?.classList.add("active");
    const row = meanRows(this.matrix, [[tw.start, tw.end]])[0];
    paint(this.sourceChips, row);
    const w = row.slice(sw.start, sw.end).reduce((a, b) => a + b, 0);
    this.hint.textContent = `“${tw.word}” → “${sw.word}”: weight ${w.toFixed(3)} (source pieces summed, target pieces averaged)`;
  }

  clear(resetHint = true) {
    unpaint(this.sourceChips || []);
    unpaint(this.targetChips || []);
    if (resetHint) this.hint.textContent = this.defaultHint;
  }
}
