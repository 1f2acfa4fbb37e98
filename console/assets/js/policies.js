// Policies: the Rego editor with inline problems (POST …/policies/check as
// you type), the policy's tests, save (errors shown and marked), the
// request builder with the stage-by-stage answer of the test endpoint, and
// replay of the draft against logged decisions.
import { $, h, replace, dl, json, valueNode, fmtValue, toast, when } from "./dom.js";
import { call, errorBox, listAll, tenantPath, ApiError } from "./api.js";
import { createEditor } from "./editor.js";

const STARTER = `package policy

# Gatehouse replaces the package line. The policy sees the request as
# input.attributes.request.http and Gatehouse's view of it as
# input.gatehouse (route, path_params, token).

default allow := false

allow if {
	input.gatehouse.token.valid
}
`;

let ctx;
let defEditor, testsEditor;
// current is the policy being edited: its saved body (null for a new one)
// and ETag.
let current = null;
let checkAvailable = true;
let loadingText = false;
let checkTimer = null;
let checkController = null;
let checkSeq = 0;

export function init(c) {
  ctx = c;
  $("policy-new").addEventListener("click", () => openNew());
  $("policies-refresh").addEventListener("click", () => load(current?.saved?.id));
  $("policy-save").addEventListener("click", () => save());
  $("policy-revert").addEventListener("click", () => current?.saved ? open(current.saved.id) : openNew());
  $("rq-run").addEventListener("click", () => runTest());
  $("replay-run").addEventListener("click", () => runReplay());
  for (const id of ["policy-name", "policy-description", "policy-id", "policy-validators-json"]) {
    $(id).addEventListener("input", () => changed());
  }
}

export function reset() {
  current = null;
  $("policy-pane").hidden = true;
}

function editors() {
  if (defEditor) return;
  defEditor = createEditor($("definition-editor"), { label: "Policy definition (Rego)", onChange: () => changed() });
  testsEditor = createEditor($("tests-editor"), {
    label: "Policy tests (Rego)",
    hint: "# test_ rules, e.g.\n# test_reader_allowed if { allow with input as {…} }",
    onChange: () => changed(),
  });
}

// changed: the draft changed; check it once the author pauses.
function changed() {
  dirty();
  if (loadingText) return;
  clearTimeout(checkTimer);
  checkTimer = setTimeout(() => checkDraft(), 300);
}

function dirty() {
  if (loadingText || !current) return;
  current.dirty = true;
  $("policy-heading").dataset.dirty = "true";
  heading();
}

function heading() {
  const name = current?.saved ? `Policy ${current.saved.id}` : "New policy";
  replace($("policy-heading"), name, current?.dirty ? h("span", { class: "hint" }, " — unsaved changes") : null);
}

// isTests says a problem is about the tests module.
const isTests = (p) => String(p.field || "").replace(/^policy\./, "").startsWith("tests");
const isDefinition = (p) => !isTests(p) && ["", "definition"].includes(String(p.field || "").replace(/^policy\./, ""));

// checkDraft asks the server for the problems of the draft as it is
// (POST …/policies/check: the checks a save runs, tests included, nothing
// saved) and marks them in both editors.
async function checkDraft() {
  const status = $("definition-status");
  if (!checkAvailable || !current || !defEditor) return;
  let body;
  try {
    body = draft();
  } catch (e) {
    status.textContent = e.message;
    status.dataset.state = "problems";
    return;
  }
  if (body.language === "rego" && !body.definition.trim()) {
    status.textContent = "";
    showProblems([], []);
    return;
  }
  checkController?.abort();
  checkController = new AbortController();
  const seq = ++checkSeq;
  status.textContent = "checking…";
  status.dataset.state = "";
  const started = performance.now();
  try {
    const { data } = await call("POST", tenantPath("/policies/check"), { body, signal: checkController.signal });
    if (seq !== checkSeq) return;
    const problems = Array.isArray(data?.problems) ? data.problems : [];
    showProblems(problems, Array.isArray(data?.tests) ? data.tests : []);
    const ms = Math.round(performance.now() - started);
    status.dataset.ms = String(ms);
    status.title = `checked in ${ms} ms`;
  } catch (err) {
    if (err.name === "AbortError" || seq !== checkSeq) return;
    if (err instanceof ApiError && err.missingRoute) {
      checkAvailable = false;
      status.textContent = "this server has no check endpoint: problems show when you save";
      status.dataset.state = "";
      return;
    }
    if (err instanceof ApiError && err.status === 400 && err.problems.length) {
      showProblems(err.problems, []);
      return;
    }
    status.textContent = "could not check: " + err.message;
    status.dataset.state = "error";
  }
}

