package oauth

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
	"github.com/gatehouse-dev/gatehouse/store"
)

// A tenant user signs in with email and password through the code flow:
// sub is the user id, the directory's claims are the authentication
// context, the session completes the next authorization silently, and a
// wrong password or an unknown email issues nothing.
func TestPasswordLoginOfTenantUser(t *testing.T) {
	localBackends(t, func(t *testing.T, e *localEnv) {
		uid := e.addUser("acme", "alice@acme.example", nil)
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		v := oauth2.GenerateVerifier()
		form := e.walk(r.browser, http.MethodGet, r.conf.AuthCodeURL("st-1", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("nonce", "n-1")), nil, webRedirect)
		fields := e.formFields(form)
		if form.status != http.StatusOK || fields.Get("method") != "pw" || !fields.Has("email") || !fields.Has("password") ||
			!strings.Contains(form.body, "Sign in with your work email.") {
			t.Fatalf("the password form: %d %v %s", form.status, fields, form.body)
		}
		if csp := form.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://rp.example.com") ||
			form.header.Get("Cache-Control") != "no-store" || form.header.Get("X-Frame-Options") != "DENY" {
			t.Fatalf("headers of the form: %v", form.header)
		}
		before := e.snapshot("acme")
		for _, c := range []map[string]string{
			{"email": "alice@acme.example", "password": "not-her-password"},
			{"email": "nobody@acme.example", "password": alicePassword},
			{"email": "", "password": alicePassword},
		} {
			if got := e.submit(r.browser, form, c, webRedirect); got.status != http.StatusUnauthorized || got.stopped != nil ||
				!strings.Contains(got.body, "The email or password is wrong.") {
				t.Fatalf("%v: %d %v", c, got.status, got.stopped)
			}
		}
		e.unchanged("acme", before, "wrong passwords")

		got := e.submit(r.browser, form, map[string]string{"email": " ALICE@Acme.example", "password": alicePassword}, webRedirect)
		if got.stopped.Query().Get("state") != "st-1" {
			t.Fatalf("callback %v", got.stopped)
		}
		tok, err := r.conf.Exchange(r.ctx, code(t, got), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatalf("exchange: %v", err)
		}
		idt, err := r.provider.Verifier(&oidc.Config{ClientID: "web"}).Verify(r.ctx, tok.Extra("id_token").(string))
		if err != nil {
			t.Fatal(err)
		}
		var idClaims struct {
			AMR []string `json:"amr"`
		}
		_ = idt.Claims(&idClaims)
		if idt.Subject != uid || idt.Nonce != "n-1" || !slices.Equal(idClaims.AMR, []string{"pwd"}) {
			t.Fatalf("ID token sub %q (want %q) nonce %q amr %v", idt.Subject, uid, idt.Nonce, idClaims.AMR)
		}
		at := decodeJWT(t, tok.AccessToken)
		if at["sub"] != uid || at["gh_sub_type"] != "user" || at["gh_tid"] != "acme" || at["email"] != "alice@acme.example" {
			t.Fatalf("access token %v", at)
		}
		info, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok))
		if err != nil || info.Subject != uid || info.Email != "alice@acme.example" || !info.EmailVerified {
			t.Fatalf("userinfo %+v %v", info, err)
		}
		if got := e.introspect("acme", "default", tok.AccessToken); got["active"] != true || got["sub"] != uid {
			t.Fatalf("introspection %v", got)
		}
		if last, err := directory.LastActive(context.Background(), e.st, "acme", uid); err != nil || last == nil {
			t.Fatalf("last_active %v %v", last, err)
		}
		// The session completes the next authorization without a form.
		again := e.walk(r.browser, http.MethodGet, r.conf.AuthCodeURL("st-2", oauth2.S256ChallengeOption(v)), nil, webRedirect)
		if again.stopped == nil || again.stopped.Query().Get("code") == "" {
			t.Fatalf("the session did not complete the login: %d %s", again.status, again.body)
		}

		// Another tenant's password login does not know acme's users.
		e.methods("globex", "default", model.AuthenticationMethod{ID: "pw", Method: model.LoginPassword})
		g := e.rp("globex", "default", "web", webSecret, webRedirect)
		gform := e.walk(g.browser, http.MethodGet, g.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), nil, webRedirect)
		if res := e.submit(g.browser, gform, map[string]string{"email": "alice@acme.example", "password": alicePassword}, webRedirect); res.status != http.StatusUnauthorized {
			t.Fatalf("acme's user at globex: %d %v", res.status, res.stopped)
		}
	})
}

