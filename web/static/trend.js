// Drawing a cost-per-call trend into an SVG: the line over its band, with axes for the large chart.

import { hhmm, money } from "./format.js";

const SVGNS = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs) {
  const n = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  return n;
}

/**
 * Draw `points` ([{t, v, low, high}]) into `svg` as a line over the band (shaded).
 * opts: {width, height, from, to, pad: {l, r, t, b}, axes: bool, tz, dots: bool}
 * The x range is [from, to] (default: the points' own); the y range covers the points
 * and the band. Returns the scales, for tests and labels.
 */
export function drawTrend(svg, points, opts) {
  const W = opts.width, H = opts.height;
  const pad = Object.assign({ l: 0, r: 0, t: 4, b: 4 }, opts.pad || {});
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const pts = points.filter((p) => p.t !== undefined);
  if (!pts.length) {
    if (opts.axes) {
      const t = svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "tr-empty" });
      t.textContent = "waiting for figures";
      svg.append(t);
    }
    return null;
  }
  const t1 = opts.to ?? pts[pts.length - 1].t;
  let t0 = opts.from ?? pts[0].t;
  if (t1 - t0 < 60000) t0 = t1 - 60000; // at least a minute wide
  const visible = pts.filter((p) => p.t >= t0);
  const values = [];
  for (const p of visible) {
    if (p.v !== null) values.push(p.v);
    if (Number.isFinite(p.low)) values.push(p.low);
    if (Number.isFinite(p.high)) values.push(p.high);
  }
  let y0 = Math.min(...values), y1 = Math.max(...values);
  if (opts.robust) {
    // a sparkline: a few wild values (the first calls of the day) must not flatten the
    // rest; the range is the band and the 5th to 95th percentile, the rest at the edge
    const vs = visible.filter((p) => p.v !== null).map((p) => p.v).sort((a, b) => a - b);
    const last = visible[visible.length - 1];
    if (vs.length) {
      const q = (k) => vs[Math.min(vs.length - 1, Math.max(0, Math.round(k * (vs.length - 1))))];
      const edges = [q(0.05), q(0.95)];
      if (last && Number.isFinite(last.low)) edges.push(last.low, last.high);
      if (last && last.v !== null) edges.push(last.v);
      y0 = Math.min(...edges);
      y1 = Math.max(...edges);
    }
  }
  if (!Number.isFinite(y0)) { y0 = 0; y1 = 1; }
  if (y1 - y0 < 1e-9) { y0 -= 1; y1 += 1; }
  const span = y1 - y0;
  y0 = Math.max(0, y0 - span * 0.08);
  y1 = y1 + span * 0.08;
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (W - pad.l - pad.r);
  const y = (v) => pad.t + (1 - (Math.min(y1, Math.max(y0, v)) - y0) / (y1 - y0)) * (H - pad.t - pad.b);
  const f = (n) => n.toFixed(1);

  // the band: a step area following each point's low/high
  const banded = visible.filter((p) => Number.isFinite(p.low) && Number.isFinite(p.high));
  if (banded.length) {
    const upper = [], lower = [];
    banded.forEach((p, i) => {
      const xa = i === 0 ? pad.l : x(p.t);
      const xb = i + 1 < banded.length ? x(banded[i + 1].t) : W - pad.r;
      upper.push(`${f(xa)},${f(y(p.high))}`, `${f(xb)},${f(y(p.high))}`);
      lower.push(`${f(xa)},${f(y(p.low))}`, `${f(xb)},${f(y(p.low))}`);
    });
    svg.append(svgEl("polygon", { class: "tr-band", points: upper.concat(lower.reverse()).join(" ") }));
    const last = banded[banded.length - 1];
    for (const [v, cls] of [[last.high, "tr-high"], [last.low, "tr-low"]]) {
      svg.append(svgEl("line", { class: "tr-edge " + cls, x1: pad.l, x2: W - pad.r, y1: f(y(v)), y2: f(y(v)) }));
    }
    if (opts.axes) {
      for (const [v, cls] of [[last.high, "tr-high"], [last.low, "tr-low"]]) {
        const t = svgEl("text", { x: W - pad.r + 6, y: f(y(v) + 5), class: "tr-label " + cls });
        t.textContent = money(v);
        svg.append(t);
      }
    }
  }

  // the line, broken where cost per call is null (no calls handled)
  let d = "";
  let pen = false;
  for (const p of visible) {
    if (p.v === null) { pen = false; continue; }
    d += (pen ? "L" : "M") + f(x(p.t)) + "," + f(y(p.v));
    pen = true;
  }
  if (d) svg.append(svgEl("path", { class: "tr-line", d }));
  const lastV = [...visible].reverse().find((p) => p.v !== null);
  if (lastV) svg.append(svgEl("circle", { class: "tr-dot", cx: f(x(lastV.t)), cy: f(y(lastV.v)), r: opts.dot || 3 }));
  if (opts.dots) {
    for (const p of visible) {
      if (p.v !== null) svg.append(svgEl("circle", { class: "tr-pt", cx: f(x(p.t)), cy: f(y(p.v)), r: 1.6 }));
    }
  }

  if (opts.axes) {
    // x: ticks at round times; y: a few round values
    const base = svgEl("line", { class: "tr-axis", x1: pad.l, x2: W - pad.r, y1: H - pad.b, y2: H - pad.b });
    svg.append(base);
    const spanMs = t1 - t0;
    const steps = [60e3, 120e3, 300e3, 600e3, 900e3, 1800e3, 3600e3, 7200e3, 10800e3, 21600e3];
    const step = steps.find((s) => spanMs / s <= 8) || 43200e3;
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const tx = x(t);
      svg.append(svgEl("line", { class: "tr-tick", x1: f(tx), x2: f(tx), y1: H - pad.b, y2: H - pad.b + 5 }));
      const label = svgEl("text", { x: f(tx), y: H - pad.b + 20, "text-anchor": "middle", class: "tr-label" });
      label.textContent = hhmm(t, opts.tz);
      svg.append(label);
    }
    const ystep = niceStep((y1 - y0) / 5);
    for (let v = Math.ceil(y0 / ystep) * ystep; v <= y1; v += ystep) {
      svg.append(svgEl("line", { class: "tr-grid", x1: pad.l, x2: W - pad.r, y1: f(y(v)), y2: f(y(v)) }));
      const label = svgEl("text", { x: pad.l - 6, y: f(y(v) + 5), "text-anchor": "end", class: "tr-label" });
      label.textContent = v.toFixed(ystep < 1 ? 2 : 0);
      svg.append(label);
    }
  }
  return { x, y, t0, t1, y0, y1 };
}

function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}
