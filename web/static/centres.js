// Which centre a page shows, and what the pages know of each centre (its time zone).

import { getJSON } from "./api.js";
import { params } from "./nav.js";

/** The centres that have figures, in name order. */
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

/** Every centre's time zone that the gateway names: {centre: zone}. */
export async function allZones() {
  await centreZone("");
  const out = {};
  for (const [k, v] of Object.entries(centreInfo || {})) if (v.timezone) out[k] = v.timezone;
  return out;
}
