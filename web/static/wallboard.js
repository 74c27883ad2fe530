// The wallboard: /wallboard?centre=C&window=W&scope=S
//   centre  default: the first centre that has figures
//   window  default 15m
//   scope   the keys shown besides the centre's own tile: queue (default), channel,
//           direction, several separated by commas, or centre for the centre alone
// One tile per key: cost per call in large type, its band, calls handled, AHT and a trend
// of the last hour, kept in the browser from the updates seen since the page loaded (the
// gateway serves the latest figures only). Colour by status, and a word and a shape.
import { can } from "./access.js";
import { centreZone, chooseCentre } from "./centres.js";
import { Live } from "./connection.js";
import { el, h, say } from "./dom.js";
import { DASH, band, clock, count, duration, money } from "./format.js";
import { Freshness } from "./freshness.js";
import { History } from "./history.js";
import { params } from "./nav.js";
import { byScopeAndKey } from "./scopes.js";
import { statusOf } from "./status.js";
import { drawTrend } from "./trend.js";

const WINDOW = params.get("window") || "15m";
const SHOWN = (params.get("scope") || "queue").split(",").map((s) => s.trim()).filter(Boolean);
const HOUR = 3600000;

let centre = params.get("centre");
let tz = "";
const trends = new History({ stepMs: 10000, keepMs: HOUR });
const tiles = new Map(); // "scope/key" -> {root, parts...}
let layoutKey = "";
const alerts = new Map(); // id -> alert (+ ack, snooze)
const acks = new Map(); // id -> ack
const snoozes = new Map(); // "rule/key" -> snooze (this centre's)
let loadedAt = null;

const freshness = new Freshness({ badge: el("connection"), stale: el("stale") });

// ------------------------------------------------------------------------ tiles

function makeTile(f) {
  const parts = {
    key: h("h2", { class: "tile-key", title: f.scope + " " + f.key }, f.key,
      // several scopes side by side: say which one ("chat" is a queue and a channel)
      f.scope !== "centre" && SHOWN.length > 1 ? h("span", { class: "tile-scope" }, " " + f.scope) : null),
    status: h("span", { class: "tile-status" }),
    cpc: h("span", { class: "cpc" }),
    low: h("b", { class: "band-low" }),
    high: h("b", { class: "band-high" }),
    handled: h("b", { class: "handled" }),
    aht: h("b", { class: "aht" }),
    spark: document.createElementNS("http://www.w3.org/2000/svg", "svg"),
  };
  parts.spark.setAttribute("class", "spark");
  parts.spark.setAttribute("preserveAspectRatio", "none");
  parts.spark.setAttribute("aria-hidden", "true");
  parts.root = h("section", { class: "tile", dataset: { scope: f.scope, key: f.key } },
    h("header", { class: "tile-head" }, parts.key, parts.status),
    h("div", { class: "tile-main" },
      parts.cpc,
      h("div", { class: "tile-band", title: "target band for cost per call" },
        h("span", { class: "band-label" }, "band"), parts.high, parts.low)),
    h("div", { class: "tile-stats" },
      h("span", {}, parts.handled, h("span", { class: "lbl" }, "calls")),
      h("span", {}, h("span", { class: "lbl-first" }, "AHT"), parts.aht)),
    parts.spark);
  return parts;
}

function layout(figures) {
  const ids = figures.map((f) => f.scope + "/" + f.key);
  const key = ids.join("|");
  if (key === layoutKey) return;
  layoutKey = key;
  const main = el("tiles");
  const nodes = figures.map((f) => {
    const id = f.scope + "/" + f.key;
    if (!tiles.has(id)) tiles.set(id, makeTile(f));
    return tiles.get(id).root;
  });
  main.replaceChildren(...nodes);
  // the centre's tile is a column of its own, the others share a grid beside it
  const hasCentre = figures.length && figures[0].scope === "centre";
  const others = figures.length - (hasCentre ? 1 : 0);
  const rows = others <= 2 ? 1 : Math.ceil(Math.sqrt(others / 1.6));
  const cols = Math.max(1, Math.ceil(others / rows));
  if (hasCentre && others) {
    main.style.gridTemplateColumns = `1.25fr repeat(${cols}, 1fr)`;
    main.style.gridTemplateRows = `repeat(${rows}, minmax(0, 1fr))`;
    nodes[0].style.gridRow = `1 / span ${rows}`;
  } else {
    const n = figures.length || 1;
    const r = n <= 3 ? 1 : Math.ceil(Math.sqrt(n / 1.6));
    main.style.gridTemplateColumns = `repeat(${Math.ceil(n / r)}, 1fr)`;
    main.style.gridTemplateRows = `repeat(${r}, minmax(0, 1fr))`;
    if (nodes[0]) nodes[0].style.gridRow = "";
  }
}

