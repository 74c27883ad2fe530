// How the pages write numbers and instants: money, counts, durations, percentages, windows, clocks.

export const DASH = "\u2013";

const missing = (v) => v === null || v === undefined || !Number.isFinite(v);

/** Money with two decimals, as Number.prototype.toFixed rounds it; "–" for null. */
export function money(v) {
  return missing(v) ? DASH : v.toFixed(2);
}

/** Money with two decimals and thousands separators (totals). */
export function bigMoney(v) {
  if (missing(v)) return DASH;
  const [int, dec] = Math.abs(v).toFixed(2).split(".");
  return (v < 0 ? "-" : "") + int.replace(/\B(?=(\d{3})+(?!\d))/g, ",") + "." + dec;
}

/** A count (figures carry counts as numbers, sometimes as floats such as 12.0). */
export function count(v) {
  if (missing(v)) return DASH;
  return String(Math.round(v)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** Seconds as m:ss, or h:mm:ss from an hour. */
export function duration(s) {
  if (missing(s)) return DASH;
  const t = Math.round(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = String(t % 60).padStart(2, "0");
  return h ? h + ":" + String(m).padStart(2, "0") + ":" + sec : m + ":" + sec;
}

/** A ratio as a whole percentage ("87%"). */
export function percent(v) {
  return missing(v) ? DASH : Math.round(v * 100) + "%";
}

/** A band as "low–high". */
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

/** An Intl format of the options in the zone tz (the browser's when tz is empty or unknown). */
function timeFormat(key, tz, options) {
  const k = key + "|" + (tz || "");
  let f = timeFormats.get(k);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat("en-GB", tz ? Object.assign({ timeZone: tz }, options) : options);
    } catch (e) { // an unknown zone: the browser's own
      f = new Intl.DateTimeFormat("en-GB", options);
    }
    timeFormats.set(k, f);
  }
  return f;
}

const CLOCK = {
  hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23", timeZoneName: "short",
};
const DATE_CLOCK = Object.assign({ day: "numeric", month: "short" }, CLOCK);
const HHMM = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };

/** "11:07:57 CET": an instant in the time zone tz (the browser's when tz is empty). */
export function clock(ms, tz) {
  if (ms === null || ms === undefined) return DASH;
  return timeFormat("clock", tz, CLOCK).format(new Date(ms));
}

/** "15 Jan, 11:07:57 CET" */
export function dateClock(ms, tz) {
  if (ms === null || ms === undefined) return DASH;
  return timeFormat("date", tz, DATE_CLOCK).format(new Date(ms));
}

/** "11:07" (no seconds, no zone), for chart axes. */
export function hhmm(ms, tz) {
  return timeFormat("hhmm", tz, HHMM).format(new Date(ms));
}

/** "2026-01-15 10:00:00 UTC": an instant in UTC, to the second (the live table). */
export function utcInstant(ms) {
  if (ms === null || ms === undefined) return DASH;
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}
