// The decision browser: a gateway's logged decisions, filtered, paged,
// each with its detail.
import { $, h, replace, dl, json, when } from "./dom.js";
import { call, errorBox, listAll, tenantPath } from "./api.js";

let liveTimer = null;
let pages = [];
let lastQuery = null;
let inFlight = null;

export function init() {
  $("decision-filters").addEventListener("submit", (e) => {
    e.preventDefault();
    pages = [];
    search("");
  });
  $("df-next").addEventListener("click", () => search(pages[pages.length - 1] || ""));
  $("df-live").addEventListener("change", (e) => live(e.target.checked));
  $("df-gateway").addEventListener("change", () => { pages = []; search(""); });
}

export function reset() {
  live(false);
  $("df-live").checked = false;
  replace($("decisions-table"));
  replace($("decision-detail"));
  replace($("decisions-summary"));
  replace($("decisions-stats"));
}

function live(on) {
  clearInterval(liveTimer);
  liveTimer = null;
  if (on) liveTimer = setInterval(() => { if (!$("view-decisions").hidden && !inFlight) search("", true); }, 2000);
}

export async function load() {
  replace($("decisions-error"));
  try {
    const gws = await listAll(tenantPath("/gateways"), "gateways");
    const sel = $("df-gateway");
    const keep = sel.value;
    replace(sel, gws.map((g) => h("option", { value: g.id }, g.name && g.name !== g.id ? `${g.id} — ${g.name}` : g.id)));
    if (!gws.length) {
      sel.append(h("option", { value: "" }, "(no gateways)"));
      replace($("decisions-summary"), "This tenant has no gateways, so no decisions.");
      return;
    }
    sel.value = gws.some((g) => g.id === keep) ? keep : gws[0].id;
    pages = [];
    await search("");
  } catch (err) {
    replace($("decisions-error"), errorBox(err, "Could not list the gateways"));
  }
}

// rfc3339 turns a datetime-local value into RFC 3339 (local time zone).
function rfc3339(v) {
  if (!v) return "";
  const d = new Date(v);
  return isNaN(d) ? v : d.toISOString();
}

// filters are the filter form's query parameters.
function filters() {
  return {
    allowed: $("df-allowed").value, api_id: $("df-api").value.trim(), policy_id: $("df-policy").value.trim(),
    subject: $("df-subject").value.trim(), http_status: $("df-status").value.trim(), token_reason: $("df-token-reason").value.trim(),
    from: rfc3339($("df-from").value), to: rfc3339($("df-to").value), decision_id: $("df-id").value.trim(),
  };
}

function query() {
  return { ...filters(), limit: $("df-limit").value.trim() };
}

async function search(after, quiet) {
  const gw = $("df-gateway").value;
  if (!gw) return;
  const q = { ...query(), after };
  lastQuery = q;
  if (!quiet) replace($("decisions-error"));
  const base = tenantPath("/gateways/" + encodeURIComponent(gw) + "/decisions");
  inFlight = call("GET", base, { query: q });
  // The counts per policy of the same filters (on the first page only).
  const stats = after ? null : call("GET", base + "/stats", { query: filters() }).catch((err) => err);
  try {
    const { data } = await inFlight;
    if (lastQuery !== q) return;
    render(data, after);
    if (stats) renderStats(await stats);
  } catch (err) {
    replace($("decisions-error"), errorBox(err, "Could not list the decisions"));
  } finally {
    inFlight = null;
  }
}

// field reads a decision event's value from the places it may be: the
// result (the decision document), the Gatehouse input, the event.
function eventFields(d) {
  const ev = d.event || {};
  const res = ev.result || {};
  const gh = ev.input?.gatehouse || {};
  const http = ev.input?.attributes?.request?.http || {};
  return {
    id: ev.decision_id || d.id,
    time: ev.timestamp || d.received_at,
    allowed: res.allowed,
    status: res.http_status,
    api: res.api_id || gh.api_id || "",
    policy: res.policy_id || "",
    subject: d.subject || gh.token?.subject || gh.subject || "",
    reason: res.reason || "",
    request: http.method ? `${http.method} ${http.path || ""}` : "",
  };
}

