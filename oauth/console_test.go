package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/verify"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The web console's built-in client (console.go): public, PKCE, on the
// admin servers only, its redirect URI fixed to the console.

// consoleEnv is newEnv with admin servers (withAdminServers).
func consoleEnv(t *testing.T, st store.Store) *env {
	t.Helper()
	e := newEnv(t, st)
	e.withAdminServers()
	return e
}

// consoleBackends is backends with admin servers (withAdminServers).
func consoleBackends(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Helper()
	backends(t, func(t *testing.T, e *env) {
		e.withAdminServers()
		fn(t, e)
	})
}

// withAdminServers adds acme/admin, globex/admin and system/system (alice
// a static user of each) and a scope bound to acme/admin.
func (e *env) withAdminServers() {
	e.t.Helper()
	testkit.Create(e.t, e.st, testkit.Tenant(model.SystemTenantID))
	e.server("acme", model.AdminServerID, nil)
	e.server("globex", model.AdminServerID, nil)
	e.server(model.SystemTenantID, model.SystemServerID, nil)
	testkit.Create(e.t, e.st, &store.Object{Kind: model.KindScope, TenantID: "acme", ID: "admin-read", Name: "admin.read",
		Spec: mustJSON(model.ScopeSpec{ServerID: model.AdminServerID})})
}

// consoleRedirect is the console's redirect URI under the env's public URL.
func (e *env) consoleRedirect() string { return model.ConsoleRedirectURI(e.srv.URL) }

// consoleRP is the console as a relying party of server aid of tid: the
// built-in client, no secret (client_id in the token request's body).
func (e *env) consoleRP(tid, aid string) *rp {
	e.t.Helper()
	r := e.rp(tid, aid, model.ConsoleClientID, "", e.consoleRedirect(), oidc.ScopeOpenID)
	r.conf.Endpoint.AuthStyle = oauth2.AuthStyleInParams
	return r
}

