// Stack: services and health, desired / last deployed / running commit, the deploy history,
// a deploy's steps with their timings and its output line by line, a failure's reason on top.

import { api, ApiError } from "./api.js";
import { ago, badge, clock, debounce, duration, h, replace, short } from "./dom.js";
import { OutputLog } from "./output.js";
import { STATE_TEXT, stackState } from "./state.js";

export function stackPage(main, ctx, name) {
  let info = null;            // GET /api/stacks/NAME
  let history = [];
  let shown = null;           // the deploy whose steps and output are shown
  let steps = [];
  let liveDeploy = null;      // a deploy of this stack running now (from events)
  let waiting = [];           // live chunks held while the stored log loads
  let loadingLog = false;
  const log = new OutputLog();

  const title = h("h1", {}, name);
  const banner = h("div", {});
  const commits = h("dl", { class: "kv panel" });
  const services = h("div", { class: "panel scroll-x" }, h("p", { class: "muted" }, "Loading…"));
  const stepsEl = h("ul", { class: "steps", "aria-label": "Steps" });
  const deployHead = h("div", { class: "row deploy-head" });
  const historyEl = h("ul", { class: "history", "aria-label": "Deploy history" });
  replace(main, title, banner,
    h("h2", {}, "Commits"), commits,
    h("h2", {}, "Services"), services,
    h("h2", {}, "Deploy"), deployHead, stepsEl, log.el,
    h("h2", {}, "History"), historyEl);

  async function load() {
    try {
      const [stack, hist] = await Promise.all([
        api("GET", `/api/stacks/${encodeURIComponent(name)}`, undefined, { accept: [503] }),
        api("GET", `/api/stacks/${encodeURIComponent(name)}/deploys?limit=20`),
      ]);
      info = stack;
      history = hist.deploys || [];
      drawInfo();
      drawHistory();
      if (shown === null && history.length) await show(liveDeploy || history[0].id);
      else if (shown !== null) await refreshShown();
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) replace(banner, h("div", { class: "banner bad" }, `No stack named ${name}.`));
      else if (!(err instanceof ApiError && err.status === 401)) replace(banner, h("div", { class: "banner bad" }, err.message));
    }
  }
  const refresh = debounce(load, 500);

  function drawInfo() {
    const rec = info.recorded || {};
    const state = stackState({ ...info, name }, liveDeploy ? { deploying: true } : null);
    replace(title, name, " ", badge(state, STATE_TEXT[state]), ctx.canWrite
      ? h("button", { type: "button", class: "deploy primary", onclick: () => ctx.deploy(name) }, "Deploy")
      : null);
    if ((rec.status === "failed" || rec.status === "interrupted") && !liveDeploy) {
      replace(banner, h("div", { class: "banner bad", role: "alert" },
        h("strong", {}, `Deploy #${rec.id} ${rec.status}`, rec.failed_step ? ` at ${rec.failed_step}` : ""),
        h("span", { class: "reason" }, rec.reason || ""),
        rec.tail ? h("pre", {}, rec.tail) : null));
    } else if (!info.healthy && info.error) {
      replace(banner, h("div", { class: "banner warn" }, typeof info.error === "string" ? info.error : info.error.message));
    } else {
      replace(banner);
    }
    const engine = info.engine || {};
    replace(commits,
      h("dt", {}, "Desired"), h("dd", { class: "mono" }, short((info.desired || {}).commit)),
      h("dt", {}, "Last deployed"), h("dd", {}, h("span", { class: "mono" }, short(rec.commit)), " ",
        rec.status ? badge(rec.status) : "never", rec.finished_at ? ` ${ago(rec.finished_at)}` : ""),
      h("dt", {}, "Running"), h("dd", {}, h("span", { class: "mono" }, short((info.last_healthy || {}).commit)),
        " ", badge(engine.state || "unknown", `engine: ${engine.state || "unknown"}`),
        engine.detail ? h("span", { class: "small muted" }, ` ${engine.detail}`) : null),
      h("dt", {}, "Tier"), h("dd", {}, info.tier || "—"),
      h("dt", {}, "Mode"), h("dd", {}, info.mode || ""),
      info.converged ? null : [h("dt", {}, "Not converged"), h("dd", {}, (info.reasons || []).join("; "))]);
    const list = info.services || [];
    replace(services, list.length
      ? h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Service"), h("th", {}, "Health"), h("th", {}, "Detail"))),
          h("tbody", {}, list.map((s) => h("tr", {}, h("td", {}, s.service),
            h("td", {}, badge(s.healthy ? "healthy" : (s.state === "waiting" ? "waiting" : "unhealthy"), s.healthy ? "healthy" : (s.state || "unhealthy"))),
            h("td", { class: "small" }, s.detail || "")))))
      : h("p", { class: "muted" }, info.running === false ? "Nothing of this stack runs." : (info.error ? "Unknown: the agent did not answer." : "No services.")));
  }

  function drawHistory() {
    replace(historyEl, history.length ? history.map((d) => h("li", {},
      h("button", { type: "button", "aria-pressed": String(d.id === shown), onclick: () => show(d.id) },
        h("span", { class: "mono" }, `#${d.id}`), badge(d.status), h("span", { class: "mono" }, short(d.commit)),
        h("span", { class: "small muted" }, `${d.source || d.trigger || ""} · ${d.started_at ? clock(d.started_at) : "not started"}`,
          d.finished_at && d.started_at ? ` · ${duration(d.finished_at - d.started_at)}` : ""),
        d.reason && d.status !== "healthy" ? h("span", { class: "small" }, d.reason) : null)))
      : h("li", { class: "muted" }, "Never deployed."));
  }

  function drawSteps() {
    const now = Date.now() / 1000;
    replace(stepsEl, steps.map((s) => {
      const end = s.finished_at || (s.status === "running" ? now : null);
      const took = end && s.started_at ? duration(end - s.started_at) : "";
      return h("li", { class: `s-${s.status}`, title: s.message || "" }, `${s.step} `,
        h("span", { class: "muted" }, s.status === "running" ? `running ${took}` : `${s.status} ${took}`));
    }));
  }

  async function show(deployId) {
    shown = deployId;
    drawHistory();
    log.reset(deployId);
    steps = [];
    drawSteps();
    loadingLog = true;
    try {
      const [deploy, out] = await Promise.all([
        api("GET", `/api/deploys/${deployId}`),
        api("GET", `/api/deploys/${deployId}/log?after=-1`),
      ]);
      if (shown !== deployId) return;
      steps = deploy.steps || [];
      drawSteps();
      replace(deployHead, h("span", {}, `Deploy #${deploy.id} `), badge(deploy.status),
        h("span", { class: "small muted" }, ` run #${deploy.run_id} · ${short(deploy.commit)}`));
      let step = null;
      for (const line of out.lines || []) {
        if (line.step !== step) { step = line.step; log.step(step); }
        log.chunk(line);
      }
      log.currentStep = step;
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) replace(deployHead, h("span", { class: "error" }, err.message));
    } finally {
      loadingLog = false;
    }
    const held = waiting;
    waiting = [];
    for (const ev of held) output(ev);
  }

  async function refreshShown() {
    if (shown === null) return;
    try {
      const deploy = await api("GET", `/api/deploys/${shown}`);
      steps = deploy.steps || [];
      drawSteps();
      replace(deployHead, h("span", {}, `Deploy #${deploy.id} `), badge(deploy.status),
        h("span", { class: "small muted" }, ` run #${deploy.run_id} · ${short(deploy.commit)}`));
    } catch (err) { /* shown at the next refresh */ }
  }

  // A live output chunk of the shown deploy; one missing in between is fetched first.
  let filling = false;
  async function output(ev) {
    const d = ev.data;
    if (loadingLog || filling) { waiting.push(ev); return; }
    if (d.seq > log.lastSeq + 1) {
      filling = true;
      waiting.push(ev);
      try {
        for (let tries = 0; tries < 8 && waiting.length && waiting[0].data.seq > log.lastSeq + 1; tries++) {
          const out = await api("GET", `/api/deploys/${d.deploy}/log?after=${log.lastSeq}`);
          for (const line of out.lines || []) {
            if (line.seq >= waiting[0].data.seq) break;
            if (line.step !== log.currentStep) { log.currentStep = line.step; log.step(line.step); }
            log.chunk(line);
          }
          if (waiting[0].data.seq > log.lastSeq + 1) await new Promise((r) => setTimeout(r, 250));
        }
      } catch (err) { /* the live lines go on */ } finally {
        filling = false;
      }
      const held = waiting;
      waiting = [];
      for (const x of held) output(x);
      return;
    }
    if (d.step !== log.currentStep) { log.currentStep = d.step; log.step(d.step); }
    log.chunk(d, ev.time);
  }

  const tick = setInterval(() => { if (steps.some((s) => s.status === "running")) drawSteps(); }, 1000);

  return {
    load,
    refresh: load,
    onEvent(ev) {
      if (ev.resource !== `stack:${name}`) return;
      const d = ev.data || {};
      switch (ev.kind) {
        case "deploy.started":
          liveDeploy = d.deploy;
          shown = d.deploy;
          log.reset(d.deploy);
          log.currentStep = null;
          steps = [];
          drawSteps();
          replace(banner);
          replace(deployHead, h("span", {}, `Deploy #${d.deploy} `), badge("running"),
            h("span", { class: "small muted" }, ` run #${d.run} · ${short(d.commit)} · ${d.trigger}`));
          if (info) drawInfo();
          refresh();
          break;
        case "deploy.step":
          if (d.deploy !== shown) break;
          if (d.state === "started") {
            steps = steps.filter((s) => s.step !== d.step);
            steps.push({ step: d.step, status: "running", started_at: ev.time, finished_at: null });
          } else {
            const s = steps.find((x) => x.step === d.step);
            if (s) { s.status = d.state; s.finished_at = ev.time; s.message = d.message; if (d.seconds) s.started_at = ev.time - d.seconds; }
          }
          drawSteps();
          break;
        case "deploy.output":
          if (d.deploy === shown) output(ev);
          break;
        case "deploy.finished":
          if (d.deploy === liveDeploy) liveDeploy = null;
          if (d.deploy === shown) {
            replace(deployHead, h("span", {}, `Deploy #${d.deploy} `), badge(d.status),
              h("span", { class: "small muted" }, ` ${duration(d.seconds)}`));
          }
          refresh();
          break;
        case "health.changed": case "drift": case "docker.event":
          refresh();
          break;
        default:
          break;
      }
    },
    dispose() { clearInterval(tick); refresh.cancel(); },
  };
}
