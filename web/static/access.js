// What the gateway makes of the page's token: GET /api/whoami, and a banner when it refuses it.

import { h } from "./dom.js";
import { authHeaders, token } from "./token.js";

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
 * cannot be asked (down, or older than tokens): then the page tries everything. The answer
 * is kept; `again` asks anew.
 */
export async function access({ again = false } = {}) {
  if (again) whoami = null;
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