// Only active users sign in; a user suspended or deleted after the login
// loses the session, the refresh token, userinfo and introspection.
func TestPasswordLoginRefusesInactiveUsers(t *testing.T) {
	e := newLocalEnv(t, testkit.Store(t))
	e.addUser("acme", "pending@acme.example", func(u *model.UserSpec) { u.State = model.UserPending })
	r := e.rp("acme", "default", "web", webSecret, webRedirect)
	v := oauth2.GenerateVerifier()
	form := e.walk(r.browser, http.MethodGet, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), nil, webRedirect)
	before := e.snapshot("acme")
	if got := e.submit(r.browser, form, map[string]string{"email": "pending@acme.example", "password": alicePassword}, webRedirect); got.status != http.StatusForbidden || got.stopped != nil {
		t.Fatalf("a pending user: %d %v", got.status, got.stopped)
	}
	e.unchanged("acme", before, "a pending user's login")

	for name, change := range map[string]func(tid, id string){
		"suspended": func(tid, id string) {
			testkit.Edit(t, e.st, model.KindUser, tid, id, func(u *model.UserSpec) { u.State = model.UserSuspended })
		},
		"deleted": func(tid, id string) {
			testkit.Write(t, e.st, func(ctx context.Context, tx store.Tx) error {
				_, err := directory.Users.Delete(ctx, tx, tid, id, 0)
				return err
			})
		},
	} {
		t.Run(name, func(t *testing.T) {
			email := name + "@acme.example"
			uid := e.addUser("acme", email, nil)
			r := e.rp("acme", "default", "web", webSecret, webRedirect)
			form := e.walk(r.browser, http.MethodGet, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), nil, webRedirect)
			got := e.submit(r.browser, form, map[string]string{"email": email, "password": alicePassword}, webRedirect)
			tok, err := r.conf.Exchange(r.ctx, code(t, got), oauth2.VerifierOption(v))
			if err != nil || tok.RefreshToken == "" {
				t.Fatalf("exchange: %v", err)
			}
			change("acme", uid)
			if _, err := r.conf.TokenSource(r.ctx, expire(tok)).Token(); err == nil {
				t.Fatal("a refresh after the change succeeded")
			}
			if got := e.introspect("acme", "default", tok.AccessToken); got["active"] != false {
				t.Fatalf("introspection after the change: %v", got)
			}
			if _, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok)); err == nil {
				t.Fatal("userinfo after the change answered")
			}
			page := e.walk(r.browser, http.MethodGet, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), nil, webRedirect)
			if page.stopped != nil || !e.formFields(page).Has("email") {
				t.Fatalf("the old session completed a login: %d %v", page.status, page.stopped)
			}
			res := e.submit(r.browser, page, map[string]string{"email": email, "password": alicePassword}, webRedirect)
			if res.stopped != nil || (res.status != http.StatusForbidden && res.status != http.StatusUnauthorized) {
				t.Fatalf("a %s user's login: %d %v", name, res.status, res.stopped)
			}
		})
	}
}

// Five failed sign-ins of one email from one address lock it out for a
// minute (429, Retry-After), even with the right password; other emails
// are not locked; after the minute the right password works, and a
// success starts the count again.
func TestPasswordLockout(t *testing.T) {
	localBackends(t, func(t *testing.T, e *localEnv) {
		e.addUser("acme", "alice@acme.example", nil)
		e.addUser("acme", "bob@acme.example", nil)
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		v := oauth2.GenerateVerifier()
		start := r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("prompt", "login"))
		form := e.walk(r.browser, http.MethodGet, start, nil, webRedirect)
		fields := e.formFields(form)
		try := func(password string) step {
			f := fields
			f.Set("email", "alice@acme.example")
			f.Set("password", password)
			return e.postLogin(r.browser, "acme", "default", f, webRedirect)
		}
		for i := range maxLoginFailures - 1 {
			if got := try("wrong-password"); got.status != http.StatusUnauthorized {
				t.Fatalf("failure %d: %d", i+1, got.status)
			}
		}
		locked := try("wrong-password")
		if locked.status != http.StatusTooManyRequests || locked.header.Get("Retry-After") != "60" {
			t.Fatalf("the 5th failure: %d Retry-After %q", locked.status, locked.header.Get("Retry-After"))
		}
		if got := try(alicePassword); got.status != http.StatusTooManyRequests || got.stopped != nil {
			t.Fatalf("the right password while locked out: %d %v", got.status, got.stopped)
		}
		if n := e.snapshot("acme")[grants.KindSessions]; n != 0 {
			t.Fatalf("%d sessions while locked out", n)
		}
		// Bob, from the same address, is not locked out.
		b := e.rp("acme", "default", "web", webSecret, webRedirect)
		bform := e.walk(b.browser, http.MethodGet, start, nil, webRedirect)
		code(t, e.submit(b.browser, bform, map[string]string{"email": "bob@acme.example", "password": alicePassword}, webRedirect))

		e.clock.advance(30 * time.Second)
		if got := try(alicePassword); got.status != http.StatusTooManyRequests || got.header.Get("Retry-After") != "30" {
			t.Fatalf("half-way through the lockout: %d Retry-After %q", got.status, got.header.Get("Retry-After"))
		}
		e.clock.advance(31 * time.Second)
		code(t, try(alicePassword))

		// A success starts the count again: four more failures are 401.
		form = e.walk(r.browser, http.MethodGet, start, nil, webRedirect)
		fields = e.formFields(form)
		for i := range maxLoginFailures - 1 {
			if got := try("wrong-password"); got.status != http.StatusUnauthorized {
				t.Fatalf("failure %d after the success: %d", i+1, got.status)
			}
		}
		code(t, try(alicePassword))
	})
}