func TestConsoleClientSignsInToAdminServers(t *testing.T) {
	consoleBackends(t, func(t *testing.T, e *env) {
		admins := verify.AdminAuth{Verifier: verify.New(e.st, e.srv.URL, nil, nil)}
		ctx := context.Background()
		for _, s := range []struct{ tid, aid, actsOn string }{
			{"acme", model.AdminServerID, "acme"},
			{"globex", model.AdminServerID, "globex"},
			{model.SystemTenantID, model.SystemServerID, ""}, // system-wide
		} {
			r := e.consoleRP(s.tid, s.aid)
			verifier := oauth2.GenerateVerifier()
			tok, err := r.conf.Exchange(r.ctx, r.login(verifier, "n-console"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("%s/%s: exchange: %v", s.tid, s.aid, err)
			}
			iss := e.issuer(s.tid, s.aid)
			rawID, _ := tok.Extra("id_token").(string)
			idt, err := r.provider.Verifier(&oidc.Config{ClientID: model.ConsoleClientID}).Verify(r.ctx, rawID)
			if err != nil || idt.Nonce != "n-console" || !slices.Equal(idt.Audience, []string{model.ConsoleClientID}) {
				t.Fatalf("%s/%s: ID token %+v: %v", s.tid, s.aid, idt, err)
			}
			at := decodeJWT(t, tok.AccessToken)
			if at["iss"] != iss || at["client_id"] != model.ConsoleClientID || at["sub"] != "static/staff/alice" {
				t.Fatalf("%s/%s: access token %v", s.tid, s.aid, at)
			}
			if aud, _ := at["aud"].([]any); len(aud) != 1 || aud[0] != iss {
				t.Fatalf("%s/%s: access token aud %v, want the issuer", s.tid, s.aid, at["aud"])
			}
			if tok.RefreshToken != "" {
				t.Fatalf("%s/%s: the console got a refresh token (it has the authorization_code grant only)", s.tid, s.aid)
			}
			// The admin API takes it for that tenant's admins (or the
			// system's), and no other server's verification accepts it.
			p, err := admins.Authenticate(ctx, tok.AccessToken)
			if err != nil || p.TenantID != s.actsOn || p.Subject != "token:"+s.tid+"/"+s.aid+":static/staff/alice" {
				t.Fatalf("%s/%s: the admin API's principal %+v: %v", s.tid, s.aid, p, err)
			}
			for _, other := range [][2]string{{"acme", "admin"}, {"globex", "admin"}, {"system", "system"}, {s.tid, "default"}} {
				if other == [2]string{s.tid, s.aid} {
					continue
				}
				if _, err := admins.Verifier.Verify(ctx, other[0], other[1], tok.AccessToken); !errors.Is(err, verify.ErrNotAccepted) {
					t.Errorf("a console token of %s/%s verified as one of %s/%s: %v", s.tid, s.aid, other[0], other[1], err)
				}
			}

			// Sign-out: the end_session endpoint with the ID token comes back
			// to the console with the state, and the token is dead.
			logout := iss + "/oauth2/logout?" + url.Values{"id_token_hint": {rawID},
				"post_logout_redirect_uri": {e.consoleRedirect()}, "state": {"bye"}}.Encode()
			res := e.drive(r.browser, logout, e.consoleRedirect(), "", "")
			if res.callback == nil || res.callback.Query().Get("state") != "bye" {
				t.Fatalf("%s/%s: logout: %d %s", s.tid, s.aid, res.status, res.body)
			}
			if _, err := admins.Authenticate(ctx, tok.AccessToken); !errors.Is(err, verify.ErrNotAccepted) {
				t.Fatalf("%s/%s: the console's token still acts on the admin API after the sign-out: %v", s.tid, s.aid, err)
			}
		}
	})
}

func TestConsoleClientRefusals(t *testing.T) {
	consoleBackends(t, func(t *testing.T, e *env) {
		challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
		console := e.consoleRedirect()
		pkce := []string{"code_challenge", challenge, "code_challenge_method", "S256"}
		// Stored clients of the reserved id (the admin API refuses it;
		// written here behind its back) change nothing: on admin servers
		// the id is the built-in client, elsewhere nobody.
		for tid, aid := range map[string]string{"acme": model.AdminServerID, "globex": model.DefaultServerID} {
			testkit.Create(t, e.st, &store.Object{Kind: model.KindClient, TenantID: tid, ID: model.ConsoleClientID,
				Spec: mustJSON(model.ClientSpec{ServerID: aid, Public: true, GrantTypes: []string{model.GrantAuthorizationCode},
					RedirectURIs: []string{"https://evil.example.com/console/", console}, TokenEndpointAuthMethod: model.AuthMethodNone})})
		}

		// Refused before the redirect URI could be trusted: HTML 400.
		for name, c := range map[string]struct {
			tid, aid, redirect string
			param              string
		}{
			"another redirect URI":             {"acme", "admin", "https://evil.example.com/console/", "redirect_uri:"},
			"a redirect URI under the console": {"acme", "admin", console + "callback", "redirect_uri:"},
			"the console without its slash":    {"acme", "admin", strings.TrimSuffix(console, "/"), "redirect_uri:"},
			"the console at another port":      {"acme", "admin", "http://127.0.0.1:1/console/", "redirect_uri:"},
			"a tenant's default server":        {"acme", "default", console, "client_id:"},
			"a tenant's other server":          {"acme", "other", console, "client_id:"},
			"another tenant's default server":  {"globex", "default", console, "client_id:"},
		} {
			before := e.snapshot(c.tid)
			resp, body := e.get(e.browser(), e.authorizeURL(c.tid, c.aid, authQuery(model.ConsoleClientID, c.redirect, pkce...)))
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, c.param) {
				t.Errorf("%s: %d %q %q, want an HTML 400 without redirect", name, resp.StatusCode, resp.Header.Get("Location"), body)
			}
			e.unchanged(c.tid, before, name)
		}

		// Refused on the redirect: PKCE S256 is required, scopes are the
		// OpenID ones (no refresh: no offline_access).
		for name, q := range map[string]url.Values{
			"no PKCE":         authQuery(model.ConsoleClientID, console),
			"plain PKCE":      authQuery(model.ConsoleClientID, console, "code_challenge", challenge, "code_challenge_method", "plain"),
			"offline_access":  authQuery(model.ConsoleClientID, console, append(pkce, "scope", "openid offline_access")...),
			"a server scope":  authQuery(model.ConsoleClientID, console, append(pkce, "scope", "openid admin.read")...),
			"implicit tokens": authQuery(model.ConsoleClientID, console, append(pkce, "response_type", "id_token")...),
		} {
			before := e.snapshot("acme")
			resp, _ := e.get(e.browser(), e.authorizeURL("acme", "admin", q))
			loc, _ := url.Parse(resp.Header.Get("Location"))
			var got url.Values
			if loc != nil {
				got = loc.Query()
				if loc.Fragment != "" { // an implicit response type answers in the fragment
					got, _ = url.ParseQuery(loc.Fragment)
				}
				loc.RawQuery, loc.Fragment = "", ""
			}
			if resp.StatusCode != http.StatusFound || loc == nil || loc.String() != console ||
				got.Get("error") == "" || got.Get("code") != "" || got.Get("state") != "st" {
				t.Errorf("%s: %d %q, want an error on the console's redirect", name, resp.StatusCode, resp.Header.Get("Location"))
			}
			e.unchanged("acme", before, name)
		}

		// The code: only with its verifier, only at its server, only once.
		r := e.consoleRP("acme", "admin")
		verifier := oauth2.GenerateVerifier()
		code := r.login(verifier, "n")
		exchange := func(tid, aid string, form url.Values) (int, map[string]any) {
			f := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {console},
				"client_id": {model.ConsoleClientID}, "code_verifier": {verifier}}
			for k, v := range form {
				f[k] = v
			}
			for k, v := range f {
				if len(v) == 1 && v[0] == "" {
					delete(f, k)
				}
			}
			return e.postForm(e.issuer(tid, aid)+"/oauth2/token", f, "", "")
		}
		for name, c := range map[string]struct {
			tid, aid string
			form     url.Values
			want     string
		}{
			"no verifier":            {"acme", "admin", url.Values{"code_verifier": {""}}, "invalid_request"},
			"another verifier":       {"acme", "admin", url.Values{"code_verifier": {oauth2.GenerateVerifier()}}, "invalid_grant"},
			"another redirect":       {"acme", "admin", url.Values{"redirect_uri": {console + "x"}}, "invalid_grant"},
			"another tenant's admin": {"globex", "admin", nil, "invalid_grant"},
			"the system server":      {"system", "system", nil, "invalid_grant"},
		} {
			if status, body := exchange(c.tid, c.aid, c.form); status/100 != 4 || body["error"] != c.want {
				t.Errorf("%s: %d %v, want %s", name, status, body, c.want)
			}
		}
		if status, body := exchange("acme", "admin", nil); status != http.StatusOK || body["access_token"] == nil {
			t.Fatalf("the exchange: %d %v", status, body)
		}
		if status, body := exchange("acme", "admin", nil); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("a replayed code: %d %v", status, body)
		}
	})
}

