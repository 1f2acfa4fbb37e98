package tests

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/browser"
)

// rpFixture is a tenant configured over the admin API for the relying
// party tests: server shop with a static user, a confidential web client,
// a public cli client and a machine client, a scope and a gateway whose
// policy requires it.
type rpFixture struct {
	cp       *process
	c        *client
	issuer   string
	redirect string
	web      oauth2.Config
	machine  clientcredentials.Config
}

const (
	rpPassword = "wonderland-rabbit-hole"
	rpTenant   = "acme"
	rpServer   = "shop"
)

func newRPFixture(t *testing.T, o serveOptions) *rpFixture {
	t.Helper()
	cp := startServe(t, o)
	c := newClient(t, cp.URL, testToken)
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": rpTenant, "name": "Acme"})
	c.must(201, "POST", "/api/admin/acme/servers", map[string]any{"id": rpServer, "name": "shop", "enforce_pkce": true,
		"key_type": "ecdsa", "key_activation_delay": "0s"})
	c.must(200, "PUT", "/api/admin/acme/servers/shop/authentications", map[string]any{"methods": []any{map[string]any{
		"id": "staff", "name": "Staff", "method": "static", "static": map[string]any{"hint": "alice / the rabbit hole",
			"users": []any{map[string]any{"username": "alice", "password": rpPassword,
				"authentication_context": map[string]any{"email": "alice@example.com", "email_verified": true, "name": "Alice"}}}},
	}}})
	c.must(201, "POST", "/api/admin/acme/scopes", map[string]any{"id": "pets-read", "name": "pets:read", "server_id": rpServer})
	// The redirect URI is never reached: the browser stops at it.
	redirect := "http://127.0.0.1:1/callback"
	web := c.must(201, "POST", "/api/admin/acme/clients", map[string]any{"client_id": "web", "client_name": "Web",
		"authorization_server_id": rpServer, "grant_types": []string{"authorization_code", "refresh_token"},
		"redirect_uris": []string{redirect}, "post_logout_redirect_uris": []string{"http://127.0.0.1:1/bye"},
		"scopes": []string{"openid", "profile", "email", "offline_access", "pets:read"}}).JSON(t)
	c.must(201, "POST", "/api/admin/acme/clients", map[string]any{"client_id": "cli", "authorization_server_id": rpServer,
		"public": true, "token_endpoint_auth_method": "none", "redirect_uris": []string{redirect},
		"scopes": []string{"openid"}})
	machine := c.must(201, "POST", "/api/admin/acme/clients", map[string]any{"client_id": "machine", "authorization_server_id": rpServer,
		"grant_types": []string{"client_credentials"}, "scopes": []string{"pets:read"}}).JSON(t)
	issuer := cp.URL + "/" + rpTenant + "/" + rpServer
	f := &rpFixture{cp: cp, c: c, issuer: issuer, redirect: redirect}
	p, err := oidc.NewProvider(context.Background(), issuer)
	if err != nil {
		t.Fatalf("discovery of %s: %v", issuer, err)
	}
	f.web = oauth2.Config{ClientID: "web", ClientSecret: web["client_secret"].(string), Endpoint: p.Endpoint(),
		RedirectURL: redirect, Scopes: []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess}}
	f.machine = clientcredentials.Config{ClientID: "machine", ClientSecret: machine["client_secret"].(string),
		TokenURL: p.Endpoint().TokenURL, Scopes: []string{"pets:read"}}
	return f
}

