package oauth

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
)

// authorizeURL is an authorization request of client at acme/default.
func (e *env) authorizeURL(tid, aid string, q url.Values) string {
	return e.issuer(tid, aid) + "/oauth2/authorize?" + q.Encode()
}

func authQuery(client, redirect string, extra ...string) url.Values {
	q := url.Values{"client_id": {client}, "redirect_uri": {redirect}, "response_type": {"code"},
		"scope": {"openid profile"}, "state": {"st"}, "nonce": {"n"}}
	for i := 0; i+1 < len(extra); i += 2 {
		if extra[i+1] == "" {
			q.Del(extra[i])
			continue
		}
		q.Set(extra[i], extra[i+1])
	}
	return q
}

// get fetches a URL without following redirects.
func (e *env) get(c *http.Client, u string) (*http.Response, string) {
	e.t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestAuthorizeRefusals(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
		// Refused before the redirect_uri could be trusted: HTML 400, no redirect.
		for name, c := range map[string]struct {
			q     url.Values
			param string
		}{
			"unknown client":               {authQuery("nope", webRedirect, "code_challenge", challenge, "code_challenge_method", "S256"), "client_id:"},
			"redirect mismatch":            {authQuery("web", "https://evil.example.com/callback", "code_challenge", challenge, "code_challenge_method", "S256"), "redirect_uri:"},
			"redirect port mismatch":       {authQuery("cli", "http://127.0.0.1:8/callback", "code_challenge", challenge, "code_challenge_method", "S256"), "redirect_uri:"},
			"another server's client":      {authQuery("other-web", webRedirect), "client_id:"},
			"no client_id":                 {authQuery("", webRedirect, "client_id", ""), "client_id:"},
			"client without redirect URIs": {authQuery("machine", webRedirect), "redirect_uri:"},
		} {
			q := c.q
			before := e.snapshot("acme")
			resp, body := e.get(e.browser(), e.authorizeURL("acme", "default", q))
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" ||
				!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(body, "<html") || !strings.Contains(body, c.param) {
				t.Errorf("%s: %d %s %q, want an HTML 400 without redirect", name, resp.StatusCode, resp.Header.Get("Location"), body)
			}
			e.unchanged("acme", before, name)
		}
		// globex's client "other-web" does not exist: acme's is not globex's.
		resp, _ := e.get(e.browser(), e.authorizeURL("globex", "default", authQuery("other-web", webRedirect)))
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("another tenant's client: %d, want an HTML 400", resp.StatusCode)
		}

		// Refused after it: an error on the redirect, with the state.
		for name, c := range map[string]struct {
			q          url.Values
			code, desc string
		}{
			"public client without PKCE": {authQuery("cli", cliRedirect), "invalid_request", "code_challenge"},
			"plain PKCE": {authQuery("cli", cliRedirect, "code_challenge", "plain-challenge-plain-challenge-plain-challenge-0", "code_challenge_method", "plain"),
				"invalid_request", "code_challenge_method"},
			"PKCE without method": {authQuery("cli", cliRedirect, "code_challenge", challenge), "invalid_request", "code_challenge_method"},
			"scope not allowed": {authQuery("web", webRedirect, "scope", "openid admin.everything", "code_challenge", challenge, "code_challenge_method", "S256"),
				"invalid_scope", "scope"},
			"offline_access without refresh grant": {authQuery("other-web", webRedirect, "scope", "openid offline_access"), "invalid_scope", "scope"},
		} {
			tid, aid := "acme", "default"
			if c.q.Get("client_id") == "other-web" {
				aid = "other"
			}
			before := e.snapshot(tid)
			resp, body := e.get(e.browser(), e.authorizeURL(tid, aid, c.q))
			loc, _ := url.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), c.q.Get("redirect_uri")) {
				t.Errorf("%s: %d %q %q, want a redirect to the client", name, resp.StatusCode, resp.Header.Get("Location"), body)
				continue
			}
			if got := loc.Query(); got.Get("error") != c.code || !strings.Contains(got.Get("error_description"), c.desc) || got.Get("state") != "st" || got.Get("code") != "" {
				t.Errorf("%s: redirect %s, want error %s naming %s", name, loc, c.code, c.desc)
			}
			e.unchanged(tid, before, name)
		}
	})
}

