// Attention for people: words, not pieces. A subword model (SentencePiece) reads and writes
// pieces ("▁Ca", "n"); the service also sends the words (source_words, target_words: each
// word with the half-open span [start, end) of the pieces it covers, "</s>" a word of its
// own) and the attention over words (word_attention). This module holds the one rule to
// go from pieces to words, for the matrices the service does not aggregate itself (a
// head, a layer, one decoder step, self-attention), and the Words / Pieces choice.
//
// The rule (the service's, attnviz/model/words.py):
//   - source pieces are SUMMED: the weight on a source word is the sum of the weights on
//     its pieces (attention is a distribution over source positions: a word gets the mass
//     of its pieces);
//   - target pieces are AVERAGED: a target word's row is the mean of its pieces' rows (each
//     piece is one decoder step; the word looked where its steps looked, on average).
// So every word row still sums to 1. Spans must tile the pieces: the first starts at 0,
// each starts where the previous ended, none is empty, the last ends at the piece count.
// For a word-level (lab) model every word is one piece and words are the pieces.

const UNITS = ["words", "pieces"];
const STORE = "attnviz:unit";

/** The spans [[start, end], ...] of a list of words ({word, start, end}). */
export function spansOf(words) {
  return words.map((w) => [w.start, w.end]);
}

/** null when `words` tile `tokens` (pieces) in order, else what is wrong. */
export function checkSpans(words, tokens, side = "source") {
  if (!Array.isArray(words) || !Array.isArray(tokens)) return `the ${side} words are missing from the response`;
  let at = 0;
  for (let k = 0; k < words.length; k += 1) {
    const w = words[k];
    if (!w || !Number.isInteger(w.start) || !Number.isInteger(w.end)) return `${side} word ${k + 1} has no span of pieces`;
    if (w.start !== at || w.end <= w.start) {
      return `${side} word ${k + 1} (“${w.word}”) covers pieces ${w.start}–${w.end}, but the words must cover the ${tokens.length} ${side} pieces once, in order (next piece: ${at})`;
    }
    at = w.end;
  }
  if (at !== tokens.length) return `the ${side} words cover ${at} pieces, but there are ${tokens.length} ${side} pieces`;
  return null;
}

/** (rows, pieces) -> (rows, words): each word's column is the sum of its pieces' columns. */
export function sumColumns(matrix, spans) {
  return matrix.map((row) =>
    spans.map(([a, b]) => {
      let s = 0;
      for (let i = a; i < b; i += 1) s += row[i];
      return s;
    }),
  );
}

/** (pieces, cols) -> (words, cols): each word's row is the mean of its pieces' rows. */
export function meanRows(matrix, spans) {
  return spans.map(([a, b]) => {
    const cols = matrix[a].length;
    const out = new Array(cols).fill(0);
    for (let t = a; t < b; t += 1) for (let s = 0; s < cols; s += 1) out[s] += matrix[t][s];
    return out.map((v) => v / (b - a));
  });
}

/** A (target pieces, source pieces) matrix over words: columns summed, rows averaged. */
export function toWords(matrix, rowSpans, colSpans) {
  return meanRows(sumColumns(matrix, colSpans), rowSpans);
}

/** piece index -> index of the word it belongs to. */
export function wordOfPiece(words, n = words.length ? words[words.length - 1].end : 0) {
  const out = new Array(n).fill(-1);
  words.forEach((w, k) => {
    for (let i = w.start; i < Math.min(w.end, n); i += 1) out[i] = k;
  });
  return out;
}

/** One side's words as sent, or one word per piece for a response without words. */
export function wordsOf(result, side) {
  const words = result[`${side}_words`];
  if (Array.isArray(words) && words.length) return words;
  return (result[`${side}_tokens`] || []).map((t, i) => ({ word: t, start: i, end: i + 1 }));
}

/** Whether the words differ from the pieces (a word of several pieces, or a piece spelled
 * unlike its word, as SentencePiece's "▁you"): only then is there a choice to make. */
