// Sign in with an API token: it is sent once, to /auth/login, and the core answers with an
// HttpOnly session cookie. The token is not kept by the page (no storage, no URL).

import { h, replace } from "./dom.js";

export function loginPage(main, onSession, message) {
  const input = h("input", { id: "token", name: "token", type: "password", autocomplete: "current-password",
    required: true, spellcheck: "false", "aria-describedby": "login-error" });
  const error = h("p", { id: "login-error", class: "error", role: "alert" }, message || "");
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h("form", { class: "panel login", onsubmit: async (e) => {
    e.preventDefault();
    button.disabled = true;
    error.textContent = "";
    try {
      const response = await fetch("/auth/login", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ token: input.value }),
        credentials: "same-origin",
        cache: "no-store",
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
      input.value = "";
      onSession(body);
    } catch (err) {
      error.textContent = err.message;
      button.disabled = false;
      input.focus();
    }
  } },
  h("h1", {}, "Sign in"),
  h("p", { class: "muted" }, "With an API token of the core (api_tokens), or a viewer token to look only."),
  h("label", { for: "token" }, "API token"), input, error, button);
  replace(main, form);
  input.focus();
}
