package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// rp is a relying party of client web at a server.
type rp struct {
	e        *env
	ctx      context.Context
	provider *oidc.Provider
	conf     oauth2.Config
	browser  *http.Client
}

func (e *env) rp(tid, aid, clientID, secret, redirect string, scopes ...string) *rp {
	e.t.Helper()
	ctx := oidc.ClientContext(context.Background(), http.DefaultClient)
	p, err := oidc.NewProvider(ctx, e.issuer(tid, aid))
	if err != nil {
		e.t.Fatalf("discovery of %s/%s: %v", tid, aid, err)
	}
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess}
	}
	return &rp{e: e, ctx: ctx, provider: p, browser: e.browser(),
		conf: oauth2.Config{ClientID: clientID, ClientSecret: secret, Endpoint: p.Endpoint(), RedirectURL: redirect, Scopes: scopes}}
}

// login runs the authorization request in the browser, logs alice in and
// returns the code (checking state).
func (r *rp) login(verifier, nonce string, opts ...oauth2.AuthCodeOption) string {
	r.e.t.Helper()
	opts = append(opts, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("nonce", nonce))
	res := r.e.drive(r.browser, r.conf.AuthCodeURL("st-123", opts...), r.conf.RedirectURL, "alice", alicePassword)
	if res.callback == nil {
		r.e.t.Fatalf("no redirect to the client: %d %s", res.status, res.body)
	}
	q := res.callback.Query()
	if q.Get("state") != "st-123" || q.Get("code") == "" {
		r.e.t.Fatalf("callback %s: want state st-123 and a code", res.callback)
	}
	return q.Get("code")
}

func TestCodeFlowWithPKCE(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		verifier := oauth2.GenerateVerifier()
		code := r.login(verifier, "n-0S6_WzA2Mj")
		tok, err := r.conf.Exchange(r.ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		rawID, _ := tok.Extra("id_token").(string)
		idt, err := r.provider.Verifier(&oidc.Config{ClientID: "web"}).Verify(r.ctx, rawID)
		if err != nil {
			t.Fatalf("verify the ID token: %v", err)
		}
		if idt.Subject != "static/staff/alice" || idt.Nonce != "n-0S6_WzA2Mj" || !slices.Equal(idt.Audience, []string{"web"}) {
			t.Fatalf("ID token sub %q nonce %q aud %v", idt.Subject, idt.Nonce, idt.Audience)
		}
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			t.Fatalf("at_hash: %v", err)
		}
		var idClaims map[string]any
		_ = idt.Claims(&idClaims)
		if groups, _ := idClaims["groups"].([]any); len(groups) != 2 {
			t.Fatalf("ID token claims %v: want the mapped id_token claim groups", idClaims)
		}
		if _, ok := idClaims["email"]; ok {
			t.Fatalf("ID token %v carries email (an access_token claim, and profile claims go to userinfo)", idClaims)
		}

		// The access token: a JWT of the issuer for the issuer URL.
		at := decodeJWT(t, tok.AccessToken)
		iss := e.issuer("acme", "default")
		for k, want := range map[string]any{"iss": iss, "sub": "static/staff/alice", "client_id": "web", "gh_tid": "acme",
			"gh_sub_type": "user", "scope": "openid profile email offline_access", "email": "alice@example.com"} {
			if at[k] != want {
				t.Errorf("access token %s = %v, want %v", k, at[k], want)
			}
		}
		if aud, _ := at["aud"].([]any); len(aud) != 1 || aud[0] != iss {
			t.Errorf("access token aud %v, want [%s]", at["aud"], iss)
		}
		for _, k := range []string{"exp", "iat", "jti"} {
			if at[k] == nil {
				t.Errorf("access token has no %s", k)
			}
		}

		info, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatalf("userinfo: %v", err)
		}
		if info.Subject != "static/staff/alice" || info.Email != "alice@example.com" || !info.EmailVerified {
			t.Fatalf("userinfo %+v", info)
		}

		if got := e.introspect("acme", "default", tok.AccessToken); got["active"] != true || got["sub"] != "static/staff/alice" || got["client_id"] != "web" {
			t.Fatalf("introspection %v", got)
		}

		// Refresh rotation, then reuse of the old refresh token.
		old := tok.RefreshToken
		expired := *tok
		expired.Expiry = time.Now().Add(-time.Minute)
		fresh, err := r.conf.TokenSource(r.ctx, &expired).Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if fresh.RefreshToken == "" || fresh.RefreshToken == old || fresh.AccessToken == tok.AccessToken {
			t.Fatal("the refresh did not rotate the tokens")
		}
		reuse := *tok
		reuse.Expiry = time.Now().Add(-time.Minute)
		_, err = r.conf.TokenSource(r.ctx, &reuse).Token()
		wantOAuthError(t, err, "invalid_grant", "refresh token reuse")
		stale := *fresh
		stale.Expiry = time.Now().Add(-time.Minute)
		_, err = r.conf.TokenSource(r.ctx, &stale).Token()
		wantOAuthError(t, err, "invalid_grant", "")
		for _, a := range []string{tok.AccessToken, fresh.AccessToken} {
			if got := e.introspect("acme", "default", a); got["active"] != false {
				t.Fatalf("an access token of the reused family is still active: %v", got)
			}
		}
		if n := len(revocationJTIs(t, e, "acme")); n != 2 {
			t.Fatalf("%d jti revocations after the family's revocation, want 2", n)
		}
	})
}

