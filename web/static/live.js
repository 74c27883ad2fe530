// The live page's table: one figures subscription over /ws for one centre, its rows following every update.
// (The list of views above it is landing.js.)

import { listCentres } from "./centres.js";
import { Backoff, Live } from "./connection.js";
import { el, h, say } from "./dom.js";
import { DASH, count, duration, money, utcInstant, windowSeconds } from "./format.js";
import { params } from "./nav.js";
import { byScopeAndKey } from "./scopes.js";

const tbody = document.querySelector("#figures tbody");
let centre = params.get("centre") || null;

function setConnection(up, text) {
  const c = el("connection");
  c.textContent = text;
  c.className = "conn " + (up ? "conn-up" : "conn-down");
}

/** The badge for the connection's states: live once a snapshot came, else what it waits for. */
function showState(state, detail) {
  if (state === "live" || state === "syncing") setConnection(true, "live");
  else if (state === "connecting") setConnection(false, "connecting");
  else if (state === "unauthorised") setConnection(false, "not authorised");
  else setConnection(false, "retrying in " + Math.round(detail.retryIn / 1000) + " s");
}

// ---------------------------------------------------------------- rendering

/** By scope, key (the centre's own rows first), then window from the shortest. */
function order(a, b) {
  return byScopeAndKey(a, b) || (windowSeconds(a.window) - windowSeconds(b.window));
}

function render(asOf, figures) {
  el("as-of").textContent = utcInstant(asOf);
  if (asOf !== null && asOf !== undefined) el("as-of").dateTime = new Date(asOf).toISOString();
  const rows = figures.slice().sort(order).map((f) => h("tr", { class: "scope-" + f.scope },
    [
      [f.scope, ""], [f.key, ""], [f.window, ""],
      [money(f.cost_per_call), "num"], [count(f.handled), "num"],
      [count(f.offered), "num"], [count(f.abandoned), "num"],
      [duration(f.aht_s), "num"], [f.status || DASH, "status status-" + f.status],
    ].map(([text, cls]) => h("td", { class: cls || null }, text))));
  tbody.replaceChildren(...rows);
  say(figures.length ? "" : "No figures for " + centre + " yet.");
}

function showCentres(names) {
  const nav = el("centres");
  nav.replaceChildren(...names.map((name) => h("a", {
    href: "?centre=" + encodeURIComponent(name), "aria-current": name === centre ? "page" : null,
  }, name)));
  nav.hidden = names.length < 2;
}

// ---------------------------------------------------------------- live feed

function start() {
  el("centre").textContent = DASH + " " + centre;
  document.title = "callcost: " + centre;
  const live = new Live({ onState: showState });
  live.subscribe({ channel: "figures", centre, sub: "page" }, (msg) => {
    if (msg.type === "error") say("Server: " + msg.message);
    else if (msg.type === "snapshot" || msg.type === "update") render(msg.as_of, msg.figures);
  });
  live.start();
}

const retries = new Backoff();

async function pickCentre() {
  let names;
  try {
    names = await listCentres();
  } catch (e) {
    const why = e.status === 401
      ? "not authorised: this page needs a valid access token (#token=...)" : e.message;
    retryLater("Cannot list the centres: " + why);
    return;
  }
  if (!names.length) {
    retryLater("No centre has figures yet; waiting for the first.");
    return;
  }
  centre = names[0];
  showCentres(names);
  start();
}

function retryLater(why) {
  say(why);
  const delay = retries.next();
  setConnection(false, "retrying in " + Math.round(delay / 1000) + " s");
  setTimeout(pickCentre, delay);
}

if (centre) {
  start();
  // list the other centres, for switching; failure here does not matter
  listCentres().then(showCentres, () => {});
} else {
  pickCentre();
}
