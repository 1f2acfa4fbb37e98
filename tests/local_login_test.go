package tests

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/testkit/browser"
)

// localFlow drives one browser over HTTP: requests, redirects followed
// until a page or a redirect to a URI starting with stopAt.
type localFlow struct {
	t      *testing.T
	b      *browser.Browser
	stopAt string
}

type localPage struct {
	status  int
	body    string
	stopped *url.URL
}

func (f *localFlow) do(method, target string, form url.Values) localPage {
	f.t.Helper()
	for range 12 {
		var req *http.Request
		if method == http.MethodPost {
			req, _ = http.NewRequest(method, target, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(method, target, nil)
		}
		res, err := f.b.Client.Do(req)
		if err != nil {
			f.t.Fatalf("%s %s: %v", method, target, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode >= 300 && res.StatusCode < 400 {
			loc, err := res.Request.URL.Parse(res.Header.Get("Location"))
			if err != nil {
				f.t.Fatal(err)
			}
			for _, stop := range strings.Split(f.stopAt, " ") {
				if strings.HasPrefix(loc.String(), stop) {
					return localPage{status: res.StatusCode, stopped: loc}
				}
			}
			target, method, form = loc.String(), http.MethodGet, nil
			continue
		}
		return localPage{status: res.StatusCode, body: string(body)}
	}
	f.t.Fatalf("too many redirects from %s", target)
	return localPage{}
}

// submit posts the page's form with fields set.
func (f *localFlow) submit(base string, p localPage, fields map[string]string) localPage {
	f.t.Helper()
	action, values, ok := browser.Form(p.body)
	if !ok {
		f.t.Fatalf("no form (%d): %s", p.status, p.body)
	}
	for k, v := range fields {
		values.Set(k, v)
	}
	u, _ := url.Parse(base)
	target, err := u.Parse(action)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.do(http.MethodPost, target.String(), values)
}

var e2eTOTPSecret = regexp.MustCompile(`<code id="totp-secret">([A-Z2-7]+)</code>`)

// TestLocalLoginEndToEnd runs the real binary: a tenant user made over
// the admin API signs in with its password and enrols TOTP (the tenant's
// mfa_provider); PUT …/reset-mfa makes the next login enrol again; a
// recovery link from POST …/recover sets a new password once and ends
// the old session; a custom method's application accepts a login with
// the tenant's credential (another tenant's credential is 403, another
// tenant's user 404) and rejects another.
func TestLocalLoginEndToEnd(t *testing.T) {
	cp := startServe(t, backends()[0].options(t))
	c := newClient(t, cp.URL, testToken)
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme", "mfa_provider": "totp"})
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "globex", "name": "Globex"})
	c.must(200, "PUT", "/api/admin/acme/servers/default/authentications", map[string]any{"methods": []any{
		map[string]any{"id": "pw", "method": "password", "password": map[string]any{"hint": "Your Acme email"}}}})
	c.must(201, "POST", "/api/admin/acme/servers", map[string]any{"id": "apps", "key_activation_delay": "0s"})
	appLogin := "http://127.0.0.1:1/app-login"
	c.must(200, "PUT", "/api/admin/acme/servers/apps/authentications", map[string]any{"methods": []any{
		map[string]any{"id": "app", "method": "custom", "custom": map[string]any{"login_url": appLogin}}}})
	redirect := "http://127.0.0.1:1/callback"
	confs := map[string]oauth2.Config{}
	for _, aid := range []string{"default", "apps"} {
		web := c.must(201, "POST", "/api/admin/acme/clients", map[string]any{"client_id": "web-" + aid, "authorization_server_id": aid,
			"grant_types": []string{"authorization_code", "refresh_token"}, "redirect_uris": []string{redirect},
			"scopes": []string{"openid", "email", "offline_access"}}).JSON(t)
		p, err := oidc.NewProvider(context.Background(), cp.URL+"/acme/"+aid)
		if err != nil {
			t.Fatal(err)
		}
		confs[aid] = oauth2.Config{ClientID: "web-" + aid, ClientSecret: web["client_secret"].(string), Endpoint: p.Endpoint(),
			RedirectURL: redirect, Scopes: []string{oidc.ScopeOpenID, "email", oidc.ScopeOfflineAccess}}
	}
	const password = "a-long-enough-password"
	uid := c.must(201, "POST", "/api/admin/acme/users", map[string]any{"email": "alice@acme.example", "password": password,
		"state": "active"}).JSON(t)["id"].(string)
	bob := c.must(201, "POST", "/api/admin/globex/users", map[string]any{"email": "bob@globex.example", "state": "active"}).JSON(t)["id"].(string)
	v := oauth2.GenerateVerifier()
	exchange := func(aid string, p localPage) *oauth2.Token {
		t.Helper()
		if p.stopped == nil || p.stopped.Query().Get("code") == "" {
			t.Fatalf("want a code at the client, got %d %v: %s", p.status, p.stopped, p.body)
		}
		conf := confs[aid]
		tok, err := conf.Exchange(context.Background(), p.stopped.Query().Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	subject := func(aid string, tok *oauth2.Token) string {
		t.Helper()
		p, _ := oidc.NewProvider(context.Background(), cp.URL+"/acme/"+aid)
		idt, err := p.Verifier(&oidc.Config{ClientID: "web-" + aid}).Verify(context.Background(), tok.Extra("id_token").(string))
		if err != nil {
			t.Fatal(err)
		}
		return idt.Subject
	}
	authorize := func(f *localFlow, aid string, extra ...oauth2.AuthCodeOption) localPage {
		conf := confs[aid]
		return f.do(http.MethodGet, conf.AuthCodeURL("st", append(extra, oauth2.S256ChallengeOption(v))...), nil)
	}
	passwordLogin := func(f *localFlow, pw string) localPage {
		t.Helper()
		form := authorize(f, "default", oauth2.SetAuthURLParam("prompt", "login"))
		if !strings.Contains(form.body, "Your Acme email") {
			t.Fatalf("the password form: %d %s", form.status, form.body)
		}
		return f.submit(cp.URL, form, map[string]string{"email": "alice@acme.example", "password": pw})
	}

	// Password, then TOTP enrolment.
	f1 := &localFlow{t: t, b: browser.New(nil), stopAt: redirect}
	enrol := passwordLogin(f1, password)
	m := e2eTOTPSecret.FindStringSubmatch(enrol.body)
	if m == nil {
		t.Fatalf("no enrolment: %d %s", enrol.status, enrol.body)
	}
	code, _ := totp.GenerateCode(m[1], time.Now())
	tok := exchange("default", f1.submit(cp.URL, enrol, map[string]string{"code": code}))
	if sub := subject("default", tok); sub != uid {
		t.Fatalf("sub %q, want the user id %q", sub, uid)
	}

	// reset-mfa: enrol again, with a new seed.
	c.must(200, "PUT", "/api/admin/acme/users/"+uid+"/reset-mfa", nil)
	again := passwordLogin(&localFlow{t: t, b: browser.New(nil), stopAt: redirect}, password)
	if m2 := e2eTOTPSecret.FindStringSubmatch(again.body); m2 == nil || m2[1] == m[1] {
		t.Fatalf("after reset-mfa: want a new enrolment: %s", again.body)
	}

	// A recovery link, once; the old session is over.
	rec := c.must(201, "POST", "/api/admin/acme/users/"+uid+"/recover", nil).JSON(t)
	link := rec["link"].(string)
	rf := &localFlow{t: t, b: browser.New(nil), stopAt: redirect}
	page := rf.do(http.MethodGet, link, nil)
	const newPassword = "another-long-password"
	if done := rf.submit(cp.URL, page, map[string]string{"password": newPassword, "password_confirm": newPassword}); done.status != 200 {
		t.Fatalf("the recovery: %d %s", done.status, done.body)
	}
	if got := rf.do(http.MethodPost, link, url.Values{"password": {newPassword}, "password_confirm": {newPassword}}); got.status != http.StatusGone {
		t.Fatalf("the link again: %d", got.status)
	}
	if silent := authorize(f1, "default", oauth2.SetAuthURLParam("prompt", "none")); silent.stopped == nil || silent.stopped.Query().Get("error") != "login_required" {
		t.Fatalf("the old session after the recovery: %d %v", silent.status, silent.stopped)
	}
	def := confs["default"]
	if _, err := def.TokenSource(context.Background(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
		t.Fatal("the old refresh token works after the recovery")
	}
	if m3 := e2eTOTPSecret.FindStringSubmatch(passwordLogin(&localFlow{t: t, b: browser.New(nil), stopAt: redirect}, newPassword).body); m3 == nil {
		t.Fatal("no enrolment after the recovery (its TOTP is cleared)")
	}

	// The custom method: the application accepts with acme's credential.
	acme := newClient(t, cp.URL, c.must(201, "POST", "/api/system/tenants/acme/credentials", map[string]any{"name": "app"}).JSON(t)["token"].(string))
	globex := newClient(t, cp.URL, c.must(201, "POST", "/api/system/tenants/globex/credentials", map[string]any{"name": "app"}).JSON(t)["token"].(string))
	cf := &localFlow{t: t, b: browser.New(nil), stopAt: redirect + " " + appLogin}
	app := authorize(cf, "apps").stopped
	if app == nil || !strings.HasPrefix(app.String(), appLogin) {
		t.Fatalf("no redirect to the application: %v", app)
	}
	accept := "/api/system/acme/logins/" + app.Query().Get("login_id") + "/accept"
	globex.must(403, "POST", accept, map[string]any{"user_id": bob})
	acme.must(404, "POST", accept, map[string]any{"user_id": bob})
	back := acme.must(200, "POST", accept, map[string]any{"user_id": uid, "amr": []string{"hwk"}}).JSON(t)["redirect_to"].(string)
	acme.must(409, "POST", accept, map[string]any{"user_id": uid})
	if sub := subject("apps", exchange("apps", cf.do(http.MethodGet, back, nil))); sub != uid {
		t.Fatalf("custom login sub %q, want %q", sub, uid)
	}
	// And rejects another.
	cf2 := &localFlow{t: t, b: browser.New(nil), stopAt: redirect + " " + appLogin}
	app2 := authorize(cf2, "apps").stopped
	back2 := c.must(200, "POST", "/api/system/acme/logins/"+app2.Query().Get("login_id")+"/reject",
		map[string]any{"error_description": "not today"}).JSON(t)["redirect_to"].(string)
	rej := cf2.do(http.MethodGet, back2, nil)
	if rej.stopped == nil || rej.stopped.Query().Get("error") != "access_denied" || rej.stopped.Query().Get("error_description") != "not today" {
		t.Fatalf("the rejection at the client: %v", rej.stopped)
	}
}