function render(data, after) {
  const list = Array.isArray(data?.decisions) ? data.decisions : [];
  const next = data?.next || "";
  if (next) {
    if (pages[pages.length - 1] !== next) pages.push(next);
  }
  $("df-next").hidden = !next;
  const total = data?.total;
  replace($("decisions-summary"),
    list.length ? `${list.length} decision${list.length > 1 ? "s" : ""}${after ? " (a later page)" : ""}` : "No decisions match.",
    typeof total === "number" ? ` · ${total} in all` : "");
  if (!list.length) {
    replace($("decisions-table"));
    return;
  }
  replace($("decisions-table"), h("table", { class: "data decisions" },
    h("thead", {}, h("tr", {}, ["When", "Outcome", "Status", "Request", "API", "Policy", "Subject", "Reason", ""].map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, list.map((d) => {
      const f = eventFields(d);
      return h("tr", { "data-decision": f.id, "data-allowed": String(!!f.allowed), "data-policy": f.policy },
        h("td", {}, when(f.time)),
        h("td", {}, h("span", { class: f.allowed ? "yes" : "no" }, f.allowed ? "allowed" : "denied")),
        h("td", {}, f.status ?? "—"),
        h("td", {}, h("code", {}, f.request)),
        h("td", {}, f.api || "—"),
        h("td", {}, f.policy || "—"),
        h("td", {}, f.subject || "—"),
        h("td", {}, f.reason || "—"),
        h("td", {}, h("button", { type: "button", class: "secondary small", "aria-label": "Details of decision " + f.id,
          on: { click: () => detail(d) } }, "Details")));
    }))));
}

// renderStats shows the allowed and denied counts per policy (or why
// they are not there: an older server has no stats route).
function renderStats(res) {
  const out = $("decisions-stats");
  if (res instanceof Error) {
    replace(out, res.missingRoute ? null : errorBox(res, "Could not count the decisions"));
    return;
  }
  const s = res.data || {};
  const rows = Array.isArray(s.policies) ? s.policies : [];
  replace(out, rows.length ? h("table", { class: "data stats" },
    h("caption", {}, `Per policy: ${s.total ?? 0} decisions, ${s.allowed ?? 0} allowed, ${s.denied ?? 0} denied`),
    h("thead", {}, h("tr", {}, ["Policy", "Decisions", "Allowed", "Denied"].map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.map((p) => h("tr", { "data-policy": p.policy_id || "" },
      h("td", {}, p.policy_id || h("span", { class: "hint" }, "(none: no API, public, or refused before the policy)")),
      h("td", {}, String(p.total ?? 0)), h("td", {}, String(p.allowed ?? 0)), h("td", {}, String(p.denied ?? 0)))))) : null);
}

function detail(d) {
  const f = eventFields(d);
  const ev = d.event || {};
  const out = $("decision-detail");
  replace(out, h("section", { class: "card", "aria-labelledby": "decision-detail-title" },
    h("h3", { id: "decision-detail-title", tabindex: "-1" }, "Decision ", h("code", {}, f.id)),
    dl({ when: when(f.time), outcome: f.allowed ? "allowed" : "denied", http_status: f.status, request: f.request, api: f.api, policy: f.policy,
      subject: f.subject, reason: f.reason, received_at: d.received_at ? when(d.received_at) : undefined, revision: ev.bundles?.gatehouse?.revision }),
    ev.result ? h("details", { open: true }, h("summary", {}, "Result"), json(ev.result)) : null,
    ev.input ? h("details", {}, h("summary", {}, "Input (masked as logged)"), json(ev.input)) : null,
    h("details", {}, h("summary", {}, "The whole event"), json(ev))));
  out.querySelector("h3").focus();
}
