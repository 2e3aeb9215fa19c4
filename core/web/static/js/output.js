// A deploy's output, line by line, in a bounded log: at most `limit` lines stay on the page
// (older ones are counted, not kept), so a deploy that streams for hours keeps the page's
// memory flat. Lines are ordered by their `seq` (the stored log and the live events merge
// without a duplicate).

import { appendAnsi, newState } from "./ansi.js";
import { h } from "./dom.js";

export const LINE_LIMIT = 2000;
const SCROLL_EVERY = 150;
const TRIM_BATCH = 250;

export class OutputLog {
  constructor(limit = LINE_LIMIT) {
    this.limit = limit;
    this.el = h("div", { class: "log", role: "log", "aria-label": "Deploy output", tabindex: "0" });
    this.reset();
    this.el.addEventListener("scroll", () => {
      const el = this.el;
      this.follow = el.scrollTop + el.clientHeight >= el.scrollHeight - 24;
    });
  }

  reset(deployId = null) {
    this.deploy = deployId;
    this.lastSeq = -1;
    this.lines = 0;
    this.dropped = 0;
    this.open = {};          // stream -> the line element still waiting for its newline
    this.states = {};        // stream -> ANSI state
    this.follow = true;
    this.scrollPending = false;
    this.droppedEl = h("div", { class: "dropped", hidden: true });
    this.el.replaceChildren(this.droppedEl);
  }

  step(name) {
    this.open = {};
    this.addLine(h("div", { class: "line step" }, `▸ ${name}`));
  }

  // One output chunk: {seq, step, stream, text}, with the event's time `t` when it came live.
  chunk(chunk, t) {
    if (chunk.seq <= this.lastSeq) return false;
    this.lastSeq = chunk.seq;
    const stream = chunk.stream || "stdout";
    const state = this.states[stream] || (this.states[stream] = newState());
    const parts = String(chunk.text).split("\n");
    const endsOpen = parts[parts.length - 1] !== "";
    if (!endsOpen) parts.pop();
    parts.forEach((part, index) => {
      let line = index === 0 ? this.open[stream] : null;
      if (!line) {
        line = h("div", { class: stream === "stderr" ? "line err" : "line" });
        if (t !== undefined) line.dataset.t = String(t);
        this.addLine(line);
      }
      appendAnsi(line, part, state);
      this.open[stream] = null;
      if (index === parts.length - 1 && endsOpen) this.open[stream] = line;
    });
    return true;
  }

  addLine(line) {
    this.el.append(line);
    this.lines += 1;
    // Trimmed in batches: removing the first line moves everything visible, and a repaint
    // per line would be most of what a page streaming fast costs.
    if (this.lines <= this.limit + TRIM_BATCH) { this.scroll(); return; }
    while (this.lines > this.limit) {
      const first = this.droppedEl.nextSibling;
      if (!first) break;
      first.remove();
      this.lines -= 1;
      this.dropped += 1;
    }
    if (this.dropped) {
      this.droppedEl.hidden = false;
      this.droppedEl.textContent = `… ${this.dropped} earlier lines not shown`;
    }
    this.scroll();
  }

  // Follow the end at most SCROLL_EVERY ms apart: lines added below the fold cost no paint
  // (content-visibility), a scroll repaints the whole log, and a page streaming 1,000 lines a
  // second would otherwise repaint every frame.
  scroll() {
    if (!this.follow || this.scrollPending) return;
    this.scrollPending = true;
    setTimeout(() => requestAnimationFrame(() => {
      this.scrollPending = false;
      this.el.scrollTop = this.el.scrollHeight;
    }), SCROLL_EVERY);
  }
}
