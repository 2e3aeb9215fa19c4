// The core's API from the page: the session cookie goes by itself (same origin); every
// state-changing request carries the session's CSRF token in a header.

let csrf = "";
let csrfHeader = "X-Stackward-CSRF";

export function setSession(session) {
  csrf = session ? session.csrf : "";
  if (session && session.csrf_header) csrfHeader = session.csrf_header;
}

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

export async function api(method, path, body, { accept = [] } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && csrf) headers[csrfHeader] = csrf;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch (err) {
    throw new ApiError(0, "unreachable", "the core cannot be reached", null);
  }
  let data = null;
  try { data = await response.json(); } catch (err) { data = null; }
  if (response.ok || accept.includes(response.status)) return data;
  const error = (data && data.error) || {};
  if (response.status === 401) window.dispatchEvent(new CustomEvent("stackward:signedout"));
  throw new ApiError(response.status, error.code || "http_error", error.message || `HTTP ${response.status}`, data);
}