// provider is go-oidc's view of the fixture's server.
func (f *rpFixture) provider(t *testing.T) *oidc.Provider {
	t.Helper()
	p, err := oidc.NewProvider(context.Background(), f.issuer)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// login runs the code flow's front channel for alice and returns the code.
func (f *rpFixture) login(t *testing.T, b *browser.Browser, conf oauth2.Config, state, nonce, verifier string) string {
	t.Helper()
	res, err := b.Drive(conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", nonce)),
		f.redirect, "alice", rpPassword)
	if err != nil {
		t.Fatal(err)
	}
	if res.Callback == nil {
		t.Fatalf("the flow did not reach the redirect URI: %d %s", res.Status, res.Body)
	}
	q := res.Callback.Query()
	if q.Get("state") != state || q.Get("code") == "" {
		t.Fatalf("callback %s: want state %q and a code", res.Callback, state)
	}
	return q.Get("code")
}

// form posts a form to the issuer's endpoint with basic client auth.
func (f *rpFixture) form(t *testing.T, path string, v url.Values, user, pass string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.issuer+path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	out := map[string]any{}
	if len(body) > 0 && json.Unmarshal(body, &out) != nil {
		t.Fatalf("POST %s: %d %q is not JSON", path, res.StatusCode, body)
	}
	return res.StatusCode, out
}

func (f *rpFixture) introspect(t *testing.T, tok string) map[string]any {
	t.Helper()
	st, body := f.form(t, "/oauth2/introspect", url.Values{"token": {tok}}, "web", f.web.ClientSecret)
	if st != 200 {
		t.Fatalf("introspect: %d %v", st, body)
	}
	return body
}

// TestOIDCRelyingParty runs a relying party (x/oauth2 + go-oidc) against
// the real binary, on both stores: the code flow with PKCE and nonce
// through the login page, the ID token, userinfo, refresh rotation and
// reuse detection, revocation, introspection and logout, and client
// credentials for machines.
func TestOIDCRelyingParty(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			f := newRPFixture(t, be.options(t))
			ctx := context.Background()
			p := f.provider(t)
			b := browser.New(nil)
			verifier := oauth2.GenerateVerifier()
			code := f.login(t, b, f.web, "st-1", "n-1", verifier)
			tok, err := f.web.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := p.Verifier(&oidc.Config{ClientID: "web"}).Verify(ctx, raw)
			if err != nil {
				t.Fatalf("ID token: %v", err)
			}
			if idt.Subject == "" || idt.Nonce != "n-1" || len(idt.Audience) == 0 || idt.Audience[0] != "web" {
				t.Fatalf("ID token sub %q nonce %q aud %v", idt.Subject, idt.Nonce, idt.Audience)
			}
			if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
				t.Fatalf("at_hash: %v", err)
			}
			info, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil || info.Subject != idt.Subject || info.Email != "alice@example.com" {
				t.Fatalf("userinfo: %+v, %v", info, err)
			}
			if in := f.introspect(t, tok.AccessToken); in["active"] != true || in["sub"] != idt.Subject {
				t.Fatalf("introspection of a live token: %v", in)
			}

			// A second login in the same browser uses the session: no form.
			res, err := b.Drive(f.web.AuthCodeURL("st-2", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("prompt", "none")),
				f.redirect, "", "")
			if err != nil || res.Callback == nil || res.Callback.Query().Get("code") == "" {
				t.Fatalf("prompt=none with a session: %+v, %v", res, err)
			}

			// Refresh: a new pair; the old refresh token is single-use and
			// its reuse kills the family, the new one included.
			expired := *tok
			expired.Expiry = time.Now().Add(-time.Minute)
			fresh, err := f.web.TokenSource(ctx, &expired).Token()
			if err != nil || fresh.RefreshToken == "" || fresh.RefreshToken == tok.RefreshToken || fresh.AccessToken == tok.AccessToken {
				t.Fatalf("refresh: %+v, %v", fresh, err)
			}
			st, body := f.form(t, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, "web", f.web.ClientSecret)
			if st != 400 || body["error"] != "invalid_grant" {
				t.Fatalf("refresh token reuse: %d %v", st, body)
			}
			st, body = f.form(t, "/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {fresh.RefreshToken}}, "web", f.web.ClientSecret)
			if st != 400 || body["error"] != "invalid_grant" {
				t.Fatalf("the family's newest refresh token after a reuse: %d %v", st, body)
			}
			if in := f.introspect(t, fresh.AccessToken); in["active"] != false {
				t.Fatalf("access token of a revoked family: %v", in)
			}

			// Revoke and logout on a new login.
			code = f.login(t, browser.New(nil), f.web, "st-3", "n-3", verifier)
			tok, err = f.web.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			if st, body := f.form(t, "/oauth2/revoke", url.Values{"token": {tok.AccessToken}}, "web", f.web.ClientSecret); st != 200 {
				t.Fatalf("revoke: %d %v", st, body)
			}
			if in := f.introspect(t, tok.AccessToken); in["active"] != false {
				t.Fatalf("revoked token: %v", in)
			}
			logout := f.issuer + "/oauth2/logout?" + url.Values{"id_token_hint": {tok.Extra("id_token").(string)},
				"post_logout_redirect_uri": {"http://127.0.0.1:1/bye"}, "state": {"bye"}}.Encode()
			res, err = b.Drive(logout, "http://127.0.0.1:1/bye", "", "")
			if err != nil || res.Callback == nil || res.Callback.Query().Get("state") != "bye" {
				t.Fatalf("logout: %+v, %v", res, err)
			}
			res, err = b.Drive(f.web.AuthCodeURL("st-4", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("prompt", "none")), f.redirect, "", "")
			if err != nil || res.Callback == nil || res.Callback.Query().Get("error") != "login_required" {
				t.Fatalf("prompt=none after logout: %+v, %v (want login_required)", res, err)
			}

			// Machines: client credentials.
			mt, err := f.machine.Token(ctx)
			if err != nil {
				t.Fatalf("client credentials: %v", err)
			}
			if in := f.introspect(t, mt.AccessToken); in["active"] != true || in["client_id"] != "machine" {
				t.Fatalf("machine token: %v", in)
			}
		})
	}
}

