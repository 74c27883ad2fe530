// The page's address and the links between the views: the query parameters, each view's URL, the nav bar.

import { h } from "./dom.js";

/** The query parameters of this page's address. */
export const params = new URLSearchParams(location.search);

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
