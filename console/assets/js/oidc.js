// Sign-in with Gatehouse (docs/console.md): OpenID Connect's
// authorization code flow with PKCE (S256), state and nonce, run entirely
// in this tab by the console as the built-in public client
// "gatehouse-console" of an admin server — a tenant's admin server
// ({origin}/{tid}/admin) or, for system-wide administrators, the system
// tenant's system server ({origin}/system/system). Discovery and the
// token exchange are same-origin fetches (no client secret, no cookie of
// the console's own); the authorize endpoint and Gatehouse's login page
// are top-level navigations. The access token is then the bearer
// credential of the admin API, kept in sessionStorage like a pasted one.
//
// The ID token (scope openid) is checked — iss, aud, azp, exp and above
// all the nonce of this tab's request — but its signature is not: it
// comes straight from the token endpoint of this origin over the
// connection the page itself was loaded over (OpenID Connect Core
// §3.1.3.7: TLS server validation may stand in for the signature), and
// the console never presents it as a credential. It names the user and
// is the id_token_hint of the sign-out.

export const CLIENT_ID = "gatehouse-console";

const PENDING = "gatehouse.console.oidc.pending"; // the flow this tab started
const SESSION = "gatehouse.console.oidc.session"; // the signed-in user
const LOGOUT = "gatehouse.console.oidc.logout"; // the state of a sign-out in flight
const MAX_FLOW_MS = 15 * 60 * 1000; // the server keeps an auth request 15 minutes
const TENANT_ID = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

// SignInError is a sign-in refused or failed, with what to tell the user.
export class SignInError extends Error {}

// redirectURI is the console's redirect URI, registered exactly on every
// admin server: the console's page under this origin.
export function redirectURI() {
  return location.origin + "/console/";
}

// issuerPath is the path of the admin server a tenant's admins sign in at
// ("" tenant: system/system).
export function issuerPath(tenant) {
  if (!tenant) return "/system/system";
  if (!TENANT_ID.test(tenant)) {
    throw new SignInError(`"${tenant}" is not a tenant id (lowercase letters, digits and dashes).`);
  }
  return "/" + tenant + "/admin";
}

function b64url(bytes) {
  let s = "";
  for (const b of new Uint8Array(bytes)) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function random() {
  return b64url(crypto.getRandomValues(new Uint8Array(32))); // 256 bits, 43 characters
}

function sameOrigin(u) {
  try {
    return new URL(u).origin === location.origin;
  } catch {
    return false;
  }
}

function read(key) {
  try {
    return JSON.parse(sessionStorage.getItem(key) || "null");
  } catch {
    return null;
  }
}

// describe is an OAuth error answer as one line.
function describe(body, status) {
  if (body && body.error) return body.error + (body.error_description ? ": " + body.error_description : "");
  return "HTTP " + status;
}

// begin discovers the admin server of tenant ("" the system server),
// records the flow in this tab and sends the browser to its authorize
// endpoint; it only returns by throwing.
export async function begin(tenant) {
  if (!window.isSecureContext || !crypto.subtle) {
    throw new SignInError("Signing in with Gatehouse needs a secure page: open the console over https (or on a loopback address).");
  }
  const path = issuerPath(tenant);
  const issuer = location.origin + path;
  let res, doc;
  try {
    res = await fetch(path + "/.well-known/openid-configuration", { headers: { Accept: "application/json" }, credentials: "omit", cache: "no-store" });
    doc = await res.json().catch(() => null);
  } catch (e) {
    throw new SignInError("The server did not answer the discovery request: " + e.message);
  }
  if (!res.ok || !doc) {
    const what = tenant ? `tenant ${tenant}'s admin server` : "the system server";
    throw new SignInError(`Cannot sign in at ${what} (${issuer}): ${describe(doc, res.status)}`);
  }
  if (doc.issuer !== issuer) {
    throw new SignInError(`Gatehouse's public URL is not this page's origin: its issuer is ${doc.issuer}, not ${issuer}. ` +
      `Open the console under the public URL to sign in, or paste a credential.`);
  }
  for (const k of ["authorization_endpoint", "token_endpoint"]) {
    if (!sameOrigin(doc[k])) throw new SignInError(`The server's ${k} (${doc[k]}) is not on this origin.`);
  }
  if (!(doc.code_challenge_methods_supported || []).includes("S256")) {
    throw new SignInError("The server does not offer PKCE with S256.");
  }
  const state = random(), nonce = random(), verifier = random();
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PENDING, JSON.stringify({
    state, nonce, verifier, issuer, tenant, started: Date.now(),
    token_endpoint: doc.token_endpoint,
    end_session_endpoint: sameOrigin(doc.end_session_endpoint) ? doc.end_session_endpoint : "",
  }));
  const u = new URL(doc.authorization_endpoint);
  u.search = new URLSearchParams({
    response_type: "code", client_id: CLIENT_ID, redirect_uri: redirectURI(), scope: "openid",
    state, nonce, code_challenge: challenge, code_challenge_method: "S256",
  }).toString();
  location.assign(u.toString());
  return new Promise(() => {}); // the page goes away
}

