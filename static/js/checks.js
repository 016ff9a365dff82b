// Shapes are checked before anything is drawn: rows = target tokens, columns = source
// tokens, every row a distribution (non-negative, sums to 1).

const TOLERANCE = 1e-3;

/** null when `matrix` can be drawn against these tokens, else what is wrong. */
export function checkAttention(matrix, targetTokens, sourceTokens, what = "attention") {
  if (!Array.isArray(targetTokens) || !Array.isArray(sourceTokens)) {
    return `${what}: the tokens are missing from the response`;
  }
  if (!Array.isArray(matrix)) return `${what} is missing from the response`;
  if (matrix.length !== targetTokens.length) {
    return `${what} has ${matrix.length} rows but the translation has ${targetTokens.length} target tokens`;
  }
  for (let t = 0; t < matrix.length; t += 1) {
    const row = matrix[t];
    if (!Array.isArray(row) || row.length !== sourceTokens.length) {
      const got = Array.isArray(row) ? row.length : "no";
      return `row ${t + 1} (“${targetTokens[t]}”) of ${what} has ${got} columns but the source has ${sourceTokens.length} tokens`;
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

/** The head matrices of a response: [layer][head] -> matrix, whatever the nesting. */
export function headLayers(heads) {
  if (!Array.isArray(heads) || !heads.length) return null;
  const depth = (x) => (Array.isArray(x) ? 1 + depth(x[0]) : 0);
  const d = depth(heads);
  if (d === 3) return [heads]; // (head, target, source)
  if (d === 4) return heads; // (layer, head, target, source)
  return null;
}

export function meanMatrix(matrices) {
  const n = matrices.length;
  return matrices[0].map((row, t) =>
    row.map((_, s) => matrices.reduce((acc, m) => acc + m[t][s], 0) / n),
  );
}
