package oauth

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
)

// startAuthorize runs /authorize in browser b and returns the login URL
// it redirects to and the auth request id.
func (e *env) startAuthorize(b *http.Client, authURL string) (*url.URL, string) {
	e.t.Helper()
	resp, body := e.get(b, authURL)
	if resp.StatusCode != http.StatusFound {
		e.t.Fatalf("authorize: %d %q, want a redirect to the login page", resp.StatusCode, body)
	}
	login, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if err != nil || login.Query().Get("auth_request") == "" {
		e.t.Fatalf("authorize redirected to %q, want the login page", resp.Header.Get("Location"))
	}
	return login, login.Query().Get("auth_request")
}

// callbackCode calls the callback of auth request id in browser b and
// returns the status and the code it handed out ("" when none).
func (e *env) callbackCode(b *http.Client, tid, aid, id string) (int, string) {
	e.t.Helper()
	resp, _ := e.get(b, e.issuer(tid, aid)+"/oauth2/authorize/callback?id="+url.QueryEscape(id))
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil {
		return resp.StatusCode, ""
	}
	return resp.StatusCode, loc.Query().Get("code")
}

// An attacker who starts an authorization request and gets the victim's
// browser, which has a login session, to open its login page must not
// get a code for the victim: the login page refuses a browser that did
// not start the request, and the callback refuses one without the
// session that completed it.
func TestAuthRequestBoundToItsBrowser(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		r := e.rp("acme", "default", "cli", "", cliRedirect)
		victim := r.browser
		r.login(oauth2.GenerateVerifier(), "n1") // the victim has a session

		attacker := e.browser()
		verifier := oauth2.GenerateVerifier()
		login, id := e.startAuthorize(attacker, r.conf.AuthCodeURL("attacker-state", oauth2.S256ChallengeOption(verifier)))
		ctx := context.Background()

		// The victim's browser opens the attacker's login URL: refused, not completed.
		resp, body := e.get(victim, login.String())
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Location") != "" || !strings.Contains(body, "auth_request:") {
			t.Fatalf("the victim's browser at the attacker's login page: %d %q %q, want an HTML 403", resp.StatusCode, resp.Header.Get("Location"), body)
		}
		if a, err := e.p.records.AuthRequest(ctx, "acme", id); err != nil || a.Done {
			t.Fatalf("the attacker's auth request after the victim's visit: %+v %v, want it not logged in", a, err)
		}
		// The attacker polls the callback: no code.
		if status, code := e.callbackCode(attacker, "acme", "default", id); code != "" {
			t.Fatalf("the attacker's callback: %d with a code", status)
		}
		// Without its browser's cookie, the callback is refused outright.
		if status, code := e.callbackCode(e.browser(), "acme", "default", id); status != http.StatusForbidden || code != "" {
			t.Fatalf("a callback from a browser that did not start the request: %d %q, want 403 and no code", status, code)
		}
		// The login form, posted from the victim's browser with the attacker's form fields: refused.
		resp, body = e.get(attacker, login.String())
		action, fields, ok := loginForm(body)
		if resp.StatusCode != http.StatusOK || !ok {
			t.Fatalf("the attacker's own login page: %d %q", resp.StatusCode, body)
		}
		fields.Set("username", "alice")
		fields.Set("password", alicePassword)
		before := e.snapshot("acme")
		post, err := victim.PostForm(action, fields)
		if err != nil {
			t.Fatal(err)
		}
		post.Body.Close()
		if post.StatusCode != http.StatusForbidden {
			t.Fatalf("the attacker's form posted by the victim's browser: %d, want 403", post.StatusCode)
		}
		e.unchanged("acme", before, "a login form posted by another browser")

		// Even with the attacker's binding cookie planted in the victim's
		// browser (cookie tossing), the code goes only to the browser holding
		// the session that completed the login: the victim's.
		iss, _ := url.Parse(e.issuer("acme", "default"))
		for _, ck := range attacker.Jar.Cookies(iss) {
			if strings.HasPrefix(ck.Name, bindingCookiePrefix) {
				victim.Jar.SetCookies(iss, []*http.Cookie{{Name: ck.Name, Value: ck.Value, Path: "/acme/default"}})
			}
		}
		resp, _ = e.get(victim, login.String())
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("the victim's browser with the planted cookie: %d, want the silent completion", resp.StatusCode)
		}
		if status, code := e.callbackCode(attacker, "acme", "default", id); status != http.StatusForbidden || code != "" {
			t.Fatalf("the attacker's callback of a request the victim's session completed: %d %q, want 403 and no code", status, code)
		}
		if _, code := e.callbackCode(victim, "acme", "default", id); code == "" {
			t.Fatal("the browser that holds the completing session and the cookie got no code")
		}

		// The legitimate flow in one browser still works, with a new
		// session and from the session.
		b := e.browser()
		r.browser = b
		code := r.login(verifier, "n2")
		if _, err := r.conf.Exchange(r.ctx, code, oauth2.VerifierOption(verifier)); err != nil {
			t.Fatalf("exchange of a legitimate login's code: %v", err)
		}
		res := e.drive(b, r.conf.AuthCodeURL("st-123", oauth2.S256ChallengeOption(verifier)), cliRedirect, "", "")
		if res.callback == nil || res.callback.Query().Get("code") == "" {
			t.Fatalf("a silent login from the session: %+v", res)
		}
		// The callback cleared the request's binding cookie.
		for _, ck := range b.Jar.Cookies(iss) {
			if strings.HasPrefix(ck.Name, bindingCookiePrefix) {
				t.Errorf("binding cookie %s left after the callback", ck.Name)
			}
		}
	})
}

