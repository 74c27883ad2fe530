// Shared by the wallboard, the supervisor view and the alerts page: the websocket client
// (reconnects, resubscribes, checks seq), number and time formatting, the status words and
// shapes, and the SVG trend drawing. The protocol is the docstring of web/protocol.py.
// No build step, no libraries.

export const SCOPES = ["centre", "queue", "channel", "direction"];

// Status of a figure against its band. The word and the shape carry the meaning without
// the colour (for colour-blind readers); the class carries the colour.
export const STATUS = {
  ok: { word: "OK", shape: "\u2713", cls: "st-ok", title: "cost per call within the band" },
  above: { word: "ABOVE", shape: "\u25B2", cls: "st-above", title: "cost per call above the band" },
  below: { word: "BELOW", shape: "\u25BC", cls: "st-below", title: "cost per call below the band" },
  insufficient: {
    word: "FEW CALLS", shape: "\u25CB", cls: "st-insufficient",
    title: "too few calls handled to judge (below the rule's min_calls)",
  },
};
const UNKNOWN_STATUS = { word: "\u2013", shape: "", cls: "st-none", title: "no status" };

export function statusOf(status) {
  return STATUS[status] || UNKNOWN_STATUS;
}

export const DASH = "\u2013";

// ------------------------------------------------------------------------ formatting

/** Money with two decimals, as Number.prototype.toFixed rounds it; "–" for null. */
export function money(v) {
  return v === null || v === undefined || !Number.isFinite(v) ? DASH : v.toFixed(2);
}

/** Money with two decimals and thousands separators (totals). */
export function bigMoney(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return DASH;
  const [int, dec] = Math.abs(v).toFixed(2).split(".");
  return (v < 0 ? "-" : "") + int.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + "." + dec;
}

