// Shapes are checked before anything is drawn: rows = target tokens, columns = source
// tokens, every row a distribution (non-negative, sums to 1). Self-attention matrices have
// their own token lists (encoder: source x source; decoder: target x decoder input).

const TOLERANCE = 1e-3;

const DEFAULT_AXES = {
  rows: (n) => `the translation has ${n} target tokens`,
  cols: (n) => `the source has ${n} tokens`,
};

/**
 * null when `matrix` can be drawn against these tokens, else what is wrong. `axes` words
 * the message for other matrices (self-attention): {rows: n => "...", cols: n => "..."}.
 */
export function checkAttention(matrix, targetTokens, sourceTokens, what = "attention", axes = DEFAULT_AXES) {
  if (!Array.isArray(targetTokens) || !Array.isArray(sourceTokens)) {
    return `${what}: the tokens are missing from the response`;
  }
  if (!Array.isArray(matrix)) return `${what} is missing from the response`;
  if (matrix.length !== targetTokens.length) {
    return `${what} has ${matrix.length} rows but ${axes.rows(targetTokens.length)}`;
  }
  for (let t = 0; t < matrix.length; t += 1) {
    const row = matrix[t];
    if (!Array.isArray(row) || row.length !== sourceTokens.length) {
      const got = Array.isArray(row) ? row.length : "no";
      return `row ${t + 1} (“${targetTokens[t]}”) of ${what} has ${got} columns but ${axes.cols(sourceTokens.length)}`;
    }
    let sum = 0;
    for (let s = 0; s < row.length; s += 1) {
      const w = row[s];
      if (typeof w !== "number" || !Number.isFinite(w) || w < -TOLERANCE || w > 1 + TOLERANCE) {
        return `${what}[${t}][${s}] = ${w} is not a weight between 0 and 1`;
      }
      sum += w;
    }
    if (Math.abs(sum - 1) > TOLERANCE) {
      return `row ${t + 1} (“${targetTokens[t]}”) of ${what} sums to ${sum.toFixed(4)}, not 1`;
    }
  }
  return null;
}

/** The kinds of attention a response's `heads` can hold, in the order they are offered. */
export const KINDS = ["cross", "encoder", "decoder"];
const KIND_KEYS = { cross: "cross", encoder: "encoder_self", decoder: "decoder_self" };

/** A (layer, head, rows, cols) array with `layers` layers of `heads` matrices each? */
function isLayerHeadArray(x, layers, heads) {
  return Array.isArray(x) && x.length === layers && x.every((l) => Array.isArray(l) && l.length === heads);
}

/**
 * The response's `heads` object ({layers, heads, alignment_layer, cross, encoder_self,
 * decoder_self, decoder_tokens}) as {layers, heads, alignmentLayer, kinds: {cross,
 * encoder?, decoder?} -> [layer][head] -> matrix, decoderTokens}; null when the response
 * has none; {problem} when its nesting does not match its own counts. (The matrices' shapes
 * against the tokens are checked when each one is drawn.)
 */
export function headViews(heads) {
  if (!heads || typeof heads !== "object" || Array.isArray(heads)) return null;
  const { layers, heads: count } = heads;
  if (!Number.isInteger(layers) || layers < 1 || !Number.isInteger(count) || count < 1) {
    return { problem: `heads: ${layers} layers of ${count} heads is not a grid of matrices` };
  }
  const kinds = {};
  for (const kind of KINDS) {
    const value = heads[KIND_KEYS[kind]];
    if (value === null || value === undefined) continue;
    if (!isLayerHeadArray(value, layers, count)) {
      return { problem: `heads.${KIND_KEYS[kind]} is not ${layers} layers of ${count} heads` };
    }
    kinds[kind] = value;
  }
  if (!kinds.cross) return { problem: "heads.cross is missing from the response" };
  if (kinds.decoder && !Array.isArray(heads.decoder_tokens)) {
    return { problem: "heads.decoder_self came without its decoder_tokens" };
  }
  const alignmentLayer = Number.isInteger(heads.alignment_layer) && heads.alignment_layer >= 0 && heads.alignment_layer < layers
    ? heads.alignment_layer
    : layers - 1;
  return { layers, heads: count, alignmentLayer, kinds, decoderTokens: heads.decoder_tokens || null };
}

export function meanMatrix(matrices) {
  const n = matrices.length;
  return matrices[0].map((row, t) =>
    row.map((_, s) => matrices.reduce((acc, m) => acc + m[t][s], 0) / n),
  );
}