// The login form's CSRF token is bound to the auth request's binding
// cookie, which the server set: a token from another browser's page, or
// a cookie the attacker chose, does not work.
func TestLoginCSRFNeedsTheServersCookie(t *testing.T) {
	e := newEnv(t, testkit.Store(t))
	r := e.rp("acme", "default", "web", webSecret, webRedirect)
	b := e.browser()
	login, id := e.startAuthorize(b, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	_, body := e.get(b, login.String())
	action, fields, ok := loginForm(body)
	if !ok {
		t.Fatalf("no login form: %q", body)
	}
	fields.Set("username", "alice")
	fields.Set("password", alicePassword)
	// A browser with a cookie of the attacker's choosing (the old gh_login_csrf, or the binding cookie's name).
	tossed := e.browser()
	iss, _ := url.Parse(e.issuer("acme", "default"))
	tossed.Jar.SetCookies(iss, []*http.Cookie{
		{Name: "gh_login_csrf", Value: strings.Repeat("A", 43), Path: "/acme/default/login"},
		{Name: bindingCookiePrefix + id, Value: strings.Repeat("A", 43), Path: "/acme/default"},
	})
	forged := url.Values{"auth_request": {id}, "csrf_token": {e.p.csrfToken(id, strings.Repeat("A", 43))},
		"username": {"alice"}, "password": {alicePassword}}
	before := e.snapshot("acme")
	for name, form := range map[string]url.Values{"the page's token": fields, "a token of the chosen cookie": forged} {
		resp, err := tossed.PostForm(action, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s with a tossed cookie: %d, want 403", name, resp.StatusCode)
		}
	}
	e.unchanged("acme", before, "forged login forms")
	// The browser that started it logs in with the page's form.
	resp, err := b.PostForm(action, fields)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the login form in its own browser: %d, want 303 to the callback", resp.StatusCode)
	}
}

