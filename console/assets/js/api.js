// The admin API client: every call sends the credential as a bearer
// header (no cookies) and turns an error answer into an ApiError carrying
// the API's error shape {status_code, error, error_code, details}.
import { h, dl } from "./dom.js";

const KEY = "gatehouse.console.credential";

export const session = {
  get token() { return sessionStorage.getItem(KEY) || ""; },
  set token(v) { v ? sessionStorage.setItem(KEY, v) : sessionStorage.removeItem(KEY); },
  get tenant() { return sessionStorage.getItem(KEY + ".tenant") || ""; },
  set tenant(v) { v ? sessionStorage.setItem(KEY + ".tenant", v) : sessionStorage.removeItem(KEY + ".tenant"); },
};

// ApiError is a failed call: the HTTP status, the API's error body (when
// it answered one) and the request id.
export class ApiError extends Error {
  constructor(status, body, requestId, method, path) {
    const msg = (body && (body.error || body.message)) || `HTTP ${status}`;
    super(msg);
    this.status = status;
    this.body = body && typeof body === "object" ? body : null;
    this.requestId = requestId;
    this.method = method;
    this.path = path;
  }
  get code() { return this.body?.error_code || ""; }
  // problems are the details.errors entries (field, code, message, line, column).
  get problems() { return Array.isArray(this.body?.details?.errors) ? this.body.details.errors : []; }
  // missingRoute says the server has no such route (an older Gatehouse).
  // (A POST to …/policies/check on one answers 405: GET …/policies/{pid} matches.)
  get missingRoute() {
    return (this.status === 404 && this.code === "not_found" && /^no such route/.test(this.message)) ||
      (this.status === 405 && this.code === "method_not_allowed");
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) { onUnauthorized = fn; }

// tenantPath is /api/admin/{tid}{rest}.
export function tenantPath(rest) {
  return "/api/admin/" + encodeURIComponent(session.tenant) + rest;
}

// call sends one request. opts: body (JSON), query (object of strings;
// empty values left out), ifMatch, signal.
export async function call(method, path, opts = {}) {
  const headers = { Accept: "application/json" };
  if (session.token) headers.Authorization = "Bearer " + session.token;
  let body;
  if (opts.body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  if (opts.ifMatch) headers["If-Match"] = opts.ifMatch;
  let url = path;
  if (opts.query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
    const s = q.toString();
    if (s) url += "?" + s;
  }
  let res;
  try {
    res = await fetch(url, { method, headers, body, credentials: "omit", cache: "no-store", signal: opts.signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, { error: "the server did not answer: " + e.message, error_code: "network_error" }, "", method, path);
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text.slice(0, 500) }; }
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data, res.headers.get("X-Request-Id") || "", method, path);
    if (res.status === 401 && !opts.noAuthRedirect) onUnauthorized(err);
    throw err;
  }
  return { data, etag: res.headers.get("ETag"), status: res.status };
}

// listAll follows `next` through every page of a list.
export async function listAll(path, key, opts = {}) {
  const out = [];
  let after = "";
  for (let i = 0; i < 100; i++) {
    const { data } = await call("GET", path, { query: { limit: 500, after, ...opts.query }, signal: opts.signal });
    out.push(...(data?.[key] || []));
    if (!data?.next) break;
    after = data.next;
  }
  return out;
}

// errorBox renders an error: the API's status, code and message, its
// field problems as a table and any other details.
export function errorBox(err, context) {
  if (!(err instanceof ApiError)) {
    return h("div", { class: "error", role: "alert" }, h("strong", {}, context ? context + ": " : ""), String(err?.message || err));
  }
  const b = err.body || {};
  const details = b.details && typeof b.details === "object" ? { ...b.details } : null;
  const problems = err.problems;
  if (details) delete details.errors;
  return h("div", { class: "error", role: "alert" },
    h("p", {}, context ? h("strong", {}, context + ": ") : null,
      h("span", { class: "status-code" }, err.status ? String(b.status_code || err.status) : "no answer"),
      err.code ? h("code", { class: "error-code" }, err.code) : null, " ", b.error || err.message),
    problems.length ? h("table", { class: "data problems-table" },
      h("thead", {}, h("tr", {}, ["Field", "Line", "Code", "Message"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, problems.map((p) => h("tr", {},
        h("td", {}, p.field || "—"),
        h("td", {}, p.line ? `${p.line}${p.column ? ":" + p.column : ""}` : "—"),
        h("td", {}, p.code ? h("code", {}, p.code) : "—"),
        h("td", {}, p.message || p.error || JSON.stringify(p)))))) : null,
    details && Object.keys(details).length ? dl(details) : null,
    err.requestId ? h("p", { class: "hint" }, `${err.method} ${err.path} · request id ${err.requestId}`) : null);
}
