// The supervisor's alerts panel: the centre's firing alerts and snoozes, and the Acknowledge and Snooze dialogs.
import { el, h } from "./dom.js";
import { band, clock, count, dateClock, money } from "./format.js";
import { directionChip } from "./status.js";

let centre = null;
let tz = "";
let live = null; // the page's connection: acks and snoozes go over it

/** The name people gave last time (acknowledge, snooze), remembered in this browser. */
const rememberedName = {
  get() { try { return localStorage.getItem("callcost.name") || ""; } catch (e) { return ""; } },
  set(v) { try { localStorage.setItem("callcost.name", v); } catch (e) { /* private mode */ } },
};

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

/**
 * Show the alerts of `centre` (instants in `tz`) and wire the dialogs, whose requests go
 * over `connection`; returns the handler of the alerts subscription.
 */
export function setupAlerts({ centre: c, tz: zone, connection }) {
  centre = c;
  tz = zone;
  live = connection;
  renderAlerts();
  el("ack-form").addEventListener("submit", submitAck);
  el("snooze-form").addEventListener("submit", submitSnooze);
  el("ack-cancel").addEventListener("click", () => el("ack-dialog").close());
  el("snooze-cancel").addEventListener("click", () => el("snooze-dialog").close());
  setInterval(renderAlerts, 15000); // snoozes run out
  return onAlerts;
}