// TestOIDCRefusals: every refused request of the code flow issues nothing
// and leaves the provider as it was.
func TestOIDCRefusals(t *testing.T) {
	be := backends()[0]
	f := newRPFixture(t, be.options(t))
	ctx := context.Background()
	verifier := oauth2.GenerateVerifier()

	t.Run("wrong code verifier", func(t *testing.T) {
		code := f.login(t, browser.New(nil), f.web, "s", "n", verifier)
		if _, err := f.web.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
			t.Fatal("a code exchanged with the wrong verifier")
		}
	})
	t.Run("code replay revokes what the code issued", func(t *testing.T) {
		code := f.login(t, browser.New(nil), f.web, "s", "n", verifier)
		tok, err := f.web.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.web.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err == nil {
			t.Fatal("a code was exchanged twice")
		}
		if in := f.introspect(t, tok.AccessToken); in["active"] != false {
			t.Fatalf("the first exchange's token after a replay: %v", in)
		}
	})
	t.Run("no code challenge, plain, scope not allowed", func(t *testing.T) {
		for name, c := range map[string]struct {
			params    url.Values
			wantError string
		}{
			"no code_challenge": {url.Values{}, "invalid_request"},
			"plain":             {url.Values{"code_challenge": {verifier}, "code_challenge_method": {"plain"}}, "invalid_request"},
			"scope not allowed": {url.Values{"code_challenge": {oauth2.S256ChallengeFromVerifier(verifier)}, "code_challenge_method": {"S256"},
				"scope": {"openid admin:everything"}}, "invalid_scope"},
		} {
			q := url.Values{"response_type": {"code"}, "client_id": {"web"}, "redirect_uri": {f.redirect}, "scope": {"openid"}, "state": {"s"}}
			for k, v := range c.params {
				q[k] = v
			}
			res, err := browser.New(nil).Drive(f.issuer+"/oauth2/authorize?"+q.Encode(), f.redirect, "alice", rpPassword)
			if err != nil {
				t.Fatal(err)
			}
			if res.Callback == nil || res.Callback.Query().Get("error") != c.wantError || res.Callback.Query().Get("code") != "" {
				t.Errorf("%s: %+v, want error %s on the redirect and no code", name, res, c.wantError)
			}
			if res.LoginShown {
				t.Errorf("%s: the login page was shown for a refused request", name)
			}
		}
	})
	t.Run("unknown client or redirect mismatch: an HTML 400, no redirect", func(t *testing.T) {
		for name, q := range map[string]url.Values{
			"unknown client":    {"response_type": {"code"}, "client_id": {"nobody"}, "redirect_uri": {f.redirect}, "scope": {"openid"}},
			"redirect mismatch": {"response_type": {"code"}, "client_id": {"web"}, "redirect_uri": {"http://127.0.0.1:1/evil"}, "scope": {"openid"}},
		} {
			q.Set("code_challenge", oauth2.S256ChallengeFromVerifier(verifier))
			q.Set("code_challenge_method", "S256")
			res, err := browser.New(nil).Drive(f.issuer+"/oauth2/authorize?"+q.Encode(), "http://127.0.0.1:1/", "", "")
			if err != nil {
				t.Fatal(err)
			}
			if res.Callback != nil || res.Status != 400 || !strings.Contains(strings.ToLower(res.Body), "<html") {
				t.Errorf("%s: %+v, want an HTML 400 and no redirect", name, res)
			}
		}
	})
	t.Run("wrong client secret", func(t *testing.T) {
		bad := f.machine
		bad.ClientSecret = "not-the-secret-0123456789abcdefghijklmnop"
		if _, err := bad.Token(ctx); err == nil {
			t.Fatal("a token for a wrong secret")
		}
	})
	t.Run("disabled tenant", func(t *testing.T) {
		f.c.must(200, "PATCH", "/api/system/tenants/acme", map[string]any{"status": "DISABLED"}, "Content-Type", "application/merge-patch+json")
		defer f.c.must(200, "PATCH", "/api/system/tenants/acme", map[string]any{"status": "AVAILABLE"}, "Content-Type", "application/merge-patch+json")
		if _, err := f.machine.Token(ctx); err == nil {
			t.Fatal("a token from a disabled tenant")
		}
		res, err := http.Get(f.issuer + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 403 {
			t.Fatalf("discovery of a disabled tenant: %d, want 403", res.StatusCode)
		}
	})
}

