package tests

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/testkit/browser"
)

// The console's sign-in with Gatehouse: OpenID Connect's code flow with
// PKCE, as the built-in public client gatehouse-console of the admin
// servers (docs/console.md, docs/oauth.md).

const (
	consoleClientID = "gatehouse-console"
	consolePassword = "correct-horse-battery-staple"
)

// staticAdmin makes username (password consolePassword) the one static
// user of server aid of tenant tid: an administrator of the tenant when
// aid is its admin server (system-wide for system/system).
func staticAdmin(t *testing.T, c *client, tid, aid, username string) {
	t.Helper()
	c.must(200, "PUT", "/api/admin/"+tid+"/servers/"+aid+"/authentications", map[string]any{"methods": []any{map[string]any{
		"id": "staff", "name": "Staff", "method": "static", "static": map[string]any{
			"users": []any{map[string]any{"username": username, "password": consolePassword}}},
	}}})
}

// consoleSignIn runs the console's flow without a browser (x/oauth2, PKCE
// S256, state and nonce) at server aid of tid as username and returns the
// access token.
func consoleSignIn(t *testing.T, base, tid, aid, username string) string {
	t.Helper()
	ctx := context.Background()
	p, err := oidc.NewProvider(ctx, base+"/"+tid+"/"+aid)
	if err != nil {
		t.Fatalf("discovery of %s/%s: %v", tid, aid, err)
	}
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInParams
	conf := oauth2.Config{ClientID: consoleClientID, Endpoint: ep, RedirectURL: base + "/console/", Scopes: []string{oidc.ScopeOpenID}}
	verifier := oauth2.GenerateVerifier()
	res, err := browser.New(nil).Drive(conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", "n")),
		conf.RedirectURL, username, consolePassword)
	if err != nil || res.Callback == nil || res.Callback.Query().Get("state") != "st" {
		t.Fatalf("%s/%s: the flow ended at %d %s (%v)", tid, aid, res.Status, res.Body, err)
	}
	tok, err := conf.Exchange(ctx, res.Callback.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("%s/%s: exchange: %v", tid, aid, err)
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: consoleClientID}).Verify(ctx, tok.Extra("id_token").(string))
	if err != nil || idt.Nonce != "n" {
		t.Fatalf("%s/%s: ID token: %v", tid, aid, err)
	}
	return tok.AccessToken
}

// TestConsoleClientOnTheAdminAPI: the console's client signs a tenant's
// administrator in at the tenant's admin server, whose token manages that
// tenant only, and a system administrator at system/system, whose token
// acts system-wide; the client is nobody's to take, change or delete.
func TestConsoleClientOnTheAdminAPI(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			p := startServe(t, be.options(t))
			root := newClient(t, p.URL, testToken)
			for _, tid := range []string{"acme", "globex"} {
				root.must(201, "POST", "/api/system/tenants", map[string]any{"id": tid, "name": tid})
			}
			staticAdmin(t, root, "acme", "admin", "ada")
			staticAdmin(t, root, "globex", "admin", "gus")
			staticAdmin(t, root, "system", "system", "root")

			ada := newClient(t, p.URL, consoleSignIn(t, p.URL, "acme", "admin", "ada"))
			ada.must(201, "POST", "/api/admin/acme/services", map[string]any{"id": "pets", "name": "pets", "url": "http://pets.internal"})
			ada.must(403, "GET", "/api/admin/globex/services", nil)
			ada.must(403, "GET", "/api/system/tenants", nil)
			// globex's administrator signs in at globex, not at acme.
			newClient(t, p.URL, consoleSignIn(t, p.URL, "globex", "admin", "gus")).must(403, "GET", "/api/admin/acme/services", nil)

			system := newClient(t, p.URL, consoleSignIn(t, p.URL, "system", "system", "root"))
			if n := len(system.must(200, "GET", "/api/system/tenants", nil).JSON(t)["tenants"].([]any)); n < 2 {
				t.Fatalf("the system administrator sees %d tenants", n)
			}
			system.must(200, "GET", "/api/admin/globex/services", nil)

			// Not a stored client: nobody can create one of its id, nor
			// change or delete it; a tenant's other servers do not have it.
			ada.must(400, "POST", "/api/admin/acme/clients", map[string]any{"client_id": consoleClientID, "authorization_server_id": "admin",
				"public": true, "token_endpoint_auth_method": "none", "redirect_uris": []string{"https://evil.example.com/console/"}})
			ada.must(404, "PUT", "/api/admin/acme/clients/"+consoleClientID, map[string]any{"authorization_server_id": "admin",
				"redirect_uris": []string{"https://evil.example.com/console/"}})
			ada.must(404, "DELETE", "/api/admin/acme/clients/"+consoleClientID, nil)
			res, err := browser.New(nil).Drive(p.URL+"/acme/default/oauth2/authorize?"+url.Values{"client_id": {consoleClientID},
				"redirect_uri": {p.URL + "/console/"}, "response_type": {"code"}, "scope": {"openid"}, "state": {"st"},
				"code_challenge": {oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())}, "code_challenge_method": {"S256"}}.Encode(),
				p.URL+"/console/", "", "")
			if err != nil || res.Callback != nil || res.Status != 400 {
				t.Fatalf("the console's client at acme/default: %+v %v, want an HTML 400", res, err)
			}
		})
	}
}