// showProblems marks the problems on their editor and lists them, with
// the tests' outcomes.
function showProblems(problems, tests) {
  const def = problems.filter(isDefinition), tst = problems.filter(isTests);
  const other = problems.filter((p) => !isDefinition(p) && !isTests(p));
  defEditor.mark(def);
  testsEditor.mark(tst);
  listProblems("definition", [...other, ...def]);
  listProblems("tests", tst);
  const status = $("definition-status");
  const n = def.length + other.length;
  status.textContent = n ? `${n} problem${n > 1 ? "s" : ""}` : tst.length ? "no problems (see the tests)" : "no problems";
  status.dataset.state = n ? "problems" : "ok";
  const ts = $("tests-status");
  if (!tests.length) {
    ts.textContent = testsEditor.text.trim() && tst.length ? "tests not run" : "";
    ts.dataset.state = tst.length ? "problems" : "";
  } else {
    const failed = tests.filter((t) => t.outcome && !["pass", "skip"].includes(String(t.outcome).toLowerCase()));
    ts.textContent = failed.length ? `${failed.length} of ${tests.length} tests fail` : `${tests.length} test${tests.length > 1 ? "s" : ""} pass`;
    ts.dataset.state = failed.length ? "problems" : "ok";
  }
  replace($("tests-outcomes"), tests.map((t) => h("li", { "data-outcome": String(t.outcome || "").toLowerCase() },
    h("span", { class: String(t.outcome).toLowerCase() === "pass" ? "yes" : "no" }, String(t.outcome || "?").toUpperCase()), " ",
    h("button", { type: "button", class: "link", on: { click: () => testsEditor.goTo(t.line || 1, t.column || 1) } }, t.name || "test"),
    t.message ? ` — ${t.message}` : "", t.output ? h("pre", { class: "code" }, t.output) : null)));
}

// listProblems shows problems under their editor, each a button that
// moves the cursor to it.
function listProblems(which, problems) {
  const ul = $(which + "-problems");
  const ed = which === "tests" ? testsEditor : defEditor;
  replace(ul, (problems || []).map((p) => h("li", { class: "problem", "data-line": p.line || "", "data-field": p.field || "" },
    p.line ? h("button", { type: "button", class: "link", on: { click: () => ed.goTo(p.line, p.column || 1) } },
      `Line ${p.line}${p.column ? ", column " + p.column : ""}`) : h("span", {}, p.field || "policy"),
    ": ", p.code ? h("code", {}, p.code) : null, " ", p.message || "")));
}

export async function load(openID) {
  editors();
  replace($("policies-error"));
  try {
    const [list, gws] = await Promise.all([listAll(tenantPath("/policies"), "policies"), listAll(tenantPath("/gateways"), "gateways")]);
    renderList(list);
    for (const sel of ["rq-gateway", "replay-gateway"]) {
      const el = $(sel);
      const keep = el.value;
      replace(el, el.options[0], gws.map((g) => h("option", { value: g.id }, g.name && g.name !== g.id ? `${g.id} — ${g.name}` : g.id)));
      el.value = gws.some((g) => g.id === keep) ? keep : "";
    }
    if (openID) await open(openID);
  } catch (err) {
    replace($("policies-error"), errorBox(err, "Could not list the policies"));
  }
}

function renderList(list) {
  const ul = $("policy-list");
  if (!list.length) {
    replace(ul, h("li", { class: "hint" }, "No policies yet."));
    return;
  }
  replace(ul, list.map((p) => h("li", {},
    h("button", { type: "button", class: "pick", "data-policy": p.id, "aria-current": current?.saved?.id === p.id ? "true" : null,
      on: { click: () => open(p.id) } },
    h("span", { class: "pick-title" }, p.policy_name || p.id), h("span", { class: "hint" }, ` ${p.id} · ${p.language}`)))));
}

function markCurrentInList() {
  for (const b of $("policy-list").querySelectorAll("button[data-policy]")) {
    if (current?.saved?.id === b.dataset.policy) b.setAttribute("aria-current", "true");
    else b.removeAttribute("aria-current");
  }
}

