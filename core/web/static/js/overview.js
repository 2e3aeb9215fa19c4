// Overview: the agents, the stacks by tier with their state and last deploy, the runs going on.

import { api, ApiError } from "./api.js";
import { ago, badge, debounce, h, replace, short, stackHref } from "./dom.js";
import { STATE_TEXT, stackState } from "./state.js";

const REFRESH_KINDS = new Set([
  "deploy.started", "deploy.finished", "health.changed", "drift", "periphery.connected",
  "periphery.lost", "resource.applied", "intent.recorded", "docker.engine",
]);

export function overview(main, ctx) {
  const live = {};            // stack -> {deploying, step, run, drifted}
  let data = null;
  const agentsEl = h("div", { class: "panel scroll-x" }, h("p", { class: "muted" }, "Loading…"));
  const runsEl = h("div", { class: "panel" });
  const stacksEl = h("div", {});
  replace(
    main,
    h("h1", {}, "Overview"),
    h("h2", {}, "Agents"), agentsEl,
    h("h2", {}, "Runs going on"), runsEl,
    h("h2", {}, "Stacks"), stacksEl,
  );

  async function load() {
    try {
      const [stacks, servers] = await Promise.all([api("GET", "/api/stacks"), api("GET", "/api/servers")]);
      data = { stacks, servers };
      for (const s of stacks.stacks) {
        const rec = s.recorded || {};
        if (live[s.name] && live[s.name].deploying && rec.status !== "running" && rec.status !== "pending"
            && live[s.name].finished) delete live[s.name];
      }
      draw();
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) replace(stacksEl, h("p", { class: "error" }, err.message));
    }
  }
  const refresh = debounce(load, 400);

  function draw() {
    if (!data) return;
    drawAgents();
    drawStacks();
    drawRuns();
  }

  function drawAgents() {
    const servers = data.servers.servers || [];
    const rows = servers.map((s) => h("tr", {},
      h("td", {}, s.name),
      h("td", {}, badge(s.connected ? "connected" : "lost", s.connected ? "connected" : "disconnected")),
      h("td", { class: "small" }, s.software || "—"),
      h("td", { class: "small" }, s.connected ? "now" : ago(s.last_seen)),
    ));
    const problems = (data.servers.problems || []).map((p) => h("p", { class: "error small" }, p));
    replace(agentsEl, servers.length
      ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Server"), h("th", {}, "Agent"),
          h("th", {}, "Version"), h("th", {}, "Last seen"))), h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No servers yet."), problems);
  }

  function drawStacks() {
    const stacks = data.stacks.stacks || [];
    const order = [...(data.stacks.tiers || [])];
    for (const s of stacks) if (!order.includes(s.tier)) order.push(s.tier);
    const sections = order.map((tier) => {
      const mine = stacks.filter((s) => s.tier === tier);
      if (!mine.length) return null;
      return h("section", { class: "tier", "aria-label": `Tier ${tier || "none"}` },
        h("h3", {}, tier || "(no tier)", " ", h("span", { class: "muted small" }, `${mine.length} stacks`)),
        h("div", { class: "cards" }, mine.map(card)));
    });
    replace(stacksEl, stacks.length ? sections : h("p", { class: "muted" }, "No stacks applied yet: see Sync."));
  }

  function card(s) {
    const state = stackState(s, live[s.name]);
    const rec = s.recorded || {};
    const l = live[s.name];
    let why = "";
    if (state === "deploying") why = l && l.step ? `step ${l.step}` : "waiting to start";
    else if (state === "failed") why = rec.reason || `failed at ${rec.failed_step}`;
    else if (state === "changed" && rec.status) why = (s.reasons || []).join("; ");
    else if (state === "drifted") why = (s.engine || {}).detail || (l && l.driftReason) || "";
    const last = rec.status
      ? h("span", { class: "small muted" }, `last deploy `, badge(rec.status), ` ${short(rec.commit)} · ${ago(rec.finished_at)}`)
      : h("span", { class: "small muted" }, "never deployed");
    const buttons = ctx.canWrite
      ? h("button", { type: "button", class: "deploy", "aria-label": `Deploy ${s.name}`, onclick: () => ctx.deploy(s.name) }, "Deploy")
      : null;
    return h("article", { class: `card st-${state}`, dataset: { stack: s.name, state } },
      h("div", { class: "head" }, h("a", { class: "name", href: stackHref(s.name) }, s.name),
        badge(state, STATE_TEXT[state])),
      why ? h("div", { class: "why" }, why) : null,
      h("div", { class: "foot" }, last, buttons));
  }

  function drawRuns() {
    const runs = new Map();
    for (const s of data.stacks.stacks || []) {
      const rec = s.recorded || {};
      const l = live[s.name];
      const running = (l && l.deploying) || rec.status === "running" || rec.status === "pending";
      if (!running) continue;
      const run = (l && l.run) || rec.run;
      if (!runs.has(run)) runs.set(run, []);
      runs.get(run).push({ name: s.name, step: l && l.step, status: l && l.deploying ? "running" : rec.status });
    }
    replace(runsEl, runs.size
      ? h("ul", {}, [...runs.entries()].map(([run, stacks]) => h("li", {}, `run #${run}: `,
          stacks.map((x, i) => [i ? ", " : "", h("a", { href: stackHref(x.name) }, x.name),
            ` (${x.step || x.status})`]))))
      : h("p", { class: "muted" }, "Nothing is deploying."));
  }

  const redraw = debounce(draw, 100);

  return {
    load,
    refresh: load,
    onEvent(ev) {
      const d = ev.data || {};
      if (ev.kind === "deploy.started") live[d.stack] = { deploying: true, run: d.run, step: "" };
      else if (ev.kind === "deploy.step" && live[d.stack]) live[d.stack].step = d.step;
      else if (ev.kind === "deploy.finished" && live[d.stack]) {
        live[d.stack].deploying = false;
        live[d.stack].finished = true;
      } else if (ev.kind === "drift") live[d.stack] = { ...(live[d.stack] || {}), drifted: true, driftReason: d.detail };
      if (ev.kind.startsWith("deploy.") && ev.kind !== "deploy.output") redraw();
      if (REFRESH_KINDS.has(ev.kind)) refresh();
    },
    dispose() { refresh.cancel(); redraw.cancel(); },
  };
}