export function wordsDiffer(result) {
  return ["source", "target"].some((side) => {
    const words = result?.[`${side}_words`];
    const tokens = result?.[`${side}_tokens`] || [];
    if (!Array.isArray(words) || !words.length) return false;
    return words.length !== tokens.length || words.some((w, i) => w.end - w.start !== 1 || w.word !== tokens[w.start] || w.start !== i);
  });
}

/** The source piece positions of these source word indices (the end token included). */
export function piecesOfWords(words, indices) {
  const out = [];
  for (const k of indices) {
    const w = words[k];
    if (w) for (let i = w.start; i < w.end; i += 1) out.push(i);
  }
  return out.sort((a, b) => a - b);
}

/**
 * A response's cross-attention (or another (target pieces, source pieces) matrix of it) in
 * a unit: {matrix, rows, cols, rowWords, colWords, problem}. Words: `matrix` aggregated by
 * the rule above, or `result.word_attention` when `matrix` is `result.attention` (sent
 * ready); pieces: as given. rows and cols are the labels; problem: why it cannot be drawn.
 */
export function crossIn(result, matrix, unit) {
  if (unit !== "words") return { matrix, rows: result.target_tokens, cols: result.source_tokens, problem: null };
  const src = result.source_words;
  const tgt = result.target_words;
  const problem = checkSpans(src, result.source_tokens, "source") || checkSpans(tgt, result.target_tokens, "target");
  if (problem) return { matrix: null, rows: [], cols: [], problem };
  const sent = matrix === result.attention && Array.isArray(result.word_attention) ? result.word_attention : null;
  return {
    matrix: matrix ? sent || toWords(matrix, spansOf(tgt), spansOf(src)) : null,
    rows: tgt.map((w) => w.word),
    cols: src.map((w) => w.word),
    rowWords: tgt,
    colWords: src,
    problem: null,
  };
}

/** The decoder's inputs as words: "<s>", then the target words shifted one place (the
 * decoder reads what it wrote one step later), cut to the `n` inputs it read. */
export function decoderInputWords(targetWords, n) {
  const out = [{ word: "<s>", start: 0, end: 1 }];
  for (const w of targetWords) {
    const start = w.start + 1;
    const end = Math.min(w.end + 1, n);
    if (start < end) out.push({ word: w.word, start, end });
  }
  return out;
}

// -- the Words / Pieces choice, one for the whole page --------------------------------------

function stored() {
  try {
    const value = sessionStorage.getItem(STORE);
    return UNITS.includes(value) ? value : "words";
  } catch {
    return "words"; // storage refused (privacy settings): words, as on a first visit
  }
}

let current = stored();
const listeners = new Set();

/** "words" (the default) or "pieces". */
export function getUnit() {
  return current;
}

export function setUnit(unit) {
  if (!UNITS.includes(unit) || unit === current) return;
  current = unit;
  try {
    sessionStorage.setItem(STORE, unit);
  } catch {
    // remembered for this page only
  }
  for (const listener of listeners) listener(unit);
}

/** Call `listener(unit)` whenever the choice changes. */
export function onUnit(listener) {
  listeners.add(listener);
}

/** The unit a response is drawn in: pieces when its words are its pieces. */
export function unitFor(result) {
  return wordsDiffer(result) ? current : "pieces";
}

/**
 * A "Words / Pieces" switch in the page (markup: the unit_toggle macro, two radio inputs):
 * every switch shows the page's one choice and changes it.
 */
export class UnitToggle {
  constructor(root) {
    this.root = root;
    this.inputs = [...root.querySelectorAll("input[type=radio]")];
    for (const input of this.inputs) {
      input.addEventListener("change", () => {
        if (input.checked) setUnit(input.value);
      });
    }
    onUnit(() => this.sync());
    this.sync();
  }

  sync() {
    for (const input of this.inputs) input.checked = input.value === current;
    this.root.dataset.unit = current;
  }

  /** Shown only where the words differ from the pieces. */
  show(visible) {
    this.root.hidden = !visible;
  }
}
