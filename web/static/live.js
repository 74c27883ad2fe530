// callcost live page: one figures subscription over /ws, a table that follows it.
// Protocol: see callcost/web/protocol.py (module docstring). No build step, no libraries.
"use strict";

(function () {
  const SUB = "page";
  const SCOPES = ["centre", "queue", "channel", "direction"];
  const params = new URLSearchParams(location.search);
  const el = (id) => document.getElementById(id);
  const tbody = document.querySelector("#figures tbody");

  let centre = params.get("centre") || null;
  // the page's access token (README, Security): #token=... in the address, kept in this
  // tab's sessionStorage (common.js, loaded by landing.js, takes it out of the address)
  const token = (function () {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {
      let t = m[1];
      try { t = decodeURIComponent(t); } catch (e) { /* as it is */ }
      try { if (t) sessionStorage.setItem("callcost.token", t); } catch (e) { /* disabled */ }
      return t;
    }
    try { return sessionStorage.getItem("callcost.token") || ""; } catch (e) { return ""; }
  })();
  const headers = token ? { Authorization: "Bearer " + token } : {};
  const protocols = token ? ["callcost.v1", "callcost.token." + token] : ["callcost.v1"];
  let socket = null;
  let expectedSeq = 0;
  let backoff = 500; // ms, doubles up to MAX_BACKOFF, back to 500 after a snapshot
  const MAX_BACKOFF = 15000;

  function setConnection(up, text) {
    const c = el("connection");
    c.textContent = text;
    c.className = "conn " + (up ? "conn-up" : "conn-down");
  }

  function say(text) {
    const m = el("message");
    m.textContent = text || "";
    m.hidden = !text;
  }

  function retryLater(what) {
    const delay = backoff * (0.75 + Math.random() * 0.5);
    backoff = Math.min(backoff * 2, MAX_BACKOFF);
    setConnection(false, "retrying in " + Math.round(delay / 1000) + " s");
    setTimeout(what, delay);
  }

  // ---------------------------------------------------------------- formatting

  function money(v) { return v === null || v === undefined ? "\u2013" : v.toFixed(2); }
  function count(v) { return v === null || v === undefined ? "\u2013" : String(v); }
  function duration(s) {
    if (s === null || s === undefined) return "\u2013";
    const t = Math.round(s);
    return Math.floor(t / 60) + ":" + String(t % 60).padStart(2, "0");
  }
  function windowSeconds(w) {
    if (w === "today") return Infinity;
    const n = parseInt(w, 10);
    return n * ({ s: 1, m: 60, h: 3600 }[w.slice(-1)] || 1);
  }
  function instant(ms) {
    if (ms === null || ms === undefined) return "\u2013";
    return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function order(a, b) {
    return (SCOPES.indexOf(a.scope) - SCOPES.indexOf(b.scope))
      || (a.scope === "centre" ? 0 : a.key.localeCompare(b.key))
      || (windowSeconds(a.window) - windowSeconds(b.window));
  }

  // ---------------------------------------------------------------- rendering

  function render(asOf, figures) {
    el("as-of").textContent = instant(asOf);
    if (asOf !== null && asOf !== undefined) el("as-of").dateTime = new Date(asOf).toISOString();
    const rows = figures.slice().sort(order).map((f) => {
      const tr = document.createElement("tr");
      tr.className = "scope-" + f.scope;
      const cells = [
        [f.scope, ""], [f.key, ""], [f.window, ""],
        [money(f.cost_per_call), "num"], [count(f.handled), "num"],
        [count(f.offered), "num"], [count(f.abandoned), "num"],
        [duration(f.aht_s), "num"], [f.status || "\u2013", "status status-" + f.status],
      ];
      for (const [text, cls] of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      return tr;
    });
    tbody.replaceChildren(...rows);
    say(figures.length ? "" : "No figures for " + centre + " yet.");
  }

  function showCentres(names) {
    const nav = el("centres");
    nav.replaceChildren(...names.map((name) => {
      const a = document.createElement("a");
      a.href = "?centre=" + encodeURIComponent(name);
      a.textContent = name;
      if (name === centre) a.setAttribute("aria-current", "page");
      return a;
    }));
    nav.hidden = names.length < 2;
  }

  // ---------------------------------------------------------------- live feed

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + location.host + "/ws", protocols);
    setConnection(false, "connecting");
    socket.onopen = () => {
      expectedSeq = 0;
      socket.send(JSON.stringify({ op: "subscribe", channel: "figures", centre: centre, sub: SUB }));
    };
    socket.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch (e) { return; }
      if (msg.type === "error") {
        say("Server: " + msg.message);
        return;
      }
      if (msg.sub !== SUB) return;
      if (msg.seq !== expectedSeq) {
        // the gateway never skips a seq; if we see one, start over from a snapshot
        socket.close(4000, "seq gap");
        return;
      }
      expectedSeq += 1;
      if (msg.type === "snapshot") {
        backoff = 500;
        setConnection(true, "live");
      }
      if (msg.type === "snapshot" || msg.type === "update") render(msg.as_of, msg.figures);
    };
    socket.onclose = () => {
      socket = null;
      retryLater(connect);
    };
  }

  function pickCentre() {
    fetch("/api/figures", { headers })
      .then((r) => {
        if (r.status === 401) throw new Error("not authorised: this page needs a valid access token (#token=...)");
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then((body) => {
        const names = [...new Set(body.figures.map((f) => f.centre))].sort();
        if (!names.length) {
          say("No centre has figures yet; waiting for the first.");
          retryLater(pickCentre);
          return;
        }
        centre = centre || names[0];
        showCentres(names);
        start();
      })
      .catch((e) => { say("Cannot list the centres: " + e.message); retryLater(pickCentre); });
  }

  function start() {
    el("centre").textContent = "\u2013 " + centre;
    document.title = "callcost: " + centre;
    connect();
  }

  if (centre) {
    start();
    // list the other centres, for switching; failure here does not matter
    fetch("/api/figures", { headers }).then((r) => r.json())
      .then((b) => showCentres([...new Set(b.figures.map((f) => f.centre))].sort()))
      .catch(() => {});
  } else {
    pickCentre();
  }
})();