func TestTokenEndpointRefusalsIssueNothing(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		verifier := oauth2.GenerateVerifier()
		code := r.login(verifier, "n")
		token := e.issuer("acme", "default") + "/oauth2/token"
		exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {webRedirect}, "code_verifier": {verifier}}
		with := func(k, v string) url.Values {
			f := url.Values{}
			for kk, vv := range exchange {
				f[kk] = vv
			}
			f.Set(k, v)
			return f
		}
		for name, c := range map[string]struct {
			form       url.Values
			user, pass string
			status     int
			code       string
		}{
			"wrong verifier":      {with("code_verifier", oauth2.GenerateVerifier()), "web", webSecret, 400, "invalid_grant"},
			"no verifier":         {with("code_verifier", ""), "web", webSecret, 400, "invalid_request"},
			"wrong secret":        {exchange, "web", "wrong-secret-0123456789abcdefghijklmnopqrst", 401, "invalid_client"},
			"other client":        {exchange, "machine", machineSecret, 400, "invalid_grant"},
			"wrong redirect_uri":  {with("redirect_uri", "https://rp.example.com/other"), "web", webSecret, 400, "invalid_grant"},
			"no grant_type":       {with("grant_type", ""), "web", webSecret, 400, "invalid_request"},
			"unknown code":        {with("code", "not-a-code"), "web", webSecret, 400, "invalid_grant"},
			"another tenant's id": {exchange, "other-web", webSecret, 401, "invalid_client"},
		} {
			before := e.snapshot("acme")
			status, body := e.postForm(token, c.form, c.user, c.pass)
			if status != c.status || body["error"] != c.code || body["error_description"] == "" {
				t.Errorf("%s: %d %v, want %d %s with a description", name, status, body, c.status, c.code)
			}
			e.unchanged("acme", before, name)
		}
		// The code survived the refused attempts; redeemed once, then a replay
		// is refused and revokes what the first exchange issued.
		tok, err := r.conf.Exchange(r.ctx, code, oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatalf("exchange after refused attempts: %v", err)
		}
		_, err = r.conf.Exchange(r.ctx, code, oauth2.VerifierOption(verifier))
		wantOAuthError(t, err, "invalid_grant", "")
		if got := e.introspect("acme", "default", tok.AccessToken); got["active"] != false {
			t.Fatalf("the first exchange's access token survived the code replay: %v", got)
		}
		expired := *tok
		expired.Expiry = expired.Expiry.Add(-24 * 60 * 60 * 1e9)
		_, err = r.conf.TokenSource(r.ctx, &expired).Token()
		wantOAuthError(t, err, "invalid_grant", "")
		if jtis := revocationJTIs(t, e, "acme"); len(jtis) != 1 || jtis[0] != decodeJWT(t, tok.AccessToken)["jti"] {
			t.Fatalf("revocations after the replay: %v", jtis)
		}
	})
}