func TestRevokeAndLogout(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		v := oauth2.GenerateVerifier()
		tok, err := r.conf.Exchange(r.ctx, r.login(v, "n1"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		// Another client cannot revoke it.
		status, _ := e.postForm(e.issuer("acme", "default")+"/oauth2/revoke", url.Values{"token": {tok.RefreshToken}}, "machine", machineSecret)
		if status != http.StatusBadRequest {
			t.Fatalf("revocation by another client: %d, want 400", status)
		}
		if got := e.introspect("acme", "default", tok.AccessToken); got["active"] != true {
			t.Fatal("a refused revocation revoked the token")
		}
		status, body := e.postForm(e.issuer("acme", "default")+"/oauth2/revoke", url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"refresh_token"}}, "web", webSecret)
		if status != http.StatusOK {
			t.Fatalf("revoke: %d %v", status, body)
		}
		if got := e.introspect("acme", "default", tok.AccessToken); got["active"] != false {
			t.Fatal("the access token of a revoked refresh token's family is active")
		}
		expired := *tok
		expired.Expiry = time.Now().Add(-time.Minute)
		_, err = r.conf.TokenSource(r.ctx, &expired).Token()
		wantOAuthError(t, err, "invalid_grant", "")

		// A second login is silent (session cookie); logout ends it.
		v2 := oauth2.GenerateVerifier()
		res := e.drive(r.browser, r.conf.AuthCodeURL("s2", oauth2.S256ChallengeOption(v2)), webRedirect, "", "")
		if res.callback == nil || res.callback.Query().Get("code") == "" {
			t.Fatalf("a login with a session cookie showed %d %q", res.status, res.body)
		}
		tok2, err := r.conf.Exchange(r.ctx, res.callback.Query().Get("code"), oauth2.VerifierOption(v2))
		if err != nil {
			t.Fatal(err)
		}
		logout := e.issuer("acme", "default") + "/oauth2/logout?" + url.Values{
			"id_token_hint": {tok2.Extra("id_token").(string)}, "post_logout_redirect_uri": {webLoggedOut}, "state": {"bye"}}.Encode()
		res = e.drive(r.browser, logout, webLoggedOut, "", "")
		if res.callback == nil || res.callback.Query().Get("state") != "bye" {
			t.Fatalf("logout: %d %s", res.status, res.body)
		}
		if got := e.introspect("acme", "default", tok2.AccessToken); got["active"] != false {
			t.Fatal("an access token survived the logout")
		}
		if n := e.snapshot("acme")[grants.KindSessions]; n != 0 {
			t.Fatalf("%d sessions after the logout", n)
		}
		// The next authorization shows the login form again.
		res = e.drive(r.browser, r.conf.AuthCodeURL("s3", oauth2.S256ChallengeOption(v2)), webRedirect, "", "")
		if res.callback != nil || res.status != http.StatusOK || !strings.Contains(res.body, "csrf_token") {
			t.Fatalf("after the logout: %+v", res)
		}
		// A post-logout redirect the client did not register is refused.
		bad := e.issuer("acme", "default") + "/oauth2/logout?" + url.Values{
			"id_token_hint": {tok2.Extra("id_token").(string)}, "post_logout_redirect_uri": {"https://evil.example.com/"}}.Encode()
		res = e.drive(r.browser, bad, "https://evil.example.com", "", "")
		if res.callback != nil || res.status != http.StatusBadRequest {
			t.Fatalf("logout to an unregistered URI: %+v", res)
		}
	})
}

