// Building and finding the pages' elements: h() for new nodes, el() by id, say() for the message line.

/** h("td", {class: "num", title: "x"}, "text", childNode, ...) */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

/** The element with this id. */
export const el = (id) => document.getElementById(id);

/** Show `text` in the page's message line (#message), or hide the line when it is empty. */
export function say(text) {
  const m = el("message");
  m.textContent = text || "";
  m.hidden = !text;
}
