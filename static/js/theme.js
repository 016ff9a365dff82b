// Colours and fonts of the charts, read from the CSS variables of style.css.

let cached = null;

export function theme() {
  if (cached) return cached;
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue(name).trim();
  cached = {
    text: v("--text"),
    muted: v("--muted"),
    border: v("--border"),
    surface: v("--surface"),
    surface2: v("--surface-2"),
    accent: v("--accent"),
    mark: v("--mark"),
    danger: v("--danger"),
    font: v("--font"),
    scale: [
      [0, v("--scale-0")],
      [0.15, v("--scale-1")],
      [0.4, v("--scale-2")],
      [0.7, v("--scale-3")],
      [1, v("--scale-4")],
    ],
  };
  return cached;
}

window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  cached = null;
});

/** The parts of a Plotly layout every chart shares. */
export function baseLayout(extra = {}) {
  const th = theme();
  return {
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { family: th.font, color: th.text, size: 13 },
    hoverlabel: { font: { family: th.font, size: 13 } },
    ...extra,
  };
}
