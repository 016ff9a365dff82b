// Small helpers shared by the pages: DOM, formatting, downloads, busy and error states.

/** Create an element: el("p", {class: "x", text: "hi"}, [children]). */
export function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "style") node.style.cssText = value;
    else if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of [].concat(children)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** The JSON a page carries in <script type="application/json" id=...>. */
export function readData(id) {
  const node = document.getElementById(id);
  return node ? JSON.parse(node.textContent) : null;
}

export const range = (n) => Array.from({ length: n }, (_, i) => i);
export const clamp = (x, lo, hi) => Math.max(lo, Math.min(hi, x));

export function fmt(x, digits = 1) {
  return typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "–";
}

export function pct(p) {
  if (!Number.isFinite(p)) return "–";
  if (p >= 0.995) return "100%";
  if (p < 0.001) return "<0.1%";
  return p < 0.1 ? `${(p * 100).toFixed(1)}%` : `${Math.round(p * 100)}%`;
}

export function fmtParams(n) {
  if (!Number.isFinite(n)) return "–";
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
  if (n >= 1e3) return `${Math.round(n / 1e3)} k`;
  return String(n);
}

export const reducedMotion = () => window.matchMedia("(prefers-reduced-motion: reduce)").matches;

/** Save text as a file (no server round trip). */
export function download(filename, text, type = "text/plain") {
  const url = URL.createObjectURL(new Blob([text], { type: `${type};charset=utf-8` }));
  const a = el("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function slug(text, max = 40) {
  const s = text
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-|-$/g, "");
  return s.slice(0, max).replace(/-$/, "") || "sentence";
}

/** A button shows a spinner and is disabled while work runs. */
export function setBusy(button, busy, label) {
  button.disabled = busy;
  button.setAttribute("aria-busy", String(busy));
  const text = button.querySelector(".btn-label");
  if (text && label) text.textContent = label;
}

/** Show a message under the field the user typed in; null clears it. */
export function fieldError(field, box, message) {
  if (message) {
    box.textContent = message;
    box.hidden = false;
    field?.setAttribute("aria-invalid", "true");
  } else {
    box.textContent = "";
    box.hidden = true;
    field?.removeAttribute("aria-invalid");
  }
}

/** Plotly's config: no logo or outside links, image export at 2x. */
export function plotConfig(filename, extra = {}) {
  return {
    displaylogo: false,
    responsive: true,
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"],
    toImageButtonOptions: { filename, scale: 2 },
    ...extra,
  };
}

/** Wait for plotly.js (loaded with defer before the page's module). */
export function plotlyReady() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const poll = () => {
      if (window.Plotly) resolve(window.Plotly);
      else if (performance.now() - started > 15000) reject(new Error("plotly.js did not load"));
      else setTimeout(poll, 25);
    };
    poll();
  });
}

export const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
