// Building the page from data: text always goes in as text nodes (never as HTML).

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  add(el, children);
  return el;
}

export function add(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// What finds "the same" control again after a redraw: its label, else where it leads, else its id.
function focusKey(node) {
  return node.getAttribute("aria-label") || node.getAttribute("href") || (node.id ? `#${node.id}` : null);
}

// Redraws keep the keyboard's place: when focus was inside `el`, the control with the same tag
// and key in the new content takes it back (a deploy's events redraw the stack list while a
// keyboard user sits on a card's link or Deploy button).
export function replace(el, ...children) {
  const focused = document.activeElement;
  const key = focused && focused !== el && el.contains(focused) ? focusKey(focused) : null;
  const tag = key ? focused.tagName : null;
  el.replaceChildren();
  add(el, children);
  if (key) {
    const again = [...el.getElementsByTagName(tag)].find((node) => focusKey(node) === key);
    if (again) again.focus({ preventScroll: true });
  }
  return el;
}

export function short(commit) {
  return commit ? String(commit).slice(0, 8) : "—";
}

export function ago(seconds) {
  if (!seconds) return "never";
  const d = Date.now() / 1000 - seconds;
  if (d < 5) return "just now";
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return `${Math.round(d / 86400)} d ago`;
}

export function clock(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

export function badge(state, text) {
  return h("span", { class: `badge s-${state}` }, text || state);
}

export function link(hash, text) {
  return h("a", { href: hash }, text);
}

export function stackHref(name) {
  return `#/stack/${encodeURIComponent(name)}`;
}

export function debounce(fn, ms) {
  let timer = null;
  const wrapped = () => {
    if (timer !== null) return;
    timer = setTimeout(() => { timer = null; fn(); }, ms);
  };
  wrapped.cancel = () => { clearTimeout(timer); timer = null; };
  return wrapped;
}
