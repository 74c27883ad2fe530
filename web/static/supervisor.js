// The supervisor view: /supervisor?centre=C&window=W
// Every figure of the centre (SPEC section 3) in a table by scope and key for one window,
// sortable; the cost split as a bar per row; the drivers (occupancy, AHT, abandons) beside
// the cost; a row's cost-per-call trend for the day with its band (kept in the browser
// since the page loaded); the centre's alerts with Acknowledge and Snooze (supervisor-alerts.js).
import { centreZone, chooseCentre } from "./centres.js";
import { Live } from "./connection.js";
import { el, h, say } from "./dom.js";
import {
  DASH, band, bigMoney, clock, count, duration, money, percent, windowSeconds,
} from "./format.js";
import { Freshness } from "./freshness.js";
import { History } from "./history.js";
import { params, viewsNav } from "./nav.js";
import { SCOPES, byScopeAndKey } from "./scopes.js";
import { statusChip } from "./status.js";
import { setupAlerts } from "./supervisor-alerts.js";
import { drawTrend } from "./trend.js";

const DAY = 24 * 3600000;
const STATUS_ORDER = { above: 0, below: 1, ok: 2, insufficient: 3 };

let centre = params.get("centre");
let tz = "";
let selectedWindow = params.get("window") || "15m";
let asOf = null;
let figures = []; // the latest message's figures, every scope and window
const trends = new History({ stepMs: 15000, keepMs: DAY });
let sort = { col: null, dir: 1 };
let selected = null; // "scope/key/window" of the row whose trend is open
const rowCache = new Map(); // row id -> {tr, cells}

const freshness = new Freshness({ badge: el("connection"), stale: el("stale") });

const idOf = (f) => f.scope + "/" + f.key + "/" + f.window;

// ------------------------------------------------------------------------ the table

function splitBar(f) {
  const total = f.total;
  if (!Number.isFinite(total) || total <= 0) return h("div", { class: "split split-empty" }, DASH);
  const parts = [["labour", f.labour], ["overhead", f.overhead], ["telephony", f.telephony]];
  const title = parts.map(([n, v]) => `${n} ${bigMoney(v)} (${Math.round((100 * v) / total)}%)`).join(" \u00B7 ");
  return h("div", { class: "split", title, role: "img", "aria-label": title },
    ...parts.map(([n, v]) => h("span", {
      class: "seg seg-" + n, dataset: { part: n },
      style: `width: ${((100 * Math.max(0, v)) / total).toFixed(3)}%`,
    })));
}

// id, header, sort value, cell content, class, title
const COLUMNS = [
  { id: "scope", label: "Scope", value: (f) => SCOPES.indexOf(f.scope), text: (f) => f.scope },
  { id: "key", label: "Key", value: (f) => f.key, text: (f) => f.key, cls: "key" },
  { id: "cost_per_call", label: "Cost / call", value: (f) => f.cost_per_call, text: (f) => money(f.cost_per_call), cls: "num cpc", title: "total / handled" },
  { id: "status", label: "Status", value: (f) => STATUS_ORDER[f.status], node: (f) => statusChip(f.status), title: "against the band" },
  { id: "band", label: "Band", value: (f) => f.low, text: (f) => band(f.low, f.high), cls: "num band" },
  { id: "occupancy", label: "Occupancy", value: (f) => f.occupancy, text: (f) => percent(f.occupancy), cls: "num driver", title: "handle time / staffed time (the centre's own)" },
  { id: "aht_s", label: "AHT", value: (f) => f.aht_s, text: (f) => duration(f.aht_s), cls: "num driver", title: "average handle time: handle time / handled" },
  { id: "abandoned", label: "Abandoned", value: (f) => f.abandoned, text: (f) => count(f.abandoned), cls: "num driver" },
  { id: "split", label: "Cost split", value: (f) => (f.total > 0 ? f.labour / f.total : null), node: splitBar, cls: "split-cell", title: "the cost split; sorts by labour's share" },
  { id: "total", label: "Total", value: (f) => f.total, text: (f) => bigMoney(f.total), cls: "num" },
  { id: "labour", label: "Labour", value: (f) => f.labour, text: (f) => bigMoney(f.labour), cls: "num" },
  { id: "overhead", label: "Overhead", value: (f) => f.overhead, text: (f) => bigMoney(f.overhead), cls: "num" },
  { id: "telephony", label: "Telephony", value: (f) => f.telephony, text: (f) => bigMoney(f.telephony), cls: "num" },
  { id: "offered", label: "Offered", value: (f) => f.offered, text: (f) => count(f.offered), cls: "num" },
  { id: "handled", label: "Handled", value: (f) => f.handled, text: (f) => count(f.handled), cls: "num" },
  { id: "conversions", label: "Conver\u00ADsions", value: (f) => f.conversions, text: (f) => count(f.conversions), cls: "num" },
  { id: "cost_per_sale", label: "Cost / sale", value: (f) => f.cost_per_sale, text: (f) => money(f.cost_per_sale), cls: "num", title: "total / conversions" },
  { id: "handle_s", label: "Handle time", value: (f) => f.handle_s, text: (f) => duration(f.handle_s), cls: "num", title: "talk + wrap" },
  { id: "staffed_s", label: "Staffed", value: (f) => f.staffed_s, text: (f) => duration(f.staffed_s), cls: "num", title: "agents' logged-in time (the centre's own)" },
];