// isRedirect reports whether the page was loaded as the end of a sign-in
// (code or error) or of a sign-out (state).
export function isRedirect(params) {
  return params.has("code") || params.has("error") || params.has("state");
}

// finishRedirect handles the page's query when isRedirect: it removes it
// from the address bar and history, then either completes the sign-in
// — {signedIn: {token, tenant, user, issuer}} — or confirms a sign-out —
// {signedOut: issuer}. It throws a SignInError for anything this tab did
// not start, or that the server refused.
export async function finishRedirect(params) {
  history.replaceState(null, "", location.pathname);
  const pending = read(PENDING);
  const logout = read(LOGOUT);
  sessionStorage.removeItem(PENDING); // one redirect per flow, whatever it says
  sessionStorage.removeItem(LOGOUT);
  const state = params.get("state") || "";
  if (logout && state && state === logout.state && !params.has("code") && !params.has("error")) {
    return { signedOut: logout.issuer };
  }
  if (!pending) {
    throw new SignInError("This page was opened with a sign-in answer this tab did not ask for: refused. Sign in again.");
  }
  if (!state || state !== pending.state) {
    throw new SignInError("The sign-in answer's state does not match the request this tab sent: refused (nothing was exchanged). Sign in again.");
  }
  if (params.has("error")) {
    throw new SignInError(`Gatehouse refused the sign-in: ${describe({ error: params.get("error"), error_description: params.get("error_description") })}`);
  }
  if (Date.now() - pending.started > MAX_FLOW_MS) {
    throw new SignInError("The sign-in took too long (over 15 minutes): sign in again.");
  }
  let res, tok;
  try {
    res = await fetch(pending.token_endpoint, {
      method: "POST", credentials: "omit", cache: "no-store",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
      body: new URLSearchParams({
        grant_type: "authorization_code", code: params.get("code") || "", redirect_uri: redirectURI(),
        client_id: CLIENT_ID, code_verifier: pending.verifier,
      }),
    });
    tok = await res.json().catch(() => null);
  } catch (e) {
    throw new SignInError("The token endpoint did not answer: " + e.message);
  }
  if (!res.ok || !tok || !tok.access_token) {
    throw new SignInError(`The token exchange failed: ${describe(tok, res.status)}`);
  }
  if (String(tok.token_type || "").toLowerCase() !== "bearer") {
    throw new SignInError(`The token endpoint answered a ${tok.token_type || "typeless"} token, not a bearer token.`);
  }
  const claims = checkIDToken(tok.id_token, pending);
  const user = { sub: claims.sub, issuer: pending.issuer, tenant: pending.tenant, id_token: tok.id_token,
    end_session_endpoint: pending.end_session_endpoint };
  sessionStorage.setItem(SESSION, JSON.stringify(user));
  return { signedIn: { token: tok.access_token, tenant: pending.tenant, user, issuer: pending.issuer } };
}

// checkIDToken checks the ID token's claims against this tab's request
// (see the top of the file for why not its signature) and returns them.
function checkIDToken(raw, pending) {
  const parts = typeof raw === "string" ? raw.split(".") : [];
  let header, claims;
  try {
    const decode = (s) => JSON.parse(new TextDecoder().decode(Uint8Array.from(atob(s.replaceAll("-", "+").replaceAll("_", "/")), (c) => c.charCodeAt(0))));
    header = decode(parts[0]);
    claims = decode(parts[1]);
  } catch {
    throw new SignInError("The token endpoint answered no readable ID token.");
  }
  const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  const problem =
    parts.length !== 3 || !header.alg || header.alg === "none" ? "it is not a signed JWT" :
    claims.iss !== pending.issuer ? `its issuer is ${claims.iss}, not ${pending.issuer}` :
    !aud.includes(CLIENT_ID) ? "it is not for the console (aud)" :
    aud.length > 1 && claims.azp !== CLIENT_ID ? "it was not issued to the console (azp)" :
    claims.nonce !== pending.nonce ? "its nonce is not the one this tab sent" :
    !(claims.exp * 1000 > Date.now()) ? "it has expired" :
    !claims.sub ? "it names no subject" : "";
  if (problem) throw new SignInError(`The ID token is refused: ${problem}.`);
  return claims;
}

// user is the signed-in user of an OIDC sign-in (null for a pasted
// credential).
export function user() {
  return read(SESSION);
}

// forget drops what this tab knows of a sign-in (and any flow started).
export function forget() {
  sessionStorage.removeItem(SESSION);
  sessionStorage.removeItem(PENDING);
}

// signOutURL is where to send the browser to end the user's session at
// Gatehouse (its end_session endpoint with the ID token as hint, back to
// the console), or "" when the sign-in was not one of Gatehouse's. It
// forgets the sign-in and records the sign-out's state.
export function signOutURL() {
  const u = user();
  forget();
  if (!u || !u.end_session_endpoint || !u.id_token) return "";
  const state = random();
  sessionStorage.setItem(LOGOUT, JSON.stringify({ state, issuer: u.issuer }));
  const url = new URL(u.end_session_endpoint);
  url.search = new URLSearchParams({ id_token_hint: u.id_token, post_logout_redirect_uri: redirectURI(), state }).toString();
  return url.toString();
}
