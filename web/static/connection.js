// The websocket to /ws that stays up: reconnects with backoff, subscribes again, checks seq, tells when caught up.

import { access, hideAccessProblem } from "./access.js";
import { authHeaders, wsProtocols } from "./token.js";

const REPLIES = new Set(["snapshot", "unsubscribed", "pong", "acked", "snoozed", "unsnoozed", "error"]);

/** Retry delays: `firstMs` doubling up to `maxMs`, each with ±25 % jitter. */
export class Backoff {
  constructor({ firstMs = 500, maxMs = 15000 } = {}) {
    this.firstMs = firstMs;
    this.maxMs = maxMs;
    this.ms = firstMs;
  }

  /** The delay before the next try (ms); the one after it is twice as long. */
  next() {
    const delay = this.ms * (0.75 + Math.random() * 0.5);
    this.ms = Math.min(this.ms * 2, this.maxMs);
    return delay;
  }

  /** Back to the first delay (a try that worked). */
  reset() {
    this.ms = this.firstMs;
  }

  /** Straight to the longest delay (what will not get better by itself soon). */
  longest() {
    this.ms = this.maxMs;
  }
}

/**
 * One websocket to /ws that stays up: it reconnects with backoff (0.5 s doubling to 15 s,
 * with jitter) and subscribes again to everything it was subscribed to, so every
 * subscription starts over from a snapshot. Every request gets exactly one reply, in
 * order (docs/PROTOCOL.md), so replies are matched to requests by a queue. A gap in a
 * subscription's seq, or a ping without its pong, closes the socket and starts over.
 * The states told to `onState`: connecting, syncing, live, down ({retryIn} ms),
 * unauthorised.
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
    this.backoff = new Backoff();
    this.retryTimer = null;
    this.pingTimer = null;
    this.connected = false;
    this.caughtUp = false; // the gateway of this connection has read all its topics
    this.unauthorised = false;
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
    const who = await access({ again: true });
    if (who !== null) return;
    this.unauthorised = true;
    this.backoff.longest(); // it will not get better by itself soon
    this.onState("unauthorised");
  }

  _ping() {
    const socket = this.socket;
    const timer = setTimeout(() => { if (this.socket === socket) socket.close(4001, "no pong"); }, 10000);
    this.request({ op: "ping" }).then(() => clearTimeout(timer), () => clearTimeout(timer));
  }

  _retry() {
    const delay = this.backoff.next();
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
      this.backoff.reset();
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
