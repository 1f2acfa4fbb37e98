// The console's shell: sign-in, tenant picker, navigation between views.
import { $, h, replace, toast } from "./dom.js";
import { call, errorBox, session, setUnauthorizedHandler, listAll } from "./api.js";
import * as oidc from "./oidc.js";
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

// signedOut shows the sign-in screen (with message: a string, or a node);
// what this tab knew of the credential is forgotten, the tenant id of a
// Gatehouse sign-in is kept in its field for the next one.
function signedOut(message, focus = "oidc-tenant") {
  const was = oidc.user();
  session.token = "";
  oidc.forget();
  $("session").hidden = true;
  $("nav").hidden = true;
  replace($("session-user"));
  show("login");
  replace($("login-error"), message ? (typeof message === "string" ? h("div", { class: "error", role: "alert" }, message) : message) : null);
  $("login-token").value = "";
  if (was) $("oidc-tenant").value = was.tenant || "";
  $(focus).focus();
}

setUnauthorizedHandler((err) => {
  if (!session.token) return; // signed out already (by another call's 401)
  const u = oidc.user();
  signedOut(errorBox(err, u ? `Signed out: the sign-in at ${u.issuer} has ended (it expired or was revoked); sign in again`
    : "Signed out: the credential was not accepted"));
});

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
  const u = oidc.user();
  replace($("session-user"), u ? h("span", { title: u.issuer }, u.sub) : null);
  $("session").hidden = false;
  $("nav").hidden = false;
  await go(state.view);
}

// signInWith signs in with what a Gatehouse sign-in returned.
async function signInWith(result) {
  try {
    await signIn(result.token, result.tenant);
    toast("Signed in at " + result.issuer);
  } catch (err) {
    signedOut(errorBox(err, "Signed in at " + result.issuer + ", but the admin API refused the token"));
  }
}

// landed handles the page loaded as the end of a sign-in or sign-out.
async function landed(params) {
  let result;
  try {
    result = await oidc.finishRedirect(params);
  } catch (err) {
    signedOut(errorBox(err, "Sign-in refused"));
    return;
  }
  if (result.signedOut) {
    signedOut(h("div", { class: "ok", role: "status" }, `Signed out (the session at ${result.signedOut} has ended).`));
    return;
  }
  await signInWith(result.signedIn);
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
  $("oidc-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    $("oidc-submit").disabled = true;
    replace($("login-error"));
    try {
      await oidc.begin($("oidc-tenant").value.trim()); // navigates away on success
    } catch (err) {
      replace($("login-error"), errorBox(err, "Sign-in with Gatehouse"));
      $("oidc-tenant").focus();
    } finally {
      $("oidc-submit").disabled = false;
    }
  });
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
    oidc.forget(); // a pasted credential is nobody's Gatehouse sign-in
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
  $("logout").addEventListener("click", () => {
    // A Gatehouse sign-in also ends the session at the server (its
    // end_session endpoint, which revokes the console's tokens) and comes
    // back here; a pasted credential is only forgotten.
    const end = oidc.signOutURL();
    session.token = "";
    session.tenant = "";
    if (end) location.assign(end);
    else signedOut("Signed out.", "login-token");
  });
  $("tenant-select").addEventListener("change", (e) => {
    session.tenant = e.target.value;
    for (const v of Object.values(views)) v.reset?.();
    go(state.view);
  });
  $("nav").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-view]");
    if (b) go(b.dataset.view);
  });
  const params = new URLSearchParams(location.search);
  if (oidc.isRedirect(params)) {
    landed(params);
  } else if (session.token) {
    signIn(session.token, session.tenant).catch((err) => signedOut(errorBox(err, "Sign-in failed")));
  } else {
    signedOut();
  }
}

init();