function buildHeader() {
  const row = document.querySelector("#figures thead tr");
  row.replaceChildren(...COLUMNS.map((c) => h("th", {
    scope: "col", class: c.cls ? c.cls.split(" ").filter((x) => x === "num").join(" ") : null,
    dataset: { col: c.id }, title: c.title || null, "aria-sort": "none",
  }, h("button", { type: "button", class: "sort", onclick: () => sortBy(c.id) }, c.label))));
}

function sortBy(col) {
  sort = sort.col === col ? { col, dir: -sort.dir } : { col, dir: 1 };
  renderTable();
}

function compare(a, b) {
  if (sort.col) {
    const c = COLUMNS.find((x) => x.id === sort.col);
    const va = c.value(a), vb = c.value(b);
    const na = va === null || va === undefined || Number.isNaN(va);
    const nb = vb === null || vb === undefined || Number.isNaN(vb);
    if (na !== nb) return na ? 1 : -1; // no value: last, either way
    if (!na && va !== vb) {
      const d = typeof va === "string" ? va.localeCompare(vb) : va - vb;
      if (d) return d * sort.dir;
    }
  }
  return byScopeAndKey(a, b);
}

function scopesShown() {
  return new Set([...document.querySelectorAll("input[name=scope]:checked")].map((i) => i.value));
}

function renderWindows() {
  const sel = el("window");
  const windows = [...new Set(figures.map((f) => f.window).concat([selectedWindow]))]
    .sort((a, b) => windowSeconds(a) - windowSeconds(b));
  const now = [...sel.options].map((o) => o.value).join("|");
  if (now === windows.join("|")) return;
  sel.replaceChildren(...windows.map((w) => h("option", { value: w, selected: w === selectedWindow }, w)));
}

function renderTable() {
  for (const th of document.querySelectorAll("#figures thead th")) {
    th.setAttribute("aria-sort", th.dataset.col !== sort.col ? "none" : sort.dir > 0 ? "ascending" : "descending");
  }
  const shown = scopesShown();
  const rows = figures.filter((f) => f.window === selectedWindow && shown.has(f.scope)).sort(compare);
  const tbody = document.querySelector("#figures tbody");
  const seen = new Set();
  const trs = rows.map((f) => {
    const id = idOf(f);
    seen.add(id);
    let row = rowCache.get(id);
    if (!row) {
      row = { tr: h("tr", {
        tabindex: "0", dataset: { scope: f.scope, key: f.key, window: f.window },
        onclick: () => openTrend(id),
        onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openTrend(id); } },
      }), cells: {} };
      for (const c of COLUMNS) {
        row.cells[c.id] = h("td", { class: c.cls || null, dataset: { col: c.id } });
        row.tr.append(row.cells[c.id]);
      }
      rowCache.set(id, row);
    }
    row.tr.className = "scope-" + f.scope + (id === selected ? " selected" : "");
    row.tr.dataset.status = f.status || "";
    row.tr.setAttribute("aria-selected", id === selected ? "true" : "false");
    for (const c of COLUMNS) {
      const td = row.cells[c.id];
      if (c.node) td.replaceChildren(c.node(f));
      else {
        const text = c.text(f);
        if (td.textContent !== text) td.textContent = text;
      }
      if (c.id === "cost_per_call") td.className = (c.cls || "") + " st-" + (f.status || "none");
    }
    return row.tr;
  });
  for (const id of [...rowCache.keys()]) if (!seen.has(id)) rowCache.delete(id);
  const current = [...tbody.children];
  if (current.length !== trs.length || current.some((tr, i) => tr !== trs[i])) tbody.replaceChildren(...trs);
  if (!rows.length) {
    tbody.replaceChildren(h("tr", {}, h("td", { colspan: COLUMNS.length, class: "muted empty" },
      asOf === null ? `No figures for ${centre} yet; waiting.` : `No ${selectedWindow} figures for these scopes.`)));
  }
}

