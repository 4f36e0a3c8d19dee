// The KL of each latent layer as an SVG bar chart, layers top-down, grouped by resolution.

import { el, resolutionName, svg } from "./ui.js";

const W = 640;
const H = 260;
const M = { left: 46, right: 8, top: 10, bottom: 42 };

// Runs of consecutive layers at one resolution: [{resolution, start, end}].
export function groups(resolutions) {
  const out = [];
  resolutions.forEach((r, i) => {
    if (out.length && out.at(-1).resolution === r) out.at(-1).end = i + 1;
    else out.push({ resolution: r, start: i, end: i + 1 });
  });
  return out;
}

function niceMax(x) {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  return [1, 2, 5, 10].map((m) => m * p).find((v) => v >= x);
}

export function klChart(bits, resolutions) {
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const top = niceMax(Math.max(...bits));
  const step = plotW / bits.length;
  const y = (v) => M.top + plotH - (v / top) * plotH;
  const parts = [svg("title", {}, "KL of each latent layer in bits, top-down, grouped by resolution")];
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    parts.push(svg("line", { class: "axis", x1: M.left - 4, x2: M.left, y1: y(v), y2: y(v) }));
    parts.push(svg("text", { x: M.left - 6, y: y(v) + 4, "text-anchor": "end" }, String(+v.toPrecision(3))));
  }
  parts.push(svg("line", { class: "axis", x1: M.left, x2: M.left, y1: M.top, y2: M.top + plotH }));
  parts.push(svg("line", { class: "axis", x1: M.left, x2: W - M.right, y1: M.top + plotH, y2: M.top + plotH }));
  parts.push(svg("text", { x: 12, y: M.top + plotH / 2, transform: `rotate(-90 12 ${M.top + plotH / 2})`, "text-anchor": "middle" }, "bits"));
  groups(resolutions).forEach((g, gi) => {
    for (let i = g.start; i < g.end; i++) {
      const x = M.left + i * step + step * 0.1;
      const bar = svg("rect", { class: `bar bar${gi % 2}`, x, y: y(bits[i]), width: step * 0.8, height: M.top + plotH - y(bits[i]) });
      bar.append(svg("title", {}, `layer ${i} (${resolutionName(g.resolution)}): ${bits[i].toFixed(2)} bits`));
      parts.push(bar);
    }
    const x0 = M.left + g.start * step;
    const x1 = M.left + g.end * step;
    if (g.start > 0) parts.push(svg("line", { class: "sep", x1: x0, x2: x0, y1: M.top + plotH, y2: M.top + plotH + 30 }));
    parts.push(svg("text", { x: (x0 + x1) / 2, y: M.top + plotH + 16, "text-anchor": "middle" }, resolutionName(g.resolution)));
  });
  parts.push(svg("text", { x: M.left + plotW / 2, y: H - 4, "text-anchor": "middle" }, "latent layers, top-down, by resolution"));
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "KL of each latent layer in bits, grouped by resolution" }, ...parts);
}

// Rows of a table: per resolution, its layers, their bits and share of the total.
export function resolutionRows(bits, resolutions) {
  const total = bits.reduce((a, b) => a + b, 0);
  return [...new Set(resolutions)].map((r) => {
    const mine = bits.filter((_, i) => resolutions[i] === r);
    const sum = mine.reduce((a, b) => a + b, 0);
    return el(
      "tr",
      {},
      el("th", { scope: "row" }, resolutionName(r)),
      el("td", {}, String(mine.length)),
      el("td", {}, sum.toFixed(1)),
      el("td", {}, `${total > 0 ? ((100 * sum) / total).toFixed(0) : 0}%`),
    );
  });
}
