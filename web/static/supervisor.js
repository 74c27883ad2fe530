// The supervisor view: /supervisor?centre=C&window=W
// Every figure of the centre (SPEC section 3) in a table by scope and key for one window,
// sortable; the cost split as a bar per row; the drivers (occupancy, AHT, abandons) beside
// the cost; a row's cost-per-call trend for the day with its band (kept in the browser
// since the page loaded); the centre's alerts with Acknowledge and Snooze.
import {
  DASH, Freshness, History, Live, SCOPES, band, bigMoney, centreZone, clock, count, dateClock,
  chooseCentre, directionChip, drawTrend, duration, h, money, params, percent, rememberedName,
  statusChip, viewsNav, windowSeconds,
} from "/static/common.js";

const el = (id) => document.getElementById(id);
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
let live = null;
const rowCache = new Map(); // row id -> {tr, cells}

const freshness = new Freshness({ badge: el("connection"), stale: el("stale") });

function say(text) {
  el("message").textContent = text || "";
  el("message").hidden = !text;
}

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

function defaultOrder(a, b) {
  return (SCOPES.indexOf(a.scope) - SCOPES.indexOf(b.scope)) || a.key.localeCompare(b.key);
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
  return defaultOrder(a, b);
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

// ------------------------------------------------------------------------ alerts

const alerts = new Map(); // id -> alert with ack and snooze
const snoozes = new Map(); // "rule/key" -> snooze record (this centre's)
const acks = new Map(); // id -> ack: a gateway that has just started may send it first

function snoozeOf(a) {
  const s = snoozes.get(a.rule + "/" + a.key);
  return s && s.until > Date.now() ? s : null;
}

function renderAlerts() {
  const list = [...alerts.values()].sort((a, b) => a.at - b.at);
  el("alert-count").textContent = String(list.length);
  el("alert-count").classList.toggle("hot", list.length > 0);
  el("no-alerts").hidden = list.length > 0;
  el("alert-list").replaceChildren(...list.map((a) => {
    const snooze = snoozeOf(a);
    return h("li", { class: "alert" + (a.ack ? " acked" : ""), dataset: { id: a.id } },
      h("div", { class: "a-head" }, directionChip(a.direction), " ",
        h("b", { class: "a-key" }, a.scope === "centre" ? "centre " + a.key : a.key), " ",
        h("span", { class: "muted" }, `${a.rule} \u00B7 ${a.window}`)),
      h("div", { class: "a-body" },
        `${money(a.value)} (band ${band(a.low, a.high)}) with ${count(a.handled)} calls; since ${clock(a.since, tz)}`),
      a.ack
        ? h("div", { class: "a-ack" }, "\u2714 Acknowledged by ", h("b", { class: "a-ack-by" }, a.ack.by),
          ` ${dateClock(a.ack.at, tz)}`, a.ack.note ? h("span", { class: "a-note" }, ": " + a.ack.note) : null)
        : null,
      snooze ? h("div", { class: "a-snooze" }, `\u23F8 Snoozed until ${dateClock(snooze.until, tz)} by ${snooze.by}`) : null,
      h("div", { class: "a-actions" },
        h("button", { type: "button", class: "btn ack", onclick: () => openAck(a) }, a.ack ? "Acknowledge again" : "Acknowledge"),
        snooze
          ? h("button", { type: "button", class: "btn unsnooze", onclick: () => openSnooze(a, true) }, "Unsnooze")
          : h("button", { type: "button", class: "btn snooze", onclick: () => openSnooze(a, false) }, "Snooze")));
  }));
  const active = [...snoozes.values()].filter((s) => s.until > Date.now());
  el("no-snoozes").hidden = active.length > 0;
  el("snooze-list").replaceChildren(...active.map((s) => h("li", { dataset: { rule: s.rule, key: s.key } },
    h("b", {}, s.key), ` ${s.rule} until ${dateClock(s.until, tz)} by ${s.by}`, s.note ? `: ${s.note}` : "", " ",
    h("button", { type: "button", class: "btn unsnooze", onclick: () => openSnooze(s, true) }, "Unsnooze"))));
}

function onAlerts(msg) {
  if (msg.type === "snapshot") {
    alerts.clear();
    snoozes.clear();
    for (const s of msg.snoozes || []) snoozes.set(s.rule + "/" + s.key, s);
    for (const a of msg.alerts) {
      alerts.set(a.id, a);
      if (a.ack) acks.set(a.id, a.ack);
    }
  } else if (msg.type === "alert") {
    if (msg.state === "firing") alerts.set(msg.id, Object.assign({ ack: acks.get(msg.id) || null, snooze: null }, msg));
    else alerts.delete(msg.id);
  } else if (msg.type === "ack") {
    acks.set(msg.id, msg);
    const a = alerts.get(msg.id);
    if (a) a.ack = msg;
  } else if (msg.type === "snooze") {
    snoozes.set(msg.rule + "/" + msg.key, msg);
  } else {
    return;
  }
  renderAlerts();
}

// ------------------------------------------------------------------------ dialogs

let dialogTarget = null;

function showError(id, err) {
  el(id).textContent = err ? "Not done: " + err.message : "";
  el(id).hidden = !err;
}

function openAck(a) {
  dialogTarget = a;
  el("ack-what").textContent = `${a.rule}: ${a.key} ${a.direction} the band since ${clock(a.since, tz)}`;
  el("ack-by").value = rememberedName.get();
  el("ack-note").value = "";
  showError("ack-error", null);
  el("ack-dialog").showModal();
  (el("ack-by").value ? el("ack-note") : el("ack-by")).focus();
}

function openSnooze(target, cancel) {
  dialogTarget = { target, cancel };
  el("snooze-dialog").querySelector("h2").textContent = cancel ? "Unsnooze" : "Snooze";
  el("snooze-what").textContent = `${target.rule} for ${target.key}` +
    (cancel ? ": its webhooks speak again" : ": keep its webhooks quiet");
  el("snooze-for").closest("form").querySelector("label[for=snooze-for]").hidden = cancel;
  el("snooze-for").hidden = cancel;
  el("snooze-submit").textContent = cancel ? "Unsnooze" : "Snooze";
  el("snooze-by").value = rememberedName.get();
  el("snooze-note").value = "";
  showError("snooze-error", null);
  el("snooze-dialog").showModal();
}

async function submitAck(event) {
  event.preventDefault();
  const by = el("ack-by").value.trim();
  const note = el("ack-note").value.trim();
  if (!by) { el("ack-by").focus(); return; }
  el("ack-submit").disabled = true;
  try {
    const request = { op: "ack", id: dialogTarget.id, by };
    if (note) request.note = note;
    await live.request(request);
    rememberedName.set(by);
    el("ack-dialog").close();
  } catch (err) {
    showError("ack-error", err);
  } finally {
    el("ack-submit").disabled = false;
  }
}

async function submitSnooze(event) {
  event.preventDefault();
  const by = el("snooze-by").value.trim();
  const note = el("snooze-note").value.trim();
  if (!by) { el("snooze-by").focus(); return; }
  const { target, cancel } = dialogTarget;
  const request = { op: cancel ? "unsnooze" : "snooze", centre, rule: target.rule, key: target.key, by };
  if (!cancel) request.for_s = parseInt(el("snooze-for").value, 10);
  if (note) request.note = note;
  el("snooze-submit").disabled = true;
  try {
    await live.request(request);
    rememberedName.set(by);
    el("snooze-dialog").close();
  } catch (err) {
    showError("snooze-error", err);
  } finally {
    el("snooze-submit").disabled = false;
  }
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
  renderAlerts();
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
  el("ack-form").addEventListener("submit", submitAck);
  el("snooze-form").addEventListener("submit", submitSnooze);
  el("ack-cancel").addEventListener("click", () => el("ack-dialog").close());
  el("snooze-cancel").addEventListener("click", () => el("snooze-dialog").close());
  window.addEventListener("resize", renderTrend);
  setInterval(renderAlerts, 15000); // snoozes run out

  live = new Live({ onState: (state, detail) => freshness.state(state, detail) });
  live.subscribe({ channel: "figures", centre, sub: "figures" }, onFigures);
  live.subscribe({ channel: "alerts", centre, sub: "alerts" }, onAlerts);
  live.start();
  window.callcostLive = live;
}

el("as-of").textContent = DASH;
start();
