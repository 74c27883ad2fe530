// The alerts page: /alerts?centre=C&state=firing|resolved&rule=R
// The alerts firing now (live, over the alerts channel of every centre) and the history
// (GET /api/alerts?state=all, then live), with filters; an opt-in beep and a browser
// notification for every new alert while the page is in the background.
import { getJSON } from "./api.js";
import { allZones } from "./centres.js";
import { Live } from "./connection.js";
import { el, h, say } from "./dom.js";
import { DASH, band, count, dateClock, money } from "./format.js";
import { showConnection } from "./freshness.js";
import { params, viewsNav } from "./nav.js";
import { beep, notifyInBackground, setupOptIn } from "./notify.js";
import { directionChip } from "./status.js";

const MAX_HISTORY_ROWS = 500;

const firing = new Map(); // id -> alert (+ ack, snooze)
const history = new Map(); // "id|state" -> alert message
const acks = new Map(); // id -> ack (an ack may come before its alert from a starting gateway)
const snoozes = new Map(); // "centre/rule/key" -> snooze

function snoozeFor(a) {
  const s = snoozes.get(a.centre + "/" + a.rule + "/" + a.key);
  return s && s.until > Date.now() ? s : null;
}
let arrival = 0; // tie-break for messages with the same `at`
let zones = {}; // centre -> time zone, when the gateway says
let historyLoaded = false;
let liveRef = null;

// ------------------------------------------------------------------------ filters

const filters = { centre: params.get("centre") || "", state: params.get("state") || "", rule: params.get("rule") || "" };

function passes(a, { ignoreState = false } = {}) {
  return (!filters.centre || a.centre === filters.centre)
    && (!filters.rule || a.rule === filters.rule)
    && (ignoreState || !filters.state || a.state === filters.state);
}

function fillSelect(select, values, current) {
  const want = ["", ...[...new Set([...values, ...(current ? [current] : [])])].sort()];
  const have = [...select.options].map((o) => o.value);
  if (have.join("|") === want.join("|")) return;
  select.replaceChildren(...want.map((v) => h("option", { value: v, selected: v === current }, v || "all")));
}

function renderFilters() {
  const all = [...firing.values(), ...history.values()];
  fillSelect(el("f-centre"), all.map((a) => a.centre), filters.centre);
  fillSelect(el("f-rule"), all.map((a) => a.rule), filters.rule);
  el("f-state").value = filters.state;
}

function filtersChanged() {
  filters.centre = el("f-centre").value;
  filters.state = el("f-state").value;
  filters.rule = el("f-rule").value;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(filters)) if (v) q.set(k, v);
  window.history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : ""));
  viewsNav(el("views"), filters.centre, "alerts");
  render();
}

// ------------------------------------------------------------------------ rendering

const tzOf = (a) => params.get("tz") || zones[a.centre] || "";

function ackCell(ack, tz) {
  if (!ack) return h("td", { class: "ack muted" }, DASH);
  return h("td", { class: "ack" }, "\u2714 ", h("b", { class: "ack-by" }, ack.by),
    ack.note ? h("span", { class: "ack-note" }, ": " + ack.note) : null,
    h("span", { class: "muted" }, " " + dateClock(ack.at, tz)));
}

function renderFiring() {
  const rows = [...firing.values()].filter((a) => passes(a, { ignoreState: true })).sort((a, b) => b.at - a.at);
  const show = filters.state !== "resolved";
  el("firing").closest("section").hidden = !show;
  el("firing-count").textContent = String(rows.length);
  el("firing-count").classList.toggle("hot", rows.length > 0);
  el("no-firing").hidden = rows.length > 0;
  el("firing").hidden = rows.length === 0;
  el("firing").tBodies[0].replaceChildren(...rows.map((a) => {
    const tz = tzOf(a);
    const snooze = a.snooze && a.snooze.until > Date.now() ? a.snooze : null;
    return h("tr", { class: a.ack ? "acked" : "", dataset: { id: a.id, centre: a.centre, rule: a.rule, key: a.key } },
      h("td", { class: "centre" }, a.centre), h("td", {}, a.rule), h("td", { class: "key" }, a.key),
      h("td", {}, a.window), h("td", {}, directionChip(a.direction)),
      h("td", { class: "num value" }, money(a.value)), h("td", { class: "num" }, band(a.low, a.high)),
      h("td", { class: "num" }, count(a.handled)),
      h("td", {}, dateClock(a.since, tz)), h("td", {}, dateClock(a.at, tz)),
      ackCell(a.ack, tz),
      h("td", { class: "snooze" }, snooze ? `until ${dateClock(snooze.until, tz)} by ${snooze.by}` : DASH));
  }));
}