/** A count (figures carry counts as numbers, sometimes as floats such as 12.0). */
export function count(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return DASH;
  return String(Math.round(v)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** Seconds as m:ss, or h:mm:ss from an hour. */
export function duration(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return DASH;
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = String(t % 60).padStart(2, "0");
  return h ? h + ":" + String(m).padStart(2, "0") + ":" + sec : m + ":" + sec;
}

/** A ratio as a whole percentage ("87%"). */
export function percent(v) {
  return v === null || v === undefined || !Number.isFinite(v) ? DASH : Math.round(v * 100) + "%";
}

export function band(low, high) {
  return money(low) + "\u2013" + money(high);
}

/** Length of a window in seconds ("today": Infinity), for sorting. */
export function windowSeconds(w) {
  if (w === "today") return Infinity;
  const n = parseInt(w, 10);
  return n * ({ s: 1, m: 60, h: 3600 }[w.slice(-1)] || 1);
}

const timeFormats = new Map();
function timeFormat(tz, withDate) {
  const k = (tz || "") + (withDate ? "|d" : "");
  let f = timeFormats.get(k);
  if (!f) {
    const options = {
      hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
      timeZoneName: "short",
    };
    if (withDate) Object.assign(options, { day: "numeric", month: "short" });
    if (tz) options.timeZone = tz;
    try {
      f = new Intl.DateTimeFormat("en-GB", options);
    } catch (e) { // an unknown zone: the browser's own
      delete options.timeZone;
      f = new Intl.DateTimeFormat("en-GB", options);
    }
    timeFormats.set(k, f);
  }
  return f;
}

/** "11:07:57 CET": an instant in the time zone tz (the browser's when tz is empty). */
export function clock(ms, tz) {
  if (ms === null || ms === undefined) return DASH;
  return timeFormat(tz, false).format(new Date(ms));
}

/** "15 Jan, 11:07:57 CET" */
export function dateClock(ms, tz) {
  if (ms === null || ms === undefined) return DASH;
  return timeFormat(tz, true).format(new Date(ms));
}

/** "11:07" (no seconds, no zone), for chart axes. */
export function hhmm(ms, tz) {
  const k = "hhmm|" + (tz || "");
  let f = timeFormats.get(k);
  if (!f) {
    const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (tz) options.timeZone = tz;
    try { f = new Intl.DateTimeFormat("en-GB", options); } catch (e) {
      f = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    }
    timeFormats.set(k, f);
  }
  return f.format(new Date(ms));
}

// ------------------------------------------------------------------------ DOM helpers

/** h("td", {class: "num", title: "x"}, "text", childNode, ...) */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

/** A status chip: shape and word, classed by status. */
export function statusChip(status, extraClass) {
  const s = statusOf(status);
  return h("span", { class: "chip " + s.cls + (extraClass ? " " + extraClass : ""), title: s.title },
    s.shape ? h("span", { class: "shape", "aria-hidden": "true" }, s.shape) : null,
    h("span", { class: "word" }, s.word));
}

/** A direction chip for alerts ("above" / "below"), with its shape. */
export function directionChip(direction) {
  return statusChip(direction === "above" ? "above" : "below");
}

export const params = new URLSearchParams(location.search);

// ------------------------------------------------------------------------ access

// A page opened with #token=TOKEN at the end of its address (README, Security) keeps the
// token in sessionStorage (this tab, and the pages it opens) and takes it out of the
// address bar. A fragment never reaches a server, a proxy or their logs. The token goes
// with every request: `Authorization: Bearer TOKEN` on fetch, and on the websocket the
// subprotocol "callcost.token.TOKEN" next to "callcost.v1" (a browser cannot set headers
// on a websocket, and a ?token= in the address would be logged). Without tokens
// configured on the gateway, none is needed.
const TOKEN_KEY = "callcost.token";
export const token = takeToken();

function takeToken() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  let fromHash = null;
  if (m) {
    fromHash = m[1];
    try { fromHash = decodeURIComponent(fromHash); } catch (e) { /* as it is */ }
    try {
      if (fromHash) sessionStorage.setItem(TOKEN_KEY, fromHash);
      else sessionStorage.removeItem(TOKEN_KEY); // #token= forgets it
    } catch (e) { /* storage disabled: this page only */ }
    const rest = location.hash.replace(/(^#|&)token=[^&]*/, "$1").replace(/^#&/, "#");
    history.replaceState(history.state, "", location.pathname + location.search + (rest === "#" ? "" : rest));
  }
  if (fromHash !== null) return fromHash;
  try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
}

/** The headers that carry the token on fetch. */
export function authHeaders() {
  return token ? { Authorization: "Bearer " + token } : {};
}

/** The subprotocols of the websocket: the protocol, and the token when there is one. */
export function wsProtocols() {
  return token ? ["callcost.v1", "callcost.token." + token] : ["callcost.v1"];
}

/**
 * A banner across the page when the gateway refuses the token (or wants one): what is
 * wrong and what to do. Hidden again once a request goes through.
 */
export function showAccessProblem(detail) {
  let box = document.getElementById("access-problem");
  if (!box) {
    box = document.createElement("div");
    box.id = "access-problem";
    box.setAttribute("role", "alert");
    box.style.cssText = "position:fixed;left:0;right:0;top:0;z-index:1000;padding:1em 1.5em;"
      + "background:#5c0011;color:#fff;font:600 1.4rem/1.4 system-ui,sans-serif;"
      + "box-shadow:0 2px 8px rgba(0,0,0,.5)";
    document.body.append(box);
  }
  const how = token
    ? "This page's access token was refused. Open it again with a valid one: #token=YOUR-TOKEN at the end of its address."
    : "This gateway needs an access token. Open this page with #token=YOUR-TOKEN at the end of its address.";
  box.replaceChildren(
    h("div", { class: "access-title" }, "\u26D4 Not authorised"),
    h("div", { class: "access-how", style: "font-weight:400;font-size:1rem" }, how,
      detail ? " (gateway: " + detail + ")" : ""));
  box.hidden = false;
  document.body.classList.add("is-unauthorised");
}

export function hideAccessProblem() {
  const box = document.getElementById("access-problem");
  if (box) box.hidden = true;
  document.body.classList.remove("is-unauthorised");
}

let whoami = null;
/**
 * What this page's token may do ({open, name, role, permissions} from GET /api/whoami),
 * null when the gateway refuses it (the page then says so), or undefined when the gateway
 * cannot be asked (down, or older than tokens): then the page tries everything.
 */
export async function access() {
  if (whoami) return whoami;
  let r;
  try {
    r = await fetch("/api/whoami", { cache: "no-store", headers: authHeaders() });
  } catch (e) {
    return undefined;
  }
  if (r.status === 401) {
    let detail = "";
    try { detail = (await r.json()).message || ""; } catch (e) { /* not JSON */ }
    showAccessProblem(detail);
    return null;
  }
  if (!r.ok) return undefined;
  try { whoami = await r.json(); } catch (e) { return undefined; }
  hideAccessProblem();
  return whoami;
}

/** Whether the token allows `permission` ("figures", "alerts", "ack", "snooze"); true when
 * it cannot be told (the gateway answers `forbidden` then). */
export async function can(permission) {
  const who = await access();
  if (who === undefined) return true;
  return who !== null && (who.permissions || []).includes(permission);
}

// ------------------------------------------------------------------------ HTTP

export async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store", headers: authHeaders() });
  if (!r.ok) {
    let detail = "HTTP " + r.status;
    try { detail = (await r.json()).message || detail; } catch (e) { /* not JSON */ }
    if (r.status === 401) showAccessProblem(detail);
    const err = new Error(detail);
    err.status = r.status;
    throw err;
  }
  return r.json();
}

/** The centres that have figures, in name order (retries until there is one). */
export async function listCentres() {
  const body = await getJSON("/api/figures?scope=centre");
  return [...new Set(body.figures.map((f) => f.centre))].sort();
}

/**
 * The centre of the address, else the first that has figures; null while none has any
 * yet (then `say` tells the reader, and the page tries again later).
 */
export async function chooseCentre(centre, say) {
  if (centre) return centre;
  try {
    const names = await listCentres();
    if (names.length) return names[0];
  } catch (e) {
    if (e.status === 401) {
      say("Not authorised: this page needs a valid access token (#token=...).");
      return null;
    }
    if (e.status === 403) {
      say("Not allowed: " + e.message);
      return null;
    }
    // the gateway is not there yet: same as no centre
  }
  say("No centre has figures yet; waiting for the first.");
  return null;
}

let centreInfo = null;
/**
 * What the pages know of a centre besides its figures: its time zone (for `as_of`, in the
 * centre's local time) and currency. Taken from `GET /api/centres` when the gateway has it
 * ({"centres": [{"centre", "timezone", "currency"}]}); the `tz` URL parameter overrides
 * it; without either the browser's own zone is used (and shown by its abbreviation).
 */
export async function centreZone(centre) {
  const fromUrl = params.get("tz");
  if (fromUrl) return fromUrl;
  if (centreInfo === null) {
    centreInfo = {};
    try {
      const body = await getJSON("/api/centres");
      for (const c of body.centres || []) centreInfo[c.centre || c.id] = c;
    } catch (e) { /* no such route on this gateway: the browser's zone */ }
  }
  const info = centreInfo[centre];
  return (info && info.timezone) || "";
}

export async function allZones() {
  await centreZone("");
  const out = {};
  for (const [k, v] of Object.entries(centreInfo || {})) if (v.timezone) out[k] = v.timezone;
  return out;
}

// ------------------------------------------------------------------------ websocket

const REPLIES = new Set(["snapshot", "unsubscribed", "pong", "acked", "snoozed", "unsnoozed", "error"]);

/**
 * One websocket to /ws that stays up: it reconnects with backoff (0.5 s doubling to 15 s,
 * with jitter) and subscribes again to everything it was subscribed to, so every
 * subscription starts over from a snapshot. Every request gets exactly one reply, in
 * order (protocol), so replies are matched to requests by a queue. A gap in a
 * subscription's seq, or a ping without its pong, closes the socket and starts over.
 *
 *   const live = new Live({ onState: (state, detail) => ... });
 *   live.subscribe({ channel: "figures", centre, sub: "f" }, (msg) => ...);
 *   live.start();
 *   await live.request({ op: "ack", id, by });   // resolves with the reply, throws on error
 */
export class Live {
  constructor({ onState } = {}) {
    this.onState = onState || (() => {});
    this.subs = new Map(); // sub id -> {request, handler, seq}
    this.pending = []; // [{resolve, reject}] in request order
    this.socket = null;
    this.backoff = 500;
    this.maxBackoff = 15000;
    this.retryTimer = null;
    this.pingTimer = null;
    this.connected = false;
    this.caughtUp = false; // the gateway of this connection has read all its topics
    this.reconnects = 0;
  }

  start() {
    this._connect();
    return this;
  }

  subscribe(request, handler) {
    const sub = request.sub;
    this.subs.set(sub, { request: Object.assign({ op: "subscribe" }, request), handler, seq: 0 });
    if (this.connected) this._subscribe(sub);
  }

  /** Send a request; resolves with its reply, rejects with its error (err.code). */
  request(request) {
    return new Promise((resolve, reject) => {
      if (!this.connected) {
        const err = new Error("not connected to the gateway; try again in a moment");
        err.code = "disconnected";
        reject(err);
        return;
      }
      this.pending.push({ resolve, reject });
      this.socket.send(JSON.stringify(request));
    });
  }

  _subscribe(sub) {
    const s = this.subs.get(sub);
    s.seq = 0;
    this.request(s.request).catch((err) => {
      if (err.code !== "disconnected") s.handler({ type: "error", sub, error: err.code, message: err.message });
    });
  }

  _connect() {
    clearTimeout(this.retryTimer);
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let socket;
    try {
      socket = new WebSocket(scheme + "//" + location.host + "/ws", wsProtocols());
    } catch (e) {
      this._retry();
      return;
    }
    this.socket = socket;
    this.onState(this.unauthorised ? "unauthorised" : "connecting");
    let opened = false;
    socket.onopen = () => {
      opened = true;
      if (this.unauthorised) {
        this.unauthorised = false;
        hideAccessProblem();
      }
      this.connected = true;
      this.caughtUp = false;
      for (const sub of this.subs.keys()) this._subscribe(sub);
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this._ping(), 20000);
    };
    socket.onmessage = (event) => this._message(socket, event);
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.connected = false;
      this.caughtUp = false;
      clearInterval(this.pingTimer);
      const pending = this.pending;
      this.pending = [];
      for (const p of pending) {
        const err = new Error("the connection to the gateway closed; try again");
        err.code = "disconnected";
        p.reject(err);
      }
      this._retry();
      // a browser does not tell why a handshake failed: ask whether the token is the cause
      if (!opened) this._checkAccess();
    };
  }

  async _checkAccess() {
    whoami = null;
    const who = await access();
    if (who !== null) return;
    this.unauthorised = true;
    this.backoff = this.maxBackoff; // it will not get better by itself soon
    this.onState("unauthorised");
  }

  _ping() {
    const socket = this.socket;
    const timer = setTimeout(() => { if (this.socket === socket) socket.close(4001, "no pong"); }, 10000);
    this.request({ op: "ping" }).then(() => clearTimeout(timer), () => clearTimeout(timer));
  }

  _retry() {
    const delay = this.backoff * (0.75 + Math.random() * 0.5);
    this.backoff = Math.min(this.backoff * 2, this.maxBackoff);
    this.reconnects += 1;
    // a refused token stays the news until a connection opens
    this.onState(this.unauthorised ? "unauthorised" : "down", { retryIn: delay });
    this.retryTimer = setTimeout(() => this._connect(), delay);
  }

  _message(socket, event) {
    if (socket !== this.socket) return;
    let msg;
    try { msg = JSON.parse(event.data); } catch (e) { return; }
    if (REPLIES.has(msg.type)) {
      const p = this.pending.shift();
      if (p) {
        if (msg.type === "error") {
          const err = new Error(msg.message || msg.error);
          err.code = msg.error;
          p.reject(err);
        } else {
          p.resolve(msg);
        }
      }
      if (msg.type === "error" || msg.type === "unsubscribed") return;
    }
    if (msg.sub === undefined) return;
    const s = this.subs.get(msg.sub);
    if (!s) return;
    if (msg.seq !== s.seq) {
      // the gateway never skips a seq: a gap means we missed something; start over
      socket.close(4000, "seq gap");
      return;
    }
    s.seq += 1;
    if (msg.type === "snapshot") {
      this.backoff = 500;
      if (!this.caughtUp) this._awaitCaughtUp(socket);
    }
    s.handler(msg);
  }

  /** A gateway that has just started serves while it still reads its topics: what it
   * has read so far, then the rest as it reads it (old alerts as live messages). The
   * state is "syncing" until /healthz says it has caught up, then "live". */
  async _awaitCaughtUp(socket) {
    if (this._syncing === socket) return;
    this._syncing = socket;
    this.onState("syncing");
    while (this.socket === socket) {
      try {
        const r = await fetch("/healthz", { cache: "no-store", headers: authHeaders() });
        if (r.ok) break;
      } catch (e) { /* the socket's close will tell */ }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    if (this.socket !== socket) return;
    this.caughtUp = true;
    this.onState("live");
  }
}

/** The connection badge: live, catching up, connecting, offline (retry in N s). */
export function showConnection(badge, state, detail) {
  badge.dataset.state = state;
  badge.className = "conn conn-" + state;
  badge.textContent = state === "live" ? "live" : state === "connecting" ? "connecting"
    : state === "syncing" ? "catching up" : state === "unauthorised" ? "not authorised"
    : "offline \u00B7 retry in " + Math.max(1, Math.round(detail.retryIn / 1000)) + " s";
}

/** A connection badge and the STALE marker: call `state(...)` from Live's onState and
 * `fresh(as_of)` on every figures message; STALE shows when as_of has not moved for
 * `staleMs` (10 s) of wall time, whether the socket is up or not. */
export class Freshness {
  constructor({ badge, stale, root, staleMs = 10000 }) {
    this.badge = badge;
    this.stale = stale;
    this.root = root || document.body;
    this.staleMs = staleMs;
    this.asOf = null;
    this.movedAt = null; // wall time when as_of last moved
    this.isStale = false;
    setInterval(() => this.check(), 1000);
  }

  state(state, detail) {
    if (this.badge) showConnection(this.badge, state, detail);
  }

  fresh(asOf) {
    if (asOf === null || asOf === undefined) return;
    if (asOf !== this.asOf) {
      this.asOf = asOf;
      this.movedAt = Date.now();
    }
    this.check();
  }

  check() {
    const stale = this.movedAt !== null && Date.now() - this.movedAt > this.staleMs;
    if (stale) {
      const s = Math.round((Date.now() - this.movedAt) / 1000);
      this.stale.textContent = "STALE \u00B7 no update for " + ago(s);
    }
    if (stale !== this.isStale) {
      this.isStale = stale;
      this.stale.hidden = !stale;
      this.root.classList.toggle("is-stale", stale);
    }
  }
}

function ago(s) {
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
}

// ------------------------------------------------------------------------ history

/**
 * Cost-per-call points kept in the browser, per series, from the figures messages seen
 * since the page loaded (the gateway keeps no history). A point per `stepMs` of as_of at
 * most (the latest in each step wins) and none older than `keepMs` before the newest.
 */
export class History {
  constructor({ stepMs = 10000, keepMs = 3600000 } = {}) {
    this.stepMs = stepMs;
    this.keepMs = keepMs;
    this.series = new Map();
  }

  add(id, t, v, low, high) {
    let s = this.series.get(id);
    if (!s) { s = []; this.series.set(id, s); }
    const last = s[s.length - 1];
    if (last && t < last.t) return; // older than what we have: a replayed snapshot
    const point = { t, v: Number.isFinite(v) ? v : null, low, high };
    if (last && Math.floor(t / this.stepMs) === Math.floor(last.t / this.stepMs)) {
      s[s.length - 1] = point; // the latest of each step
    } else {
      s.push(point);
    }
    const cut = t - this.keepMs;
    let drop = 0;
    while (drop < s.length - 1 && s[drop].t < cut) drop += 1;
    if (drop) s.splice(0, drop);
  }

  get(id) {
    return this.series.get(id) || [];
  }
}

// ------------------------------------------------------------------------ SVG trend

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

// ------------------------------------------------------------------------ navigation

/** The address of a view: /wallboard, /supervisor, /alerts (the gateway's routes), or
 * /static/NAME.html when this page was itself opened by its file name. */
export function pageUrl(name) {
  return location.pathname.startsWith("/static/") ? "/static/" + name + ".html" : "/" + name;
}

/** Links to the three views of `centre` in `nav`; `current` is "wallboard", "supervisor"
 * or "alerts". */
export function viewsNav(nav, centre, current) {
  const q = centre ? "?centre=" + encodeURIComponent(centre) : "";
  const links = [["wallboard", "Wallboard", pageUrl("wallboard") + q],
    ["supervisor", "Supervisor", pageUrl("supervisor") + q],
    ["alerts", "Alerts", pageUrl("alerts") + q], ["home", "All centres", "/"]];
  nav.replaceChildren(...links.map(([id, label, href]) =>
    h("a", { href, "aria-current": id === current ? "page" : null }, label)));
}

/** The name people gave last time (acknowledge, snooze), remembered in this browser. */
export const rememberedName = {
  get() { try { return localStorage.getItem("callcost.name") || ""; } catch (e) { return ""; } },
  set(v) { try { localStorage.setItem("callcost.name", v); } catch (e) { /* private mode */ } },
};
