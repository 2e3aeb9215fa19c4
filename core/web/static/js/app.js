// The dashboard: signs in, keeps one live connection to /ws/events, and routes
// #/ (overview), #/stack/NAME, #/syncs, #/sync/NAME and #/events?kind=&stack= to their views.

import { api, ApiError, setSession } from "./api.js";
import { eventsPage } from "./events.js";
import { loginPage } from "./login.js";
import { overview } from "./overview.js";
import { stackPage } from "./stack.js";
import { EventSocket } from "./stream.js";
import { syncList, syncPage } from "./sync.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const conn = document.getElementById("conn");
const who = document.getElementById("who");
const signout = document.getElementById("signout");
const toast = document.getElementById("toast");

let session = null;
let socket = null;
let view = null;
let live = null;             // the newest event id once the stream is live
let liveWaiters = [];
let toastTimer = null;

function say(text) {
  toast.textContent = text;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.textContent = ""; }, 6000);
}

const ctx = {
  get canWrite() { return session !== null && session.role === "operator"; },
  get role() { return session ? session.role : null; },
  say,
  lastEventId: () => (socket ? socket.last : null),
  whenLive: () => (live !== null ? Promise.resolve(socket.last) : new Promise((r) => liveWaiters.push(r))),
  async deploy(stack) {
    try {
      const run = await api("POST", `/api/stacks/${encodeURIComponent(stack)}/deploy`);
      say(run.joined ? `${stack}: joins run #${run.id}, already waiting` : `${stack}: deploy in run #${run.id}`);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) say(`${stack}: ${err.message}`);
    }
  },
};

function status(state, attempt, wasLive) {
  conn.hidden = false;
  conn.className = `conn ${state}`;
  if (state === "live") {
    conn.textContent = wasLive ? "live (reconnected)" : "live";
    live = socket.last;
    const waiters = liveWaiters;
    liveWaiters = [];
    for (const w of waiters) w(socket.last);
    if (wasLive && view && view.refresh) view.refresh();  // what changed while away, read again
  } else if (state === "reconnecting") {
    conn.textContent = attempt ? `reconnecting… (try ${attempt})` : "reconnecting…";
  } else {
    conn.textContent = "connecting…";
  }
}

function route() {
  if (!session) return;
  const hash = location.hash || "#/";
  if (!hash.startsWith("#/")) return;  // the skip link
  const [path, query] = hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (view) view.dispose();
  let page = "overview";
  if (parts[0] === "stack" && parts[1]) { view = stackPage(main, ctx, parts[1]); page = "overview"; }
  else if (parts[0] === "syncs") { view = syncList(main, ctx); page = "sync"; }
  else if (parts[0] === "sync" && parts[1]) { view = syncPage(main, ctx, parts[1]); page = "sync"; }
  else if (parts[0] === "events") { view = eventsPage(main, ctx, params); page = "events"; }
  else view = overview(main, ctx);
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  view.load();
}

function started(body) {
  session = body;
  setSession(body);
  nav.hidden = false;
  signout.hidden = false;
  who.textContent = body.role === "viewer" ? "viewer (read-only)" : "operator";
  document.body.dataset.role = body.role;
  socket = new EventSocket({
    onEvent: (ev) => { if (view) view.onEvent(ev); },
    onStatus: status,
    onControl: (msg) => { if (msg.control === "expired" && view && view.refresh) view.refresh(); },
  });
  socket.start();
  route();
}

function signedOut(message) {
  if (socket) socket.stop();
  socket = null;
  live = null;
  if (view) view.dispose();
  view = null;
  session = null;
  setSession(null);
  nav.hidden = true;
  signout.hidden = true;
  conn.hidden = true;
  who.textContent = "";
  delete document.body.dataset.role;
  loginPage(main, started, message);
}

signout.addEventListener("click", async () => {
  try { await api("POST", "/auth/logout"); } catch (err) { /* signed out either way */ }
  signedOut("Signed out.");
});
window.addEventListener("stackward:signedout", () => { if (session) signedOut("Your session ended: sign in again."); });
window.addEventListener("hashchange", route);
document.getElementById("skip").addEventListener("click", (e) => { e.preventDefault(); main.focus(); });

async function boot() {
  try {
    const response = await fetch("/auth/session", { credentials: "same-origin", cache: "no-store" });
    if (response.ok) { started(await response.json()); return; }
  } catch (err) { /* not signed in */ }
  signedOut("");
}

boot();
