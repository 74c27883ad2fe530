// Cost-per-call points kept in the browser per series, from the figures seen since the page loaded.

/**
 * The points of each series (the gateway keeps no history). A point per `stepMs` of as_of
 * at most (the latest in each step wins) and none older than `keepMs` before the newest.
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
