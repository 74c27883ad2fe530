// GET requests to the gateway's REST API with the page's token; an error answer is thrown.

import { showAccessProblem } from "./access.js";
import { authHeaders } from "./token.js";

/** The JSON body of GET `path`; throws an Error with the gateway's message and `status`. */
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
