// How fresh the figures are, shown to the reader: the connection badge and the STALE marker.

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

/** A wall-time span in seconds as "42 s", "5 min" or "3 h". */
function ago(s) {
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  return Math.round(s / 3600) + " h";
}