// The console's origin may call its admin servers cross-origin (it is
// the origin of a redirect URI of theirs), no other server's.
func TestConsoleClientCORS(t *testing.T) {
	e := consoleEnv(t, testkit.Store(t))
	for aid, want := range map[string]string{"admin": e.srv.URL, "default": ""} {
		req, _ := http.NewRequest(http.MethodGet, e.issuer("acme", aid)+"/.well-known/openid-configuration", nil)
		req.Header.Set("Origin", e.srv.URL)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != want {
			t.Errorf("acme/%s: Access-Control-Allow-Origin %q, want %q", aid, got, want)
		}
	}
}

// The console has a redirect URI only under an https public URL or a
// loopback http one.
func TestConsoleRedirectFollowsThePublicURL(t *testing.T) {
	for public, want := range map[string]string{
		"https://gatehouse.example.com":         "https://gatehouse.example.com/console/",
		"https://gatehouse.example.com/":        "https://gatehouse.example.com/console/",
		"https://example.com/gatehouse":         "https://example.com/gatehouse/console/",
		"http://127.0.0.1:8080":                 "http://127.0.0.1:8080/console/",
		"http://[::1]:8080":                     "http://[::1]:8080/console/",
		"http://localhost:8080":                 "http://localhost:8080/console/",
		"http://gatehouse.internal:8080":        "",
		"http://10.0.0.5":                       "",
		"http://[::]:8080":                      "",
		"http://127.0.0.1.nip.io:8080/whatever": "",
	} {
		u, err := url.Parse(strings.TrimRight(public, "/"))
		if err != nil {
			t.Fatal(err)
		}
		if got := consoleRedirect(u); got != want {
			t.Errorf("public URL %s: the console's redirect URI %q, want %q", public, got, want)
		}
	}
}