// An authorization request is bounded: its size, the fields it stores,
// the time it waits for its login and the number waiting per server.
// Refused requests store nothing.
func TestAuthorizeBounds(t *testing.T) {
	e := newEnvWith(t, testkit.Store(t), func(o *Options) { o.MaxPendingAuthRequests = 2 })
	challenge := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	base := func(extra ...string) url.Values {
		return authQuery("web", webRedirect, append([]string{"code_challenge", challenge, "code_challenge_method", "S256"}, extra...)...)
	}
	manyScopes := strings.TrimSpace(strings.Repeat("openid ", 51))
	for name, c := range map[string]struct {
		q     url.Values
		param string
	}{
		"state over 1 KiB":       {base("state", strings.Repeat("s", 1025)), "state:"},
		"nonce over 1 KiB":       {base("nonce", strings.Repeat("n", 1025)), "nonce:"},
		"login_hint over 256 B":  {base("login_hint", strings.Repeat("h", 257)), "login_hint:"},
		"short code_challenge":   {base("code_challenge", challenge[:42]), "code_challenge:"},
		"long code_challenge":    {base("code_challenge", challenge+"A"), "code_challenge:"},
		"code_challenge charset": {base("code_challenge", challenge[:42]+"="), "code_challenge:"},
		"more than 50 scopes":    {base("scope", manyScopes), "scope:"},
		"a scope over 256 bytes": {base("scope", "openid "+strings.Repeat("x", 257)), "scope:"},
	} {
		before := e.snapshot("acme")
		resp, body := e.get(e.browser(), e.authorizeURL("acme", "default", c.q))
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), webRedirect) ||
			loc.Query().Get("error") != "invalid_request" || !strings.HasPrefix(loc.Query().Get("error_description"), c.param) {
			t.Errorf("%s: %d %q %q, want invalid_request naming %s on the redirect", name, resp.StatusCode, resp.Header.Get("Location"), body, c.param)
		}
		if len(resp.Header.Get("Location")) > 2048 {
			t.Errorf("%s: the error redirect echoes the oversized value (%d bytes)", name, len(resp.Header.Get("Location")))
		}
		e.unchanged("acme", before, name)
	}

	// Larger than 16 KiB: HTML 400, before anything is parsed.
	before := e.snapshot("acme")
	resp, body := e.get(e.browser(), e.authorizeURL("acme", "default", base("ui_locales", strings.Repeat("x", 17<<10))))
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" || !strings.Contains(body, "16 KiB") {
		t.Errorf("a 17 KiB query: %d %q %q, want an HTML 400", resp.StatusCode, resp.Header.Get("Location"), body)
	}
	form := base()
	form.Set("ui_locales", strings.Repeat("x", 17<<10))
	post, err := e.browser().PostForm(e.issuer("acme", "default")+"/oauth2/authorize", form)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusBadRequest || post.Header.Get("Location") != "" {
		t.Errorf("a 17 KiB POST: %d %q, want an HTML 400", post.StatusCode, post.Header.Get("Location"))
	}
	e.unchanged("acme", before, "oversized requests")

	// A waiting request lives for the login window only; its login keeps
	// it for authorization_code_ttl.
	ctx := context.Background()
	r := e.rp("acme", "default", "web", webSecret, webRedirect)
	b1 := e.browser()
	login1, id1 := e.startAuthorize(b1, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	a, err := e.p.records.AuthRequest(ctx, "acme", id1)
	if err != nil {
		t.Fatal(err)
	}
	if a.ExpiresAt.Sub(a.CreatedAt) != grants.LoginWindow {
		t.Errorf("a waiting auth request expires %v after its creation, want the login window %v", a.ExpiresAt.Sub(a.CreatedAt), grants.LoginWindow)
	}
	_, id2 := e.startAuthorize(e.browser(), r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))

	// The server's limit (2 here) is reached: temporarily_unavailable, nothing stored.
	before = e.snapshot("acme")
	resp, _ = e.get(e.browser(), r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc == nil || loc.Query().Get("error") != "temporarily_unavailable" {
		t.Fatalf("an authorization beyond the limit: %d %q, want temporarily_unavailable", resp.StatusCode, resp.Header.Get("Location"))
	}
	e.unchanged("acme", before, "an authorization beyond the limit")
	// Another server has its own limit.
	other := e.rp("acme", "other", "other-web", webSecret, webRedirect, "openid")
	e.startAuthorize(e.browser(), other.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))

	// A login frees its request's slot and keeps the request for the code.
	res := e.drive(b1, login1.String(), webRedirect, "alice", alicePassword)
	if res.callback == nil || res.callback.Query().Get("code") == "" {
		t.Fatalf("login: %+v", res)
	}
	a, err = e.p.records.AuthRequest(ctx, "acme", id1)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Done || a.Slot != "" || time.Until(a.ExpiresAt) > 10*time.Minute+time.Second {
		t.Errorf("the logged-in request: done %v slot %q expires in %v, want done, no slot, authorization_code_ttl (10m)", a.Done, a.Slot, time.Until(a.ExpiresAt))
	}
	e.startAuthorize(e.browser(), r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if _, err := e.p.records.AuthRequest(ctx, "acme", id2); err != nil {
		t.Fatalf("the other waiting request: %v", err)
	}
}
