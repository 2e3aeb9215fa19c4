// Events: the stream as it comes, with the command line's filters (kind, stack); the newest
// rows at the bottom, at most ROW_LIMIT kept on the page.

import { clock, h, replace } from "./dom.js";
import { stripAnsi } from "./ansi.js";
import { EventSocket } from "./stream.js";

const ROW_LIMIT = 1000;
const HISTORY = 300;
const KINDS = ["core", "resources", "webhook", "change", "plan", "resource", "deploy", "deploy.started",
  "deploy.step", "deploy.output", "deploy.finished", "health", "docker", "drift", "periphery", "intent"];

export function summary(ev) {
  const d = ev.data || {};
  switch (ev.kind) {
    case "deploy.output": return stripAnsi(String(d.text || "")).replace(/\n$/, "");
    case "deploy.step": return `${d.step} ${d.state}${d.message ? ": " + d.message : ""}`;
    case "deploy.started": return `run #${d.run} deploy #${d.deploy} on ${d.server} (${d.trigger})`;
    case "deploy.finished": return `${d.status}${d.step ? " at " + d.step : ""}: ${d.message || ""}`;
    case "health.changed": return `${d.healthy ? "healthy" : "unhealthy"}${d.detail ? ": " + d.detail : ""}`;
    case "drift": return `${d.reason}: ${d.detail} (${d.action})`;
    case "docker.event": return `${d.type} ${d.action} ${d.name || d.actor}`;
    case "plan.made": return `plan ${d.plan}: ${JSON.stringify(d.counts)}`;
    case "intent.recorded": return `${d.source}: ${d.reason}`;
    case "periphery.lost": return d.reason;
    default: return JSON.stringify(d);
  }
}

export function eventsPage(main, ctx, params) {
  const kind = params.get("kind") || "";
  const stack = params.get("stack") || "";
  const list = h("ol", { class: "events", "aria-label": "Events", tabindex: "0" });
  const count = h("span", { class: "muted small" });
  const kindInput = h("input", { id: "f-kind", name: "kind", value: kind, list: "kinds", placeholder: "deploy,drift", autocomplete: "off" });
  const stackInput = h("input", { id: "f-stack", name: "stack", value: stack, placeholder: "any stack", autocomplete: "off" });
  const form = h("form", { class: "filters", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (kindInput.value.trim()) q.set("kind", kindInput.value.trim());
    if (stackInput.value.trim()) q.set("stack", stackInput.value.trim());
    location.hash = `#/events${q.toString() ? "?" + q : ""}`;
  } },
  h("div", {}, h("label", { for: "f-kind" }, "Kind"), kindInput,
    h("datalist", { id: "kinds" }, KINDS.map((k) => h("option", { value: k })))),
  h("div", {}, h("label", { for: "f-stack" }, "Stack"), stackInput),
  h("button", { type: "submit" }, "Filter"));
  replace(main, h("h1", {}, "Events ", count), form, list);

  let rows = 0;
  let follow = true;
  list.addEventListener("scroll", () => { follow = list.scrollTop + list.clientHeight >= list.scrollHeight - 24; });
  let scrollPending = false;

  function row(ev) {
    const li = h("li", { dataset: { id: String(ev.id), kind: ev.kind, t: String(ev.time) } },
      h("span", { class: "mono small muted" }, `#${ev.id}`),
      h("span", { class: "time small" }, clock(ev.time)),
      h("span", { class: `kind k-${ev.kind.split(".")[0]}` }, ev.kind),
      h("span", { class: "res small" }, ev.resource),
      h("span", { class: "text small" }, summary(ev)));
    list.append(li);
    rows += 1;
    if (rows > ROW_LIMIT + 200) {  // in batches: each removal moves every visible row
      while (rows > ROW_LIMIT) { list.firstChild.remove(); rows -= 1; }
    }
    count.textContent = `${rows} shown`;
    if (follow && !scrollPending) {
      scrollPending = true;
      setTimeout(() => requestAnimationFrame(() => {
        scrollPending = false;
        list.scrollTop = list.scrollHeight;
      }), 100);
    }
  }

  let socket = null;
  let disposed = false;
  return {
    async load() {
      const last = await ctx.whenLive();  // the newest id: show the recent ones, then live
      if (disposed) return;
      socket = new EventSocket({ query: { kind, stack }, since: Math.max(0, last - HISTORY), onEvent: row });
      socket.start();
    },
    onEvent() {},
    dispose() { disposed = true; if (socket) socket.stop(); },
  };
}
