// ANSI SGR colours in deploy output, as spans with classes (16 colours) or CSSOM colours (256
// and 24-bit: set through element.style, which the CSP allows, never a style attribute).
// Other escape sequences (cursor moves, erase) are dropped.

const ESC = /\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\r/g;

export function newState() {
  return { fg: null, bg: null, b: false, dim: false, i: false, u: false };
}

function color256(n) {
  if (n < 16) return { index: n };
  if (n < 232) {
    const v = [0, 95, 135, 175, 215, 255];
    const x = n - 16;
    return { rgb: `rgb(${v[Math.floor(x / 36)]},${v[Math.floor(x / 6) % 6]},${v[x % 6]})` };
  }
  const g = 8 + (n - 232) * 10;
  return { rgb: `rgb(${g},${g},${g})` };
}

function apply(state, params) {
  const codes = params === "" ? [0] : params.split(";").map((p) => (p === "" ? 0 : Number(p)));
  for (let k = 0; k < codes.length; k++) {
    const c = codes[k];
    if (c === 0) Object.assign(state, newState());
    else if (c === 1) state.b = true;
    else if (c === 2) state.dim = true;
    else if (c === 3) state.i = true;
    else if (c === 4) state.u = true;
    else if (c === 22) { state.b = false; state.dim = false; }
    else if (c === 23) state.i = false;
    else if (c === 24) state.u = false;
    else if (c >= 30 && c <= 37) state.fg = { index: c - 30 };
    else if (c >= 90 && c <= 97) state.fg = { index: c - 90 + 8 };
    else if (c === 39) state.fg = null;
    else if (c >= 40 && c <= 47) state.bg = { index: c - 40 };
    else if (c >= 100 && c <= 107) state.bg = { index: c - 100 + 8 };
    else if (c === 49) state.bg = null;
    else if ((c === 38 || c === 48) && codes[k + 1] === 5) {
      state[c === 38 ? "fg" : "bg"] = color256(codes[k + 2] & 255);
      k += 2;
    } else if ((c === 38 || c === 48) && codes[k + 1] === 2) {
      const [r, g, b] = codes.slice(k + 2, k + 5).map((x) => (x || 0) & 255);
      state[c === 38 ? "fg" : "bg"] = { rgb: `rgb(${r},${g},${b})` };
      k += 4;
    }
  }
}

function plain(state) {
  return !state.fg && !state.bg && !state.b && !state.dim && !state.i && !state.u;
}

function span(state, text) {
  if (plain(state)) return document.createTextNode(text);
  const el = document.createElement("span");
  const classes = [];
  if (state.b) classes.push("a-b");
  if (state.dim) classes.push("a-dim");
  if (state.i) classes.push("a-i");
  if (state.u) classes.push("a-u");
  if (state.fg) {
    if (state.fg.index !== undefined) classes.push(`fg-${state.fg.index}`);
    else el.style.color = state.fg.rgb;
  }
  if (state.bg) {
    if (state.bg.index !== undefined) classes.push(`bg-${state.bg.index}`);
    else el.style.backgroundColor = state.bg.rgb;
  }
  el.className = classes.join(" ");
  el.textContent = text;
  return el;
}

// Append `text` (one line's worth, no newline) to `el`, with `state` carried across calls.
export function appendAnsi(el, text, state) {
  let at = 0;
  ESC.lastIndex = 0;
  let m;
  while ((m = ESC.exec(text)) !== null) {
    if (m.index > at) el.append(span(state, text.slice(at, m.index)));
    if (m[2] === "m") apply(state, m[1]);
    at = ESC.lastIndex;
  }
  if (at < text.length) el.append(span(state, text.slice(at)));
}

export function stripAnsi(text) {
  return text.replace(ESC, "");
}
