// The console's shell: sign-in, tenant picker, navigation between views.
import { $, h, replace, toast } from "./dom.js";
import { call, errorBox, session, setUnauthorizedHandler, listAll } from "./api.js";
import * as services from "./services.js";
import * as policies from "./policies.js";
import * as decisions from "./decisions.js";
import * as gateways from "./gateways.js";

const views = { services, policies, decisions, gateways };
const state = { view: "services", tenants: [] };

// Content-Security-Policy violations are shown, not just logged: the
// console is meant to run under its strict policy.
document.addEventListener("securitypolicyviolation", (e) => {
  const list = (window.__cspViolations ||= []);
  list.push(`${e.violatedDirective} ${e.blockedURI}`);
  document.body.dataset.cspViolations = String(list.length);
  console.error("CSP violation", e.violatedDirective, e.blockedURI);
});

function show(id) {
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + id;
  for (const b of $("nav").querySelectorAll("button")) {
    if (b.dataset.view === id) b.setAttribute("aria-current", "page");
    else b.removeAttribute("aria-current");
  }
}

function signedOut(message) {
  session.token = "";
  $("session").hidden = true;
  $("nav").hidden = true;
  show("login");
  replace($("login-error"), message ? (typeof message === "string" ? h("div", { class: "error", role: "alert" }, message) : message) : null);
  $("login-token").value = "";
  $("login-token").focus();
}

setUnauthorizedHandler((err) => signedOut(errorBox(err, "Signed out: the credential was not accepted")));

// signIn checks the credential: a system-wide one lists the tenants; a
// tenant-bound one reads its tenant.
async function signIn(token, tenant) {
  session.token = token;
  let tenants = [];
  try {
    tenants = await listAll("/api/system/tenants", "tenants");
  } catch (e) {
    if (e.status !== 403) throw e;
    if (!tenant) {
      throw new Error("This credential is bound to one tenant: enter the tenant's id as well.");
    }
    const { data } = await call("GET", "/api/admin/" + encodeURIComponent(tenant) + "/tenant");
    tenants = [data || { id: tenant }];
  }
  state.tenants = tenants;
  const select = $("tenant-select");
  replace(select, tenants.map((t) => h("option", { value: t.id }, t.name && t.name !== t.id ? `${t.id} — ${t.name}` : t.id)));
  if (!tenants.length) {
    select.append(h("option", { value: "" }, "(no tenants)"));
  }
  const keep = [tenant, session.tenant].find((t) => t && tenants.some((x) => x.id === t));
  session.tenant = keep || tenants[0]?.id || "";
  select.value = session.tenant;
  $("session").hidden = false;
  $("nav").hidden = false;
  await go(state.view);
}

async function go(view) {
  state.view = view;
  show(view);
  const heading = $(view + "-title");
  heading?.focus();
  if (!session.tenant) return;
  await views[view].load();
}

export function navigate(view, arg) {
  state.view = view;
  show(view);
  $(view + "-title")?.focus();
  return views[view].load(arg);
}

function init() {
  for (const v of Object.values(views)) v.init?.({ navigate });
  $("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = $("login-token").value.trim();
    const tenant = $("login-tenant").value.trim();
    if (!token) {
      replace($("login-error"), h("div", { class: "error", role: "alert" }, "Paste a credential first."));
      $("login-token").focus();
      return;
    }
    $("login-submit").disabled = true;
    replace($("login-error"));
    try {
      await signIn(token, tenant);
      toast("Signed in");
    } catch (err) {
      session.token = "";
      if ($("view-login").hidden) show("login");
      replace($("login-error"), errorBox(err, "Sign-in failed"));
    } finally {
      $("login-submit").disabled = false;
    }
  });
  $("logout").addEventListener("click", () => { session.tenant = ""; signedOut("Signed out."); });
  $("tenant-select").addEventListener("change", (e) => {
    session.tenant = e.target.value;
    for (const v of Object.values(views)) v.reset?.();
    go(state.view);
  });
  $("nav").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-view]");
    if (b) go(b.dataset.view);
  });
  if (session.token) {
    signIn(session.token, session.tenant).catch((err) => signedOut(errorBox(err, "Sign-in failed")));
  } else {
    signedOut();
  }
}

init();