// ------------------------------------------------------------------------ the trend

function openTrend(id) {
  selected = id;
  el("trend").hidden = false;
  renderTable();
  renderTrend();
  el("trend").scrollIntoView({ block: "nearest" });
}

function renderTrend() {
  if (!selected) return;
  const [scope, key, window] = selected.split("/");
  el("trend-title").textContent = `${key} \u00B7 ${scope} \u00B7 ${window}: cost per call`;
  const points = trends.get(selected);
  el("trend-note").textContent = points.length
    ? `since ${clock(points[0].t, tz)}, kept in this browser since the page loaded (the band shaded)`
    : "no point yet";
  const svg = el("trend-chart");
  const width = Math.max(300, Math.round(svg.getBoundingClientRect().width));
  drawTrend(svg, points, {
    width, height: 280, axes: true, tz, dots: points.length < 120,
    pad: { l: 52, r: 56, t: 12, b: 30 },
  });
  svg.dataset.points = String(points.length);
}

// ------------------------------------------------------------------------ figures

function onFigures(msg) {
  if (msg.type === "error") { say("Gateway: " + msg.message); return; }
  if (msg.type !== "snapshot" && msg.type !== "update") return;
  if (msg.as_of !== null && msg.as_of !== undefined) {
    asOf = msg.as_of;
    for (const f of msg.figures) trends.add(idOf(f), asOf, f.cost_per_call, f.low, f.high);
  }
  figures = msg.figures;
  freshness.fresh(asOf);
  el("as-of").textContent = clock(asOf, tz);
  renderWindows();
  renderTable();
  renderTrend();
  say("");
}

// ------------------------------------------------------------------------ start

function keepUrl() {
  const q = new URLSearchParams(location.search);
  q.set("centre", centre);
  q.set("window", selectedWindow);
  window.history.replaceState(null, "", location.pathname + "?" + q.toString());
}

async function start() {
  centre = await chooseCentre(centre, say);
  if (!centre) {
    setTimeout(start, 3000);
    return;
  }
  tz = await centreZone(centre);
  el("centre").textContent = centre;
  document.title = `${centre}: supervisor`;
  viewsNav(el("views"), centre, "supervisor");
  el("all-alerts").href = el("views").querySelector("a:nth-child(3)").href;
  keepUrl();
  buildHeader();
  renderTable();
  el("window").addEventListener("change", () => {
    selectedWindow = el("window").value;
    keepUrl();
    renderTable();
  });
  for (const box of document.querySelectorAll("input[name=scope]")) box.addEventListener("change", renderTable);
  el("trend-close").addEventListener("click", () => {
    selected = null;
    el("trend").hidden = true;
    renderTable();
  });
  window.addEventListener("resize", renderTrend);

  const live = new Live({ onState: (state, detail) => freshness.state(state, detail) });
  const onAlerts = setupAlerts({ centre, tz, connection: live });
  live.subscribe({ channel: "figures", centre, sub: "figures" }, onFigures);
  live.subscribe({ channel: "alerts", centre, sub: "alerts" }, onAlerts);
  live.start();
  window.callcostLive = live;
}

el("as-of").textContent = DASH;
start();