func TestClientCredentials(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		iss := e.issuer("acme", "default")
		cc := clientcredentials.Config{ClientID: "machine", ClientSecret: machineSecret, TokenURL: iss + "/oauth2/token", Scopes: []string{"orders.read"}}
		tok, err := cc.Token(context.Background())
		if err != nil {
			t.Fatalf("client_credentials: %v", err)
		}
		at := decodeJWT(t, tok.AccessToken)
		if at["sub"] != "machine" || at["gh_sub_type"] != "client" || at["scope"] != "orders.read" || at["client_id"] != "machine" {
			t.Fatalf("machine token %v", at)
		}
		if aud, _ := at["aud"].([]any); len(aud) != 1 || aud[0] != "orders-api" {
			t.Fatalf("machine token aud %v, want the client's audience", at["aud"])
		}
		before := e.snapshot("acme")
		cc.ClientSecret = "wrong-secret-0123456789abcdefghijklmnopqrst"
		_, err = cc.Token(context.Background())
		wantOAuthError(t, err, "invalid_client", "")
		cc.ClientSecret = machineSecret
		cc.Scopes = []string{"admin.everything"}
		_, err = cc.Token(context.Background())
		wantOAuthError(t, err, "invalid_scope", "scope")
		// Another tenant's client of the same id and secret does not exist here.
		other := clientcredentials.Config{ClientID: "other-web", ClientSecret: webSecret, TokenURL: iss + "/oauth2/token"}
		_, err = other.Token(context.Background())
		wantOAuthError(t, err, "invalid_client", "")
		e.unchanged("acme", before, "refused client_credentials requests")

		// Grants Gatehouse does not offer are refused by name.
		for _, g := range []string{"urn:ietf:params:oauth:grant-type:jwt-bearer", "urn:ietf:params:oauth:grant-type:token-exchange",
			"urn:ietf:params:oauth:grant-type:device_code", "password", "implicit"} {
			status, body := e.postForm(iss+"/oauth2/token", url.Values{"grant_type": {g}}, "machine", machineSecret)
			if status != http.StatusBadRequest || body["error"] != "unsupported_grant_type" || !strings.HasPrefix(body["error_description"].(string), "grant_type") {
				t.Fatalf("grant %s: %d %v", g, status, body)
			}
		}
		e.unchanged("acme", before, "refused grants")
	})
}

func decodeJWT(t *testing.T, raw string) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64URLDecode(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantOAuthError(t *testing.T, err error, code, descContains string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error %v, want an OAuth error %s", err, code)
	}
	if re.ErrorCode != code || !strings.Contains(re.ErrorDescription, descContains) || re.ErrorDescription == "" {
		t.Fatalf("OAuth error %q %q, want %s with a description containing %q", re.ErrorCode, re.ErrorDescription, code, descContains)
	}
}

func revocationJTIs(t *testing.T, e *env, tid string) []string {
	t.Helper()
	items, err := store.Repo[model.TokenRevocationSpec]{Kind: model.KindTokenRevocation}.ListAll(context.Background(), e.st, store.Query{TenantID: tid})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, it := range items {
		if it.Spec.JTI != "" {
			out = append(out, it.Spec.JTI)
		}
	}
	return out
}