function fill(body) {
  loadingText = true;
  try {
    $("policy-id").value = body.id || "";
    $("policy-id").disabled = !!current.saved;
    $("policy-name").value = body.policy_name || "";
    $("policy-description").value = body.description || "";
    const rego = (body.language || "rego") === "rego";
    $("policy-rego").hidden = !rego;
    $("policy-validators").hidden = rego;
    $("policy-validators-json").value = rego ? "" : JSON.stringify(body.validators || [], null, 2);
    defEditor.text = rego ? body.definition || "" : "";
    testsEditor.text = body.tests || "";
  } finally {
    loadingText = false;
  }
  for (const w of ["definition", "tests"]) replace($(w + "-problems"));
  replace($("tests-outcomes"));
  $("tests-status").textContent = "";
  defEditor.mark([]);
  testsEditor.mark([]);
  replace($("policy-save-result"));
  replace($("test-result"));
  replace($("replay-result"));
  $("replay-run").disabled = !current.saved;
  heading();
  markCurrentInList();
  $("policy-pane").hidden = false;
  clearTimeout(checkTimer);
  checkDraft();
}

function openNew() {
  editors();
  current = { saved: null, etag: null, dirty: false };
  fill({ language: "rego", definition: STARTER });
  $("policy-id").focus();
}

async function open(id) {
  editors();
  try {
    const { data, etag } = await call("GET", tenantPath("/policies/" + encodeURIComponent(id)));
    current = { saved: data, etag, dirty: false };
    fill(data);
  } catch (err) {
    replace($("policies-error"), errorBox(err, `Could not read policy ${id}`));
  }
}

// draft is the policy body as edited (what save and test send).
function draft() {
  const base = current?.saved ? { ...current.saved } : {};
  delete base.metadata;
  const body = { ...base, policy_name: $("policy-name").value.trim(), description: $("policy-description").value };
  const id = $("policy-id").value.trim();
  if (id) body.id = id;
  else delete body.id;
  if ((base.language || "rego") === "rego") {
    body.language = "rego";
    body.definition = defEditor.text;
    delete body.validators;
    const tests = testsEditor.text;
    if (tests.trim() || "tests" in base) body.tests = tests;
  } else {
    body.language = base.language;
    try {
      body.validators = JSON.parse($("policy-validators-json").value || "[]");
    } catch (e) {
      throw new Error("Validators: not JSON: " + e.message);
    }
  }
  return body;
}

// markDraftProblems puts a refused draft's problems on their editor
// (fields under "policy." where the body carries the draft there).
function markDraftProblems(err) {
  const problems = err.problems.length ? err.problems
    : err.body?.details?.field ? [{ field: err.body.details.field, line: err.body.details.line, column: err.body.details.column, code: err.code, message: err.message }]
      : [];
  if (!problems.length) return;
  const def = problems.filter(isDefinition), tst = problems.filter(isTests);
  defEditor.mark(def);
  testsEditor.mark(tst);
  listProblems("definition", problems.filter((p) => !isTests(p)));
  listProblems("tests", tst);
}

async function save() {
  const out = $("policy-save-result");
  replace(out);
  let body;
  try {
    body = draft();
  } catch (e) {
    replace(out, errorBox(e, "Not saved"));
    return;
  }
  $("policy-save").disabled = true;
  try {
    let res;
    if (current.saved) {
      res = await call("PUT", tenantPath("/policies/" + encodeURIComponent(current.saved.id)), { body, ifMatch: current.etag });
    } else {
      res = await call("POST", tenantPath("/policies"), { body });
    }
    current = { saved: res.data, etag: res.etag, dirty: false };
    const rev = res.data?.metadata?.revision;
    replace(out, h("div", { class: "ok", role: "status" }, `Saved policy ${res.data.id}${rev ? " (revision " + rev + ")" : ""}.`));
    toast(`Saved ${res.data.id}`);
    $("policy-id").disabled = true;
    $("replay-run").disabled = false;
    for (const w of ["definition", "tests"]) replace($(w + "-problems"));
    testsEditor.mark([]);
    heading();
    const list = await listAll(tenantPath("/policies"), "policies");
    renderList(list);
  } catch (err) {
    if (err instanceof ApiError) markDraftProblems(err);
    const hint = err.status === 412 ? h("p", { class: "hint" }, "The policy changed since it was opened: copy your draft, then use “Revert to saved”.") : null;
    replace(out, errorBox(err, "Not saved"), hint);
  } finally {
    $("policy-save").disabled = false;
  }
}

