// The page's access token: taken from the address once, kept for the tab, sent with every request.
//
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