func TestLoginPage(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		v := oauth2.GenerateVerifier()
		pkce := oauth2.S256ChallengeOption(v)
		b := r.browser

		// The form: hint, login_hint pre-filled, CSRF token.
		res := e.drive(b, r.conf.AuthCodeURL("s", pkce, oauth2.SetAuthURLParam("login_hint", "alice")), webRedirect, "", "")
		_, fields, ok := loginForm(res.body)
		if res.status != http.StatusOK || !ok || fields.Get("username") != "alice" || fields.Get("csrf_token") == "" ||
			!strings.Contains(res.body, "Sign in with your staff account.") {
			t.Fatalf("login page %d %q", res.status, res.body)
		}
		// A wrong password: the form again, 401, nothing issued.
		before := e.snapshot("acme")
		res = e.drive(b, r.conf.AuthCodeURL("s", pkce), webRedirect, "alice", "not-the-password")
		if res.callback != nil || res.loginStatus != http.StatusUnauthorized || !strings.Contains(res.body, "wrong") {
			t.Fatalf("wrong password: %+v", res)
		}
		after := e.snapshot("acme")
		after[grants.KindAuthRequests]--     // the second authorize's request
		after[grants.KindAuthRequestSlots]-- // and its slot
		for k, n := range before {
			if after[k] != n {
				t.Fatalf("a wrong password changed %s: %v → %v", k, before, after)
			}
		}
		// A forged form (no CSRF cookie's token) is refused.
		status := postLoginWithoutCSRF(t, e, r, pkce)
		if status != http.StatusForbidden {
			t.Fatalf("a login without the CSRF token: %d, want 403", status)
		}

		// prompt=none without a session: login_required on the redirect.
		res = e.drive(e.browser(), r.conf.AuthCodeURL("s", pkce, oauth2.SetAuthURLParam("prompt", "none")), webRedirect, "", "")
		if res.callback == nil || res.callback.Query().Get("error") != "login_required" || res.callback.Query().Get("state") != "s" {
			t.Fatalf("prompt=none without a session: %+v", res)
		}
		// Log in; then prompt=none is silent, prompt=login and max_age=0 show the form.
		e.drive(b, r.conf.AuthCodeURL("s", pkce), webRedirect, "alice", alicePassword)
		res = e.drive(b, r.conf.AuthCodeURL("s", pkce, oauth2.SetAuthURLParam("prompt", "none")), webRedirect, "", "")
		if res.callback == nil || res.callback.Query().Get("code") == "" {
			t.Fatalf("prompt=none with a session: %+v", res)
		}
		for _, p := range []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0")} {
			res = e.drive(b, r.conf.AuthCodeURL("s", pkce, p), webRedirect, "", "")
			if res.callback != nil || res.status != http.StatusOK || !strings.Contains(res.body, "csrf_token") {
				t.Fatalf("a forced login did not show the form: %+v", res)
			}
		}
	})
}

// postLoginWithoutCSRF posts the login form of a new auth request from a
// browser that never saw the form (no CSRF cookie), with a token copied
// from another browser.
func postLoginWithoutCSRF(t *testing.T, e *env, r *rp, pkce oauth2.AuthCodeOption) int {
	t.Helper()
	res := e.drive(e.browser(), r.conf.AuthCodeURL("s", pkce), webRedirect, "", "")
	action, fields, ok := loginForm(res.body)
	if !ok {
		t.Fatalf("no login form: %q", res.body)
	}
	fields.Set("username", "alice")
	fields.Set("password", alicePassword)
	resp, err := e.browser().PostForm(action, fields)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestDisabledTenant(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		testkit.Edit(t, e.st, model.KindTenant, "", "acme", func(s *model.TenantSpec) { s.Status = model.TenantDisabled })
		before := e.snapshot("acme")
		for _, u := range []string{e.issuer("acme", "default") + "/.well-known/openid-configuration",
			e.authorizeURL("acme", "default", authQuery("web", webRedirect))} {
			resp, body := e.get(e.browser(), u)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "disabled") {
				t.Errorf("GET %s at a disabled tenant: %d %s", u, resp.StatusCode, body)
			}
		}
		status, body := e.postForm(e.issuer("acme", "default")+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "machine", machineSecret)
		if status != http.StatusForbidden || body["error"] != "access_denied" {
			t.Errorf("token at a disabled tenant: %d %v", status, body)
		}
		e.unchanged("acme", before, "requests to a disabled tenant")
		resp, _ := e.get(e.browser(), e.issuer("nosuch", "default")+"/.well-known/openid-configuration")
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("unknown tenant: %d", resp.StatusCode)
		}
		resp, _ = e.get(e.browser(), e.issuer("globex", "nosuch")+"/.well-known/openid-configuration")
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("unknown server: %d", resp.StatusCode)
		}
		_ = context.Background()
	})
}