// TestGatehouseTokensAtTheGateway: a client-credentials token of the
// tenant's own server is allowed by serve's in-process authorizer and by
// a separate gatehouse authorizer, with no issuer configured; revoked, it
// is denied within 1 s; after a key rotation, tokens of the new key are
// accepted without a restart; another tenant's token is refused.
func TestGatehouseTokensAtTheGateway(t *testing.T) {
	f := newRPFixture(t, backends()[0].options(t))
	c := f.c
	c.must(201, "POST", "/api/admin/acme/policies", map[string]any{"id": "readers", "policy_name": "readers",
		"validators": []any{map[string]any{"name": "scope", "conf": map[string]any{"scope": "pets:read"}}}})
	c.must(201, "POST", "/api/admin/acme/services", map[string]any{"id": "pets", "name": "pets", "url": "http://127.0.0.1:1"})
	c.must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "get-pet", "service_id": "pets", "method": "GET", "path": "/pets/{id}", "policy_id": "readers"})
	gw := c.must(201, "POST", "/api/admin/acme/gateways", map[string]any{"id": "edge", "name": "edge", "policy_timeout_ms": 1000}).JSON(t)
	key := c.must(200, "GET", "/api/admin/acme/gateways/edge/keys", nil).JSON(t)["keys"].([]any)[0].(map[string]any)
	g := gatewaySetup{token: gw["credential"].(map[string]any)["token"].(string), kid: key["kid"].(string), keyFile: writeTemp(t, key["public_key_pem"].(string))}
	_, addr := startAuthorizer(t, f.cp.URL, g, t.TempDir())
	authorizers := map[string]struct {
		c   authv3.AuthorizationClient
		ext map[string]string
	}{
		"serve's authorizer":   {authzClient(t, f.cp.waitLog(t, "ext_authz listening", "addr")), map[string]string{"tenant": "acme", "gateway": "edge"}},
		"gatehouse authorizer": {authzClient(t, addr), nil},
	}
	check := func(ac authv3.AuthorizationClient, ext map[string]string, bearer string) code.Code {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{ContextExtensions: ext,
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/pets/1", Host: "pets.example.com", Headers: map[string]string{"authorization": "Bearer " + bearer}}}}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := ac.Check(ctx, req)
		if err != nil {
			t.Fatalf("check: %v", err)
		}
		return code.Code(res.Status.Code)
	}
	decidesToken := func(ac authv3.AuthorizationClient, ext map[string]string, bearer string, want code.Code) func() error {
		return func() error {
			got := check(ac, ext, bearer)
			return testkit.Check(got == want, "check with the token: %v, want %v", got, want)
		}
	}
	ctx := context.Background()
	tok, err := f.machine.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range authorizers {
		testkit.Eventually(t, 20*time.Second, decidesToken(a.c, a.ext, tok.AccessToken, code.Code_OK), "%s allows the token", name)
	}

	t.Run("revoked: denied within 1 s", func(t *testing.T) {
		if st, body := f.form(t, "/oauth2/revoke", url.Values{"token": {tok.AccessToken}}, "machine", f.machine.ClientSecret); st != 200 {
			t.Fatalf("revoke: %d %v", st, body)
		}
		for name, a := range authorizers {
			took := testkit.Eventually(t, time.Second, decidesToken(a.c, a.ext, tok.AccessToken, code.Code_UNAUTHENTICATED), "%s denies the revoked token", name)
			t.Logf("%s: revocation enforced after %v", name, took)
		}
	})

	t.Run("key rotation: new tokens accepted with no restart", func(t *testing.T) {
		before := c.must(200, "GET", "/api/admin/acme/servers/shop/keys", nil).JSON(t)
		c.must(201, "POST", "/api/admin/acme/servers/shop/keys/rotate", nil)
		after := c.must(200, "GET", "/api/admin/acme/servers/shop/keys", nil).JSON(t)
		if fmt.Sprint(before) == fmt.Sprint(after) {
			t.Fatal("rotate changed nothing")
		}
		fresh, err := f.machine.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if kidOf(t, fresh.AccessToken) == kidOf(t, tok.AccessToken) {
			t.Fatal("the token after rotation is signed by the old key")
		}
		for name, a := range authorizers {
			testkit.Eventually(t, 10*time.Second, decidesToken(a.c, a.ext, fresh.AccessToken, code.Code_OK), "%s allows a token of the new key", name)
		}
	})

	t.Run("another tenant's token is refused", func(t *testing.T) {
		c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "globex", "name": "Globex"})
		c.must(201, "POST", "/api/admin/globex/scopes", map[string]any{"id": "pets-read", "name": "pets:read", "server_id": "default"})
		other := c.must(201, "POST", "/api/admin/globex/clients", map[string]any{"client_id": "machine", "authorization_server_id": "default",
			"grant_types": []string{"client_credentials"}, "scopes": []string{"pets:read"}}).JSON(t)
		p, err := oidc.NewProvider(ctx, f.cp.URL+"/globex/default")
		if err != nil {
			t.Fatal(err)
		}
		foreign, err := (&clientcredentials.Config{ClientID: "machine", ClientSecret: other["client_secret"].(string),
			TokenURL: p.Endpoint().TokenURL, Scopes: []string{"pets:read"}}).Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for name, a := range authorizers {
			if got := check(a.c, a.ext, foreign.AccessToken); got != code.Code_UNAUTHENTICATED {
				t.Errorf("%s: globex's token at acme's gateway: %v", name, got)
			}
		}
		if in := f.introspect(t, foreign.AccessToken); in["active"] != false {
			t.Errorf("globex's token at acme's introspection: %v", in)
		}
	})
}

// kidOf is the kid of a JWT's header.
func kidOf(t *testing.T, raw string) string {
	t.Helper()
	h, _, _ := strings.Cut(raw, ".")
	var hdr struct {
		Kid string `json:"kid"`
	}
	b, err := base64URL(h)
	if err != nil || json.Unmarshal(b, &hdr) != nil {
		t.Fatalf("token header %q", h)
	}
	return hdr.Kid
}

func base64URL(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// writeTemp writes content to a file of a temp dir and returns its path.
func writeTemp(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
