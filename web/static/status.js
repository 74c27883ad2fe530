// A figure's status against its band as the pages show it: a word, a shape and a colour class.

import { h } from "./dom.js";

// The word and the shape carry the meaning without the colour (for colour-blind readers);
// the class carries the colour.
export const STATUS = {
  ok: { word: "OK", shape: "\u2713", cls: "st-ok", title: "cost per call within the band" },
  above: { word: "ABOVE", shape: "\u25B2", cls: "st-above", title: "cost per call above the band" },
  below: { word: "BELOW", shape: "\u25BC", cls: "st-below", title: "cost per call below the band" },
  insufficient: {
    word: "FEW CALLS", shape: "\u25CB", cls: "st-insufficient",
    title: "too few calls handled to judge (below the rule's min_calls)",
  },
};
const UNKNOWN_STATUS = { word: "\u2013", shape: "", cls: "st-none", title: "no status" };

export function statusOf(status) {
  return STATUS[status] || UNKNOWN_STATUS;
}

/** A status chip: shape and word, classed by status. */
export function statusChip(status, extraClass) {
  const s = statusOf(status);
  return h("span", { class: "chip " + s.cls + (extraClass ? " " + extraClass : ""), title: s.title },
    s.shape ? h("span", { class: "shape", "aria-hidden": "true" }, s.shape) : null,
    h("span", { class: "word" }, s.word));
}

/** A direction chip for alerts ("above" / "below"), with its shape. */
export function directionChip(direction) {
  return statusChip(direction === "above" ? "above" : "below");
}
