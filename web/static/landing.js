// The landing page (/): every centre that has figures, with links to its three views.
// (The live table below it is live.js.)
import { listCentres } from "./centres.js";
import { h } from "./dom.js";
import { pageUrl } from "./nav.js";

const list = document.getElementById("view-list");

async function refresh() {
  let names = [];
  try {
    names = await listCentres();
  } catch (e) {
    setTimeout(refresh, 5000);
    return;
  }
  if (!names.length) {
    setTimeout(refresh, 3000);
    return;
  }
  const q = (c) => "?centre=" + encodeURIComponent(c);
  list.replaceChildren(...names.map((c) => h("li", { dataset: { centre: c } },
    h("b", {}, c),
    h("a", { href: pageUrl("wallboard") + q(c), class: "to-wallboard" }, "Wallboard"),
    h("a", { href: pageUrl("supervisor") + q(c), class: "to-supervisor" }, "Supervisor"),
    h("a", { href: pageUrl("alerts") + q(c), class: "to-alerts" }, "Alerts"))));
  setTimeout(refresh, 30000); // a new centre shows up without a reload
}

refresh();