// request is the request builder's request.
function request() {
  const headers = {};
  for (const line of $("rq-headers").value.split("\n")) {
    const i = line.indexOf(":");
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  const auth = $("rq-authorization").value.trim();
  if (auth) headers.authorization = /^\S+\s/.test(auth) ? auth : "Bearer " + auth;
  const host = $("rq-host").value.trim();
  if (host) headers.host = host;
  let path = $("rq-path").value.trim() || "/";
  let query = $("rq-query").value.trim().replace(/^\?/, "");
  const q = path.indexOf("?");
  if (q >= 0) {
    query = [path.slice(q + 1), query].filter(Boolean).join("&");
    path = path.slice(0, q);
  }
  const rq = { method: $("rq-method").value, path, headers };
  if (query) rq.query = query;
  const body = $("rq-body").value;
  if (body) rq.body = body;
  return rq;
}

async function runTest() {
  const out = $("test-result");
  let policy;
  try {
    policy = draft();
  } catch (e) {
    replace(out, errorBox(e, "Not tested"));
    return;
  }
  if (!policy.policy_name) policy.policy_name = policy.id || "draft";
  const body = { policy, request: request() };
  const gw = $("rq-gateway").value;
  if (gw) body.gateway_id = gw;
  $("rq-run").disabled = true;
  replace(out, h("p", { class: "hint" }, "Testing…"));
  try {
    const { data } = await call("POST", tenantPath("/policies/test"), { body });
    replace(out, renderTestResult(data));
  } catch (err) {
    if (err instanceof ApiError) markDraftProblems(err);
    replace(out, errorBox(err, "The test did not run"));
  } finally {
    $("rq-run").disabled = false;
  }
}

const STAGES = [
  ["request", "Request", { method: "Method", host: "Host", path: "Canonical path", query: "Query", removed_headers: "Headers removed",
    refused_status: "Refused with", refused_reason: "Refused because" }],
  ["route", "Route", { matched: "Matched", gateway_id: "Gateway", api_id: "API", service_id: "Service", method: "Method", path: "Template",
    params: "Path parameters", public: "Public", bound_policy_id: "Bound policy", reason: "Reason" }],
  ["token", "Token", { present: "Present", valid: "Valid", reason: "Reason", detail: "Detail", issuer: "Issuer", subject: "Subject", scopes: "Scopes", claims: "Claims" }],
  ["policy", "Policy", { policy_id: "Policy", ran: "Ran", allowed: "Allowed", dry_run: "Dry run", note: "Note", result: "Result", validators: "Validators",
    failed_expression: "Failed expression" }],
];

// stageState is a short verdict for a stage's heading.
function stageState(key, s) {
  if (!s || typeof s !== "object") return ["", ""];
  switch (key) {
    case "request": return s.refused_status ? ["fail", `refused ${s.refused_status}`] : ["ok", "accepted"];
    case "route": return s.matched === false ? ["fail", "no route"] : s.matched ? ["ok", s.api_id ? `API ${s.api_id}` : "matched"] : ["", ""];
    case "token":
      if (s.present === false) return ["none", "no token"];
      return s.valid ? ["ok", "valid"] : ["fail", s.reason ? `invalid: ${s.reason}` : "invalid"];
    case "policy":
      if (s.ran === false) return ["none", "not run"];
      return s.allowed ? ["ok", "allowed"] : s.allowed === false ? ["fail", "denied"] : ["", ""];
  }
  return ["", ""];
}

// renderTestResult renders the test endpoint's answer: the decision, each
// stage present, the failed expression with its operands, the input.
export function renderTestResult(r) {
  if (!r || typeof r !== "object") return json(r);
  const allowed = r.allowed ?? r.result?.allowed ?? r.decision?.allowed;
  const status = r.http_status ?? r.result?.http_status ?? r.decision?.http_status;
  const reason = r.reason ?? r.result?.reason ?? r.decision?.reason;
  const parts = [h("div", { class: "verdict " + (allowed ? "allowed" : "denied"), "data-allowed": String(!!allowed) },
    h("strong", {}, allowed ? "Allowed" : "Denied"), status ? ` · HTTP ${status}` : "", reason ? ` · ${reason}` : "")];
  const stages = r.stages && typeof r.stages === "object" ? r.stages : {};
  const known = new Set();
  for (const [key, title, labels] of STAGES) {
    known.add(key);
    const s = stages[key];
    if (s === undefined || s === null) continue;
    parts.push(stageCard(key, title, labels, s));
  }
  for (const [key, s] of Object.entries(stages)) if (!known.has(key)) parts.push(stageCard(key, key, {}, s));
  const rest = { ...r };
  for (const k of ["allowed", "http_status", "reason", "stages", "input"]) delete rest[k];
  if (Object.keys(rest).length) parts.push(h("details", {}, h("summary", {}, "Other fields of the answer"), dl(rest)));
  if (r.input !== undefined) parts.push(h("details", {}, h("summary", {}, "The policy's input (for Rego experts)"), json(r.input)));
  return h("div", { class: "test-result" }, parts);
}

function stageCard(key, title, labels, s) {
  const [cls, text] = stageState(key, s);
  const body = typeof s === "object" && !Array.isArray(s) ? { ...s } : { value: s };
  const fe = key === "policy" ? body.failed_expression : null;
  if (fe) delete body.failed_expression;
  const more = key === "policy" && Array.isArray(body.failed_expressions) ? body.failed_expressions : null;
  if (more) delete body.failed_expressions;
  let claims = null;
  if (key === "token" && body.claims && typeof body.claims === "object") {
    claims = body.claims;
    delete body.claims;
  }
  return h("section", { class: "stage", "data-stage": key, "data-state": cls },
    h("h4", {}, title, text ? h("span", { class: "pill " + cls }, text) : null),
    dl(body, labels),
    claims ? h("details", {}, h("summary", {}, "Claims"), json(claims)) : null,
    fe ? failedExpression(fe) : null,
    more && more.length > 1 ? h("details", {}, h("summary", {}, `Every failing expression (${more.length}${body.truncated ? ", truncated" : ""})`),
      more.map((f) => failedExpression(f))) : null);
}

function failedExpression(fe) {
  if (typeof fe !== "object") return h("p", {}, "Failed expression: ", String(fe));
  const where = fe.line ? `line ${fe.line}${fe.column ? ", column " + fe.column : ""}` : "";
  const ops = Array.isArray(fe.operands) ? fe.operands : [];
  return h("div", { class: "failed-expression" },
    h("p", {}, h("strong", {}, "First failing expression"), where ? " at " : "",
      where ? h("button", { type: "button", class: "link", on: { click: () => defEditor.goTo(fe.line, fe.column || 1) } }, where) : null),
    h("pre", { class: "code" }, fe.text || ""),
    ops.length ? h("table", { class: "data" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Operand"), h("th", { scope: "col" }, "Value"))),
      h("tbody", {}, ops.map((o) => h("tr", {}, h("td", {}, h("code", {}, o.text ?? "")),
        h("td", {}, o.undefined ? h("span", { class: "hint" }, "undefined") : o.resolved === false ? h("span", { class: "hint" }, "(not known)") : h("code", {}, JSON.stringify(o.value))))))) : null);
}

async function runReplay() {
  const out = $("replay-result");
  if (!current?.saved) {
    replace(out, h("div", { class: "error", role: "alert" }, "Save the policy once before replaying: replay uses the decisions of the APIs bound to it."));
    return;
  }
  let body;
  try {
    body = { policy: draft() };
  } catch (e) {
    replace(out, errorBox(e, "Not replayed"));
    return;
  }
  const limit = parseInt($("replay-limit").value, 10);
  if (limit > 0) body.limit = limit;
  const gw = $("replay-gateway").value;
  if (gw) body.gateway_id = gw;
  $("replay-run").disabled = true;
  replace(out, h("p", { class: "hint" }, "Replaying…"));
  try {
    const { data } = await call("POST", tenantPath("/policies/" + encodeURIComponent(current.saved.id) + "/replay"), { body });
    replace(out, renderReplay(data));
  } catch (err) {
    if (err instanceof ApiError) markDraftProblems(err);
    const hint = err instanceof ApiError && err.missingRoute ? h("p", { class: "hint" }, "This server has no replay endpoint.") : null;
    replace(out, errorBox(err, "The replay did not run"), hint);
  } finally {
    $("replay-run").disabled = false;
  }
}

// renderReplay renders a replay's answer: the flips, the counts, the
// APIs, the examples; any field it does not know is still shown.
export function renderReplay(r) {
  if (!r || typeof r !== "object") return json(r);
  const flips = r.flips || {};
  const a2d = Number(flips.allow_to_deny ?? r.allow_to_deny) || 0;
  const d2a = Number(flips.deny_to_allow ?? r.deny_to_allow) || 0;
  const parts = [h("div", { class: "verdict " + (a2d + d2a ? "denied" : "allowed"), "data-flips": String(a2d + d2a),
    "data-allow-to-deny": String(a2d), "data-deny-to-allow": String(d2a) },
    h("strong", {}, a2d + d2a ? `${a2d + d2a} decision${a2d + d2a > 1 ? "s" : ""} would change` : "No decision would change"),
    ` · allowed → denied ${a2d} · denied → allowed ${d2a}`)];
  const rest = { ...r };
  for (const k of ["flips", "apis", "examples", "allow_to_deny", "deny_to_allow"]) delete rest[k];
  const m = rest.masked;
  if (m && typeof m === "object" && typeof m.events === "number") {
    const fields = Object.entries(m.fields || {}).map(([f, n]) => `${f} (${n})`).join(", ");
    rest.masked = m.events
      ? `${m.events} decision${m.events > 1 ? "s" : ""} had masked fields${fields ? ": " + fields : ""}; the draft's verdict depends on them in ${m.read || 0}`
      : "none";
  }
  if (rest.oldest) rest.oldest = when(rest.oldest);
  if (rest.newest) rest.newest = when(rest.newest);
  parts.push(h("div", { class: "replay-counts" }, dl(rest, {
    evaluated: "Decisions evaluated", matched: "Decisions of the bound APIs", scanned: "Log events read", limit: "Limit",
    unchanged: "Unchanged", skipped: "Skipped", errors: "Evaluation errors", timeouts: "Timeouts", masked: "Masked fields",
    complete: "Complete", stopped: "Stopped because", oldest: "Oldest", newest: "Newest", policy_id: "Policy" })));
  if (r.complete === false) parts.push(h("p", { class: "hint" }, "The replay stopped early" + (r.stopped ? ` (${r.stopped})` : "") + ": the counts cover what it read."));
  if (Array.isArray(r.apis)) parts.push(h("h4", {}, "APIs bound to the policy"), listTable(r.apis));
  if (Array.isArray(r.examples)) {
    parts.push(h("h4", {}, "Examples"), r.examples.length ? h("table", { class: "data examples" },
      h("thead", {}, h("tr", {}, ["When", "Decision", "Gateway", "Request", "API", "Change", "Logged", "Draft"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, r.examples.map((x) => h("tr", { "data-flip": x.flip || "" },
        h("td", {}, when(x.time)), h("td", {}, h("code", {}, x.decision_id || "")), h("td", {}, x.gateway_id || ""),
        h("td", {}, h("code", {}, `${x.method || ""} ${x.path || ""}`)), h("td", {}, x.api_id || ""),
        h("td", {}, x.flip === "allow_to_deny" ? h("span", { class: "no" }, "allowed → denied")
          : x.flip === "deny_to_allow" ? h("span", { class: "yes" }, "denied → allowed") : x.flip || "",
          x.reads_masked ? h("span", { class: "hint" }, " (reads a masked field)") : null),
        h("td", {}, verdict(x.old)), h("td", {}, verdict(x.new))))))
      : h("p", { class: "hint" }, "none"));
  }
  parts.push(h("details", {}, h("summary", {}, "The whole answer"), json(r)));
  return h("div", { class: "replay-result" }, parts);
}

function verdict(v) {
  if (!v || typeof v !== "object") return "—";
  return [h("span", { class: v.allowed ? "yes" : "no" }, v.allowed ? "allowed" : "denied"), v.http_status ? ` ${v.http_status}` : "",
    v.reason ? ` · ${v.reason}` : "", v.dry_run ? " (dry run)" : ""];
}

// listTable renders an array: scalars as a list, objects as a table of
// their keys.
function listTable(list) {
  if (!list.length) return h("p", { class: "hint" }, "none");
  if (list.every((x) => fmtValue(x) !== null)) return h("ul", {}, list.map((x) => h("li", {}, fmtValue(x))));
  const keys = [];
  for (const x of list) if (x && typeof x === "object") for (const k of Object.keys(x)) if (!keys.includes(k)) keys.push(k);
  return h("table", { class: "data" },
    h("thead", {}, h("tr", {}, keys.map((k) => h("th", { scope: "col" }, k.replaceAll("_", " "))))),
    h("tbody", {}, list.map((x) => h("tr", {}, keys.map((k) => h("td", {}, x && x[k] !== undefined ? valueNode(x[k]) : "—"))))));
}