function renderHistory() {
  const all = [...history.values()].filter((a) => passes(a)).sort((a, b) => (b.at - a.at) || (b._n - a._n));
  const rows = all.slice(0, MAX_HISTORY_ROWS);
  el("history-note").textContent = all.length > rows.length
    ? `newest first; the latest ${rows.length} of ${all.length}` : "newest first";
  el("no-history").hidden = rows.length > 0;
  el("history").hidden = rows.length === 0;
  el("history").tBodies[0].replaceChildren(...rows.map((a) => {
    const tz = tzOf(a);
    return h("tr", { class: "state-" + a.state, dataset: { id: a.id, state: a.state, centre: a.centre } },
      h("td", {}, dateClock(a.at, tz)),
      h("td", {}, h("span", { class: "state state-" + a.state }, a.state === "firing" ? "\u25CF FIRING" : "\u2714 RESOLVED")),
      h("td", {}, a.centre), h("td", {}, a.rule), h("td", { class: "key" }, a.key), h("td", {}, a.window),
      h("td", {}, directionChip(a.direction)),
      h("td", { class: "num value" }, money(a.value)), h("td", { class: "num" }, band(a.low, a.high)),
      h("td", { class: "num" }, count(a.handled)), h("td", {}, dateClock(a.since, tz)),
      a.state === "firing" ? ackCell(acks.get(a.id), tz) : h("td", { class: "muted" }, ""));
  }));
}

function render() {
  renderFilters();
  renderFiring();
  if (historyLoaded) renderHistory();
  document.title = `callcost: ${[...firing.values()].filter((a) => passes(a, { ignoreState: true })).length} firing`;
}

// ------------------------------------------------------------------------ data

/** Keep an alert message in the history; true when it was not known yet. */
function remember(a) {
  const k = a.id + "|" + a.state;
  if (a.ack) acks.set(a.id, a.ack);
  if (history.has(k)) return false;
  history.set(k, Object.assign({ _n: arrival++ }, a));
  return true;
}

async function loadHistory() {
  try {
    const body = await getJSON("/api/alerts?state=all");
    for (const a of body.alerts) remember(a);
    historyLoaded = true;
    say("");
  } catch (e) {
    say("Cannot load the alert history: " + e.message);
  }
  render();
}

function onAlerts(msg) {
  if (msg.type === "error") { say("Gateway: " + msg.message); return; }
  if (msg.type === "snapshot") {
    firing.clear();
    for (const s of msg.snoozes || []) snoozes.set(s.centre + "/" + s.rule + "/" + s.key, s);
    for (const a of msg.alerts) {
      firing.set(a.id, a);
      if (a.ack) acks.set(a.id, a.ack);
    }
    loadHistory(); // again after every reconnect: what was missed while away
  } else if (msg.type === "alert") {
    const a = Object.assign({}, msg);
    delete a.sub; delete a.seq;
    a.type = "alert";
    const isNew = remember(a);
    if (a.state === "firing") {
      firing.set(a.id, Object.assign({ ack: acks.get(a.id) || null, snooze: snoozeFor(a) }, a));
      // only what fires now: not what a gateway that has just started reads again
      if (isNew && historyLoaded && liveRef && liveRef.caughtUp) announce(a);
    } else {
      firing.delete(a.id);
    }
  } else if (msg.type === "ack") {
    acks.set(msg.id, msg);
    const a = firing.get(msg.id);
    if (a) a.ack = msg;
  } else if (msg.type === "snooze") {
    snoozes.set(msg.centre + "/" + msg.rule + "/" + msg.key, msg);
    for (const a of firing.values()) {
      if (a.centre === msg.centre && a.rule === msg.rule && a.key === msg.key) a.snooze = msg;
    }
  } else {
    return;
  }
  render();
}

// ------------------------------------------------------------------------ sound and notification

const optedIn = () => el("notify").checked;

function announce(a) {
  if (!optedIn() || !passes(a, { ignoreState: true })) return;
  beep();
  const dir = a.direction === "above" ? "\u25B2 above" : "\u25BC below";
  notifyInBackground(`${a.centre}: ${a.key} ${dir} the band`,
    `${a.rule} (${a.window}): ${money(a.value)} per call, band ${band(a.low, a.high)}, ${count(a.handled)} calls`,
    a.id);
}

// ------------------------------------------------------------------------ start

async function start() {
  zones = await allZones();
  viewsNav(el("views"), filters.centre, "alerts");
  for (const id of ["f-centre", "f-state", "f-rule"]) el(id).addEventListener("change", filtersChanged);
  setupOptIn(el("notify"), el("notify-state"));
  render();
  const live = new Live({
    onState: (state, detail) => {
      showConnection(el("connection"), state, detail);
      if (state === "live") loadHistory(); // complete now: the gateway has read it all
    },
  });
  live.subscribe({ channel: "alerts", sub: "alerts" }, onAlerts);
  live.start();
  window.callcostLive = live;
  liveRef = live;
  setInterval(renderFiring, 15000); // snoozes run out
}

start();