function updateTile(f, asOf) {
  const t = tiles.get(f.scope + "/" + f.key);
  const s = statusOf(f.status);
  t.root.className = "tile " + s.cls;
  t.root.dataset.status = f.status || "";
  t.root.title = s.title;
  t.status.replaceChildren(
    h("span", { class: "shape", "aria-hidden": "true" }, s.shape), " ", h("span", { class: "word" }, s.word));
  const text = money(f.cost_per_call);
  if (t.cpc.textContent !== text) {
    t.cpc.textContent = text;
    // the width of the number in em (DejaVu Sans Bold: digits 0.70, the point 0.38), so
    // that the CSS can size it to fit its tile whatever its length
    const em = [...text].reduce((w, c) => w + (c === "." ? 0.38 : 0.7), 0);
    t.cpc.style.setProperty("--w", Math.max(2.5, em).toFixed(2));
  }
  t.high.textContent = money(f.high);
  t.low.textContent = money(f.low);
  t.handled.textContent = count(f.handled);
  t.aht.textContent = duration(f.aht_s);
  const points = trends.get(f.scope + "/" + f.key);
  const box = t.spark.getBoundingClientRect();
  const last = points.length ? points[points.length - 1].t : asOf;
  drawTrend(t.spark, points, {
    width: Math.max(10, Math.round(box.width)), height: Math.max(10, Math.round(box.height)),
    from: Math.max(points.length ? points[0].t : last, last - HOUR), to: last, dot: 5,
    pad: { l: 2, r: 7, t: 7, b: 7 }, robust: true,
  });
}

function render(asOf, figures) {
  freshness.fresh(asOf);
  el("as-of").textContent = clock(asOf, tz);
  if (asOf !== null && asOf !== undefined) el("as-of").dateTime = new Date(asOf).toISOString();
  const shown = figures
    .filter((f) => f.window === WINDOW && (f.scope === "centre" ? true : SHOWN.includes(f.scope)))
    .filter((f) => f.scope !== "centre" || f.key === centre)
    .sort(byScopeAndKey);
  if (asOf !== null && asOf !== undefined) {
    if (loadedAt === null) {
      loadedAt = asOf;
      el("trend-note").textContent = "trend: the last hour, kept since this page loaded (" + clock(asOf, tz) + ")";
    }
    for (const f of shown) trends.add(f.scope + "/" + f.key, asOf, f.cost_per_call, f.low, f.high);
  }
  layout(shown);
  for (const f of shown) updateTile(f, asOf);
  say(shown.length ? "" : `No ${WINDOW} figures for ${centre} yet; waiting.`);
}

// ------------------------------------------------------------------------ alerts banner

function renderBanner() {
  const banner = el("banner");
  const firing = [...alerts.values()].sort((a, b) => a.at - b.at);
  if (!firing.length) {
    banner.hidden = true;
    banner.replaceChildren();
    return;
  }
  const one = firing.length === 1;
  const items = firing.map((a) => {
    const dir = a.direction === "above" ? "\u25B2 ABOVE" : "\u25BC BELOW";
    const since = clock(a.since, tz).replace(/ \S+$/, "").slice(0, 5);
    return h("span", { class: "b-item", dataset: { id: a.id } },
      `${a.scope === "centre" ? "centre" : a.key} ${dir} since ${since}`,
      one ? h("span", { class: "b-acked" }, ` \u00B7 ${a.window} at ${money(a.value)} (band ${band(a.low, a.high)})`) : null,
      a.ack ? h("span", { class: "b-acked" }, " \u00B7 \u2714 " + a.ack.by) : null,
      a.snooze ? h("span", { class: "b-acked" }, " \u00B7 snoozed") : null);
  });
  banner.replaceChildren(
    h("span", { class: "b-title" }, one ? "\u26A0 Alert" : `\u26A0 ${firing.length} alerts`),
    ...items);
  banner.classList.toggle("only-acked", firing.every((a) => a.ack));
  banner.hidden = false;
}

function onAlerts(msg) {
  const snoozeOf = (a) => {
    const s = snoozes.get(a.rule + "/" + a.key);
    return s && s.until > Date.now() ? s : null;
  };
  if (msg.type === "snapshot") {
    alerts.clear();
    for (const s of msg.snoozes || []) snoozes.set(s.rule + "/" + s.key, s);
    for (const a of msg.alerts) {
      alerts.set(a.id, a);
      if (a.ack) acks.set(a.id, a.ack);
    }
  } else if (msg.type === "alert") {
    // a gateway that has just started may send an ack or a snooze before its alert
    if (msg.state === "firing") alerts.set(msg.id, Object.assign({ ack: acks.get(msg.id) || null, snooze: snoozeOf(msg) }, msg));
    else alerts.delete(msg.id);
  } else if (msg.type === "ack") {
    acks.set(msg.id, msg);
    const a = alerts.get(msg.id);
    if (a) a.ack = msg;
  } else if (msg.type === "snooze") {
    snoozes.set(msg.rule + "/" + msg.key, msg);
    for (const a of alerts.values()) a.snooze = snoozeOf(a);
  } else {
    return;
  }
  renderBanner();
}

// ------------------------------------------------------------------------ start

async function start() {
  centre = await chooseCentre(centre, say);
  if (!centre) {
    setTimeout(start, 3000);
    return;
  }
  tz = await centreZone(centre);
  el("centre").textContent = centre;
  el("window").textContent = WINDOW;
  document.title = `${centre}: cost per call (wallboard)`;
  const live = new Live({ onState: (state, detail) => freshness.state(state, detail) });
  live.subscribe({ channel: "figures", centre, window: WINDOW, sub: "figures" }, (msg) => {
    if (msg.type === "error") say("Gateway: " + msg.message);
    else if (msg.type === "snapshot" || msg.type === "update") render(msg.as_of, msg.figures);
  });
  // a wallboard token sees figures only: then no alerts banner
  if (await can("alerts")) live.subscribe({ channel: "alerts", centre, sub: "alerts" }, onAlerts);
  live.start();
  window.callcostLive = live; // for the browser tests and the curious
  window.addEventListener("resize", () => { layoutKey = ""; });
}

el("as-of").textContent = DASH;
start();