// jwtClaims decodes a JWT's payload (no verification: the test reads
// what the console got).
func jwtClaims(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	out := map[string]any{}
	if err != nil || json.Unmarshal(b, &out) != nil {
		t.Fatalf("JWT payload %q: %v", parts[1], err)
	}
	return out
}

// consoleCredential is the console's credential in the tab's
// sessionStorage.
const consoleCredential = `sessionStorage.getItem("gatehouse.console.credential") || ""`

// TestConsoleSignInWithGatehouse: in headless Chromium, a tenant's
// administrator signs in with Gatehouse through the real login page of
// the tenant's admin server and manages the tenant with the access token
// (held by the tab, no cookie of the console's); sign-out ends the
// session at Gatehouse and revokes the token; an answer this tab did not
// ask for (another login's code and state) is refused without a token
// request; a revoked sign-in brings the sign-in screen back; a system
// administrator signs in at system/system and sees every tenant.
func TestConsoleSignInWithGatehouse(t *testing.T) {
	chromium := findChromium(t)
	p := startServe(t, serveOptions{DataDir: t.TempDir(), Token: testToken})
	c := newClient(t, p.URL, testToken)
	for _, tid := range []string{"acme", "globex"} {
		c.must(201, "POST", "/api/system/tenants", map[string]any{"id": tid, "name": tid})
	}
	c.must(201, "POST", "/api/admin/acme/services", map[string]any{"id": "pets", "name": "pets", "url": "http://127.0.0.1:1", "hosts": []string{"pets.example.com"}})
	c.must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "health", "service_id": "pets", "method": "GET", "path": "/healthz", "public": true})
	staticAdmin(t, c, "acme", "admin", "ada")
	staticAdmin(t, c, "system", "system", "root")

	d := newConsoleDriver(t, chromium)
	signInAt := func(tenant string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.Navigate(p.URL+"/console/"),
			chromedp.WaitVisible(chromedp.ID("oidc-tenant")),
			chromedp.SendKeys(chromedp.ID("oidc-tenant"), tenant),
			chromedp.Click(chromedp.ID("oidc-submit")),
		)
	}
	loginAs := func(username string) chromedp.Action[chromedp.Void] {
		return chromedp.Steps(
			chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SendKeys(chromedp.ID("username"), username),
			chromedp.SendKeys(chromedp.ID("password"), consolePassword),
			chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		)
	}
	d.step("sign in with Gatehouse at tenant acme", "",
		signInAt("acme"),
		chromedp.WaitVisible(chromedp.ID("username")),
		waitJS(`location.pathname === "/acme/admin/login"`),
	)
	d.step("signed in through the admin server's login page", "",
		loginAs("ada"),
		chromedp.WaitVisible(chromedp.ID("nav")),
		waitJS(`location.pathname === "/console/" && location.search === ""`), // the code left the address bar
		waitJS(`document.querySelector("#tenant-select").value === "acme"`),
		chromedp.WaitVisible(chromedp.CSS(`#services-body tr[data-api="health"]`)),
		waitJS(`document.querySelector("#session-user").textContent === "static/staff/ada"`),
	)
	token, err := chromedp.Run(d.ctx, chromedp.Evaluate[string](consoleCredential))
	if err != nil || token == "" {
		t.Fatalf("no credential in the tab's sessionStorage: %v", err)
	}
	if claims := jwtClaims(t, token); claims["client_id"] != consoleClientID || claims["iss"] != p.URL+"/acme/admin" {
		t.Fatalf("the console's credential: %v, want an access token of acme/admin for %s", claims, consoleClientID)
	}
	ada := newClient(t, p.URL, token)
	ada.must(200, "GET", "/api/admin/acme/services", nil)
	ada.must(403, "GET", "/api/admin/globex/services", nil)
	ada.must(403, "GET", "/api/system/tenants", nil)
	// The console has no cookie of its own, and the admin API gets none.
	cookies, err := chromedp.Run(d.ctx, func(ctx context.Context, tg *chromedp.Target) ([]*network.Cookie, error) {
		res, err := cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{p.URL + "/console/", p.URL + "/api/admin/acme/services"}})
		return res.Cookies, err
	})
	if err != nil || len(cookies) != 0 {
		t.Fatalf("cookies of the console or the admin API: %d (%v)", len(cookies), err)
	}

	d.step("sign out ends the session at Gatehouse", "",
		chromedp.Click(chromedp.ID("logout")),
		chromedp.WaitVisible(chromedp.ID("oidc-tenant")),
		waitJS(`document.querySelector("#login-error .ok")?.textContent.includes("Signed out")`),
		waitJS(`location.pathname === "/console/" && location.search === "" && !sessionStorage.getItem("gatehouse.console.credential")`),
	)
	ada.must(401, "GET", "/api/admin/acme/services", nil) // revoked by the end of the session

	// Another login's answer (an attacker's code and state, from a flow
	// run elsewhere) is refused: it is not the state this tab sent, and
	// no token is asked for.
	v := oauth2.GenerateVerifier()
	other, err := browser.New(nil).Drive(p.URL+"/acme/admin/oauth2/authorize?"+url.Values{"client_id": {consoleClientID},
		"redirect_uri": {p.URL + "/console/"}, "response_type": {"code"}, "scope": {"openid"}, "state": {"attacker-state"},
		"nonce": {"attacker-nonce"}, "code_challenge": {oauth2.S256ChallengeFromVerifier(v)}, "code_challenge_method": {"S256"}}.Encode(),
		p.URL+"/console/", "ada", consolePassword)
	if err != nil || other.Callback == nil || other.Callback.Query().Get("code") == "" {
		t.Fatalf("the other flow: %+v %v", other, err)
	}
	d.step("a sign-in answer with another state is refused", "",
		signInAt("acme"),
		chromedp.WaitVisible(chromedp.ID("username")), // this tab's flow waits for its login
		chromedp.Navigate(other.Callback.String()),
		waitJS(`document.querySelector("#login-error .error")?.textContent.includes("state")`),
		waitJS(`location.search === "" && !sessionStorage.getItem("gatehouse.console.credential") && document.querySelector("#nav").hidden`),
		waitJS(`performance.getEntriesByType("resource").every((e) => !e.name.includes("/oauth2/token"))`),
	)

	// Signed in again (the login page again: the session ended), then the
	// token is revoked (RFC 7009, as the console's client may): the next
	// call is a 401 and the sign-in screen comes back, the tenant in its
	// field.
	d.step("signed in again", "",
		signInAt("acme"),
		loginAs("ada"),
		chromedp.WaitVisible(chromedp.CSS(`#services-body tr[data-api="health"]`)),
	)
	token, err = chromedp.Run(d.ctx, chromedp.Evaluate[string](consoleCredential))
	if err != nil || token == "" {
		t.Fatalf("no credential after the second sign-in: %v", err)
	}
	revoke := &rpFixture{issuer: p.URL + "/acme/admin"}
	if st, body := revoke.form(t, "/oauth2/revoke", url.Values{"token": {token}, "client_id": {consoleClientID}}, "", ""); st != 200 {
		t.Fatalf("revoke the console's token: %d %v", st, body)
	}
	newClient(t, p.URL, token).must(401, "GET", "/api/admin/acme/services", nil)
	d.step("a revoked sign-in brings the sign-in screen back", "",
		chromedp.Click(chromedp.ID("services-refresh")),
		chromedp.WaitVisible(chromedp.ID("oidc-tenant")),
		waitJS(`document.querySelector("#login-error .error")?.textContent.includes("sign in again")`),
		waitJS(`document.querySelector("#oidc-tenant").value === "acme" && !sessionStorage.getItem("gatehouse.console.credential")`),
	)

	// A system administrator: the system tenant's server, every tenant.
	d.step("sign in with Gatehouse system-wide", "",
		chromedp.Navigate(p.URL+"/console/"),
		chromedp.WaitVisible(chromedp.ID("oidc-tenant")),
		chromedp.Clear(chromedp.ID("oidc-tenant")),
		chromedp.Click(chromedp.ID("oidc-submit")),
		chromedp.WaitVisible(chromedp.ID("username")),
		waitJS(`location.pathname === "/system/system/login"`),
		loginAs("root"),
		chromedp.WaitVisible(chromedp.ID("nav")),
		waitJS(`["acme", "globex"].every((t) => [...document.querySelectorAll("#tenant-select option")].some((o) => o.value === t))`),
		waitJS(`document.querySelector("#session-user").textContent === "static/staff/root"`),
	)
	violations, err := chromedp.Run(d.ctx, chromedp.Evaluate[string](`(window.__cspViolations || []).join("\n")`))
	if err != nil || violations != "" {
		t.Errorf("Content-Security-Policy violations in the console: %q (%v)", violations, err)
	}
}
