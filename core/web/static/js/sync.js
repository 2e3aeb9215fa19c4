// Sync: the pending plan with its field-level diff, and Apply with the plan's id. A plan that
// changed since it was shown is refused by the core (409) and shown again, to be reviewed.

import { api, ApiError } from "./api.js";
import { badge, h, replace, short, stackHref } from "./dom.js";

export function syncList(main) {
  const list = h("ul", {}, h("li", { class: "muted" }, "Loading…"));
  replace(main, h("h1", {}, "Syncs"), list);
  return {
    async load() {
      try {
        const body = await api("GET", "/api/syncs");
        const names = (body.syncs || []).map((s) => (typeof s === "string" ? s : s.name));
        replace(list, names.length ? names.map((n) => h("li", {}, h("a", { href: `#/sync/${encodeURIComponent(n)}` }, n)))
          : h("li", { class: "muted" }, "No syncs."));
        if (names.length === 1) location.replace(`#/sync/${encodeURIComponent(names[0])}`);
      } catch (err) {
        replace(list, h("li", { class: "error" }, err.message));
      }
    },
    onEvent() {},
    dispose() {},
  };
}

function value(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "string") return v;
  return JSON.stringify(v, null, 1);
}

export function syncPage(main, ctx, name) {
  let plan = null;
  let busy = false;
  const notice = h("div", {});
  const body = h("div", {}, h("p", { class: "muted" }, "Planning…"));
  const actions = h("div", { class: "row" });
  replace(main, h("h1", {}, `Sync ${name}`), notice, actions, body);

  async function makePlan(message) {
    if (!ctx.canWrite) {
      replace(body, h("p", { class: "muted" }, "Viewers see the plans operators make: the next one shows here."));
      return;
    }
    busy = true;
    drawActions();
    try {
      plan = await api("POST", `/api/syncs/${encodeURIComponent(name)}/plan`);
      if (message) replace(notice, message);
      draw();
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) {
        replace(body, h("div", { class: "banner bad" }, err.message,
          err.body && err.body.error && err.body.error.findings ? h("pre", {}, err.body.error.findings.join("\n")) : null));
      }
    } finally {
      busy = false;
      drawActions();
    }
  }

  function drawActions() {
    const nothing = plan && !plan.changes.length && !plan.deploys.length;
    replace(actions,
      ctx.canWrite ? h("button", { type: "button", onclick: () => makePlan(null), disabled: busy }, "Plan again") : null,
      ctx.canWrite && plan && !nothing
        ? h("button", { type: "button", class: "primary apply", onclick: apply, disabled: busy, dataset: { plan: plan.id } }, `Apply plan ${plan.id}`)
        : null);
  }

  function draw() {
    const c = plan.counts || {};
    const changes = plan.changes.map((ch) => h("div", { class: "panel change", dataset: { resource: `${ch.kind}:${ch.name}` } },
      h("div", { class: "row" }, h("strong", { class: `act-${ch.action}` }, ch.action), h("span", {}, `${ch.kind} `),
        ch.kind === "stack" ? h("a", { href: stackHref(ch.name) }, ch.name) : h("span", {}, ch.name)),
      ch.fields && ch.fields.length
        ? h("div", { class: "scroll-x" }, h("table", { class: "diff" },
            h("thead", {}, h("tr", {}, h("th", {}, "Field"), h("th", {}, "Now"), h("th", {}, "After apply"))),
            h("tbody", {}, ch.fields.map((f) => h("tr", {}, h("td", {}, f.path),
              h("td", { class: "old" }, value(f.old)), h("td", { class: "new" }, value(f.new)))))))
        : null));
    const deploys = plan.deploys.map((d) => h("li", {}, h("a", { href: stackHref(d.stack) }, d.stack), ": ",
      h("span", { class: "muted" }, (d.reasons || []).join("; "))));
    replace(body,
      h("p", { class: "muted" }, `Plan ${plan.id}`, plan.commit ? ` at ${short(plan.commit)}` : "",
        ` · ${c.create || 0} to create, ${c.update || 0} to update, ${c.delete || 0} to delete, ${c.deploy || 0} to deploy`),
      plan.changes.length || plan.deploys.length ? null : h("div", { class: "banner ok" }, "Nothing to do: the state matches the files."),
      changes.length ? [h("h2", {}, "Changes"), changes] : null,
      deploys.length ? [h("h2", {}, "Will deploy"), h("ul", { class: "deploys" }, deploys)] : null,
      plan.notes && plan.notes.length ? [h("h2", {}, "Notes"), h("pre", { class: "small" }, plan.notes.join("\n"))] : null);
    drawActions();
  }

  async function apply() {
    if (!plan || busy) return;
    busy = true;
    drawActions();
    const shownId = plan.id;
    try {
      const result = await api("POST", `/api/syncs/${encodeURIComponent(name)}/apply`, { plan_id: shownId, if_unchanged: true });
      const runs = Object.entries(result.runs || {});
      replace(notice, h("div", { class: "banner ok", role: "status" }, `Applied plan ${shownId} (state revision ${result.revision}).`,
        runs.length ? h("ul", {}, runs.map(([stack, run]) => h("li", {}, h("a", { href: stackHref(stack) }, stack), ` deploys in run #${run}`))) : null,
        result.deploy_error ? h("p", { class: "error" }, result.deploy_error) : null,
        result.note ? h("p", {}, result.note) : null));
      busy = false;
      await makePlan(null);
    } catch (err) {
      busy = false;
      if (err instanceof ApiError && err.code === "plan_changed" && err.body.error.plan) {
        plan = err.body.error.plan;
        replace(notice, h("div", { class: "banner warn", role: "alert" }, `Not applied: the plan changed since it was shown (${shownId}). Here is the new plan, ${plan.id}: review it and apply again.`));
        draw();
      } else if (err instanceof ApiError && err.code === "plan_stale") {
        await makePlan(h("div", { class: "banner warn", role: "alert" }, `Not applied: ${err.message}. Here is a new plan: review it and apply again.`));
      } else if (!(err instanceof ApiError && err.status === 401)) {
        replace(notice, h("div", { class: "banner bad", role: "alert" }, err.message));
        drawActions();
      }
    }
  }

  return {
    load: () => makePlan(null),
    async onEvent(ev) {
      if (ev.kind === "plan.made" && ev.resource === `sync:${name}` && !ctx.canWrite) {
        try {
          plan = await api("GET", `/api/plans/${encodeURIComponent(ev.data.plan)}`);
          draw();
        } catch (err) { /* the next plan shows */ }
      }
    },
    dispose() {},
  };
}
