package oauth

import (
	"context"
	"encoding/base64"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/pquerna/otp/totp"
	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// totpNow is the code of secret at the provider's time.
func (e *localEnv) totpNow(secret string) string {
	e.t.Helper()
	c, err := totp.GenerateCodeCustom(secret, e.clock.Now(), totpOpts)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// wrongCode is a code that is not now's of secret.
func (e *localEnv) wrongCode(secret string) string {
	if e.totpNow(secret) == "000000" {
		return "000001"
	}
	return "000000"
}

// amr is the amr of the ID token of a code exchange.
func amrOf(t *testing.T, r *rp, tok *oauth2.Token) []string {
	t.Helper()
	idt, err := r.provider.Verifier(&oidc.Config{ClientID: "web"}).Verify(r.ctx, tok.Extra("id_token").(string))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AMR []string `json:"amr"`
	}
	_ = idt.Claims(&c)
	return c.AMR
}

// With mfa_provider totp, a user without a confirmed seed enrols after
// the password (the seed shown once, confirmed by a code, stored
// sealed); later logins ask for a code, which is good once; wrong codes
// count toward the lockout; the step is the browser's and the auth
// request's only; reset-mfa ends the session and asks to enrol again.
func TestTOTPEnrolmentAndLogin(t *testing.T) {
	localBackends(t, func(t *testing.T, e *localEnv) {
		e.mfa("acme", model.MFATOTP)
		uid := e.addUser("acme", "alice@acme.example", nil)
		v := oauth2.GenerateVerifier()
		login := func(r *rp) step {
			t.Helper()
			form := e.walk(r.browser, http.MethodGet, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("prompt", "login")), nil, webRedirect)
			return e.submit(r.browser, form, map[string]string{"email": "alice@acme.example", "password": alicePassword}, webRedirect)
		}

		r1 := e.rp("acme", "default", "web", webSecret, webRedirect)
		enrol := login(r1)
		secret := totpSecret(enrol.body)
		if enrol.status != http.StatusOK || enrol.stopped != nil || secret == "" ||
			!strings.Contains(enrol.body, "otpauth://totp/acme:alice@acme.example?") || !strings.Contains(enrol.body, "secret="+secret) {
			t.Fatalf("the enrolment page: %d %v %s", enrol.status, enrol.stopped, enrol.body)
		}
		if u := e.user("acme", uid); u.Spec.TOTPSeed != "" || u.Spec.TOTPConfirmed {
			t.Fatal("the seed was stored before it was confirmed")
		}
		if wrong := e.submit(r1.browser, enrol, map[string]string{"code": e.wrongCode(secret)}, webRedirect); wrong.status != http.StatusUnauthorized ||
			totpSecret(wrong.body) != secret {
			t.Fatalf("a wrong enrolment code: %d %s", wrong.status, wrong.body)
		}
		// The step is this browser's: another one (no binding cookie), or a
		// made-up step, gets nothing.
		fields := e.formFields(enrol)
		fields.Set("code", e.totpNow(secret))
		if got := e.postLogin(e.browser(), "acme", "default", fields, webRedirect); got.status != http.StatusForbidden {
			t.Fatalf("the step from another browser: %d", got.status)
		}
		if got := e.submit(r1.browser, enrol, map[string]string{"login_step": "made-up", "code": e.totpNow(secret)}, webRedirect); got.status != http.StatusBadRequest {
			t.Fatalf("a made-up step: %d", got.status)
		}
		first := e.totpNow(secret)
		tok, err := r1.conf.Exchange(r1.ctx, code(t, e.submit(r1.browser, enrol, map[string]string{"code": first}, webRedirect)), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		if amr := amrOf(t, r1, tok); !slices.Equal(amr, []string{"pwd", "otp"}) {
			t.Fatalf("amr %v", amr)
		}
		u := e.user("acme", uid)
		if !u.Spec.TOTPConfirmed || u.Spec.TOTPSeed == "" || strings.Contains(u.Spec.TOTPSeed, secret) {
			t.Fatalf("stored seed %q confirmed %v", u.Spec.TOTPSeed, u.Spec.TOTPConfirmed)
		}
		sealed, _ := base64.StdEncoding.DecodeString(u.Spec.TOTPSeed)
		if opened, err := e.box.Open(sealed, model.TOTPSealAAD("acme", uid)); err != nil || string(opened) != secret {
			t.Fatalf("the sealed seed opens to %q, %v", opened, err)
		}
		if _, err := e.box.Open(sealed, model.TOTPSealAAD("acme", "another-user")); err == nil {
			t.Fatal("the seed opens for another user")
		}

		// The next login asks for a code: the one used already is refused.
		r2 := e.rp("acme", "default", "web", webSecret, webRedirect)
		ask := login(r2)
		if ask.status != http.StatusOK || totpSecret(ask.body) != "" || !e.formFields(ask).Has("code") {
			t.Fatalf("the code page: %d %s", ask.status, ask.body)
		}
		if replay := e.submit(r2.browser, ask, map[string]string{"code": first}, webRedirect); replay.status != http.StatusUnauthorized ||
			!strings.Contains(replay.body, "used already") {
			t.Fatalf("a replayed code: %d %v %s", replay.status, replay.stopped, replay.body)
		}
		e.clock.advance(totpPeriod * time.Second)
		tok2, err := r2.conf.Exchange(r2.ctx, code(t, e.submit(r2.browser, ask, map[string]string{"code": e.totpNow(secret)}, webRedirect)), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}

		// Wrong codes count toward the lockout.
		r3 := e.rp("acme", "default", "web", webSecret, webRedirect)
		ask3 := login(r3)
		var last step
		for range maxLoginFailures {
			last = e.submit(r3.browser, ask3, map[string]string{"code": e.wrongCode(secret)}, webRedirect)
		}
		if last.status != http.StatusTooManyRequests {
			t.Fatalf("the 5th wrong code: %d", last.status)
		}
		e.clock.advance(loginLockout + time.Second)

		// reset-mfa (directory.ResetMFA, what PUT …/users/{uid}/reset-mfa
		// does): the session and the refresh token end; the next login
		// enrols a new seed.
		testkit.Write(t, e.st, func(ctx context.Context, tx store.Tx) error {
			_, err := directory.ResetMFA(ctx, tx, "acme", uid)
			return err
		})
		if _, err := r2.conf.TokenSource(r2.ctx, expire(tok2)).Token(); err == nil {
			t.Fatal("a refresh after reset-mfa succeeded")
		}
		silent := e.walk(r2.browser, http.MethodGet, r2.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("prompt", "none")), nil, webRedirect)
		if silent.stopped == nil || silent.stopped.Query().Get("error") != "login_required" {
			t.Fatalf("prompt=none after reset-mfa: %d %v", silent.status, silent.stopped)
		}
		again := login(e.rp("acme", "default", "web", webSecret, webRedirect))
		if s := totpSecret(again.body); s == "" || s == secret {
			t.Fatalf("after reset-mfa: want a new enrolment, got %q: %s", s, again.body)
		}
	})
}

// A login step expires, and is refused once the user's credentials
// changed (a password set meanwhile).
func TestTOTPStepExpires(t *testing.T) {
	e := newLocalEnv(t, testkit.Store(t))
	e.mfa("acme", model.MFATOTP)
	uid := e.addUser("acme", "alice@acme.example", nil)
	r := e.rp("acme", "default", "web", webSecret, webRedirect)
	v := oauth2.GenerateVerifier()
	form := e.walk(r.browser, http.MethodGet, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), nil, webRedirect)
	enrol := e.submit(r.browser, form, map[string]string{"email": "alice@acme.example", "password": alicePassword}, webRedirect)
	secret := totpSecret(enrol.body)
	e.clock.advance(loginStepTTL + time.Second)
	if got := e.submit(r.browser, enrol, map[string]string{"code": e.totpNow(secret)}, webRedirect); got.status != http.StatusBadRequest {
		t.Fatalf("an expired step: %d %s", got.status, got.body)
	}
	enrol = e.submit(r.browser, form, map[string]string{"email": "alice@acme.example", "password": alicePassword}, webRedirect)
	testkit.Edit(t, e.st, model.KindUser, "acme", uid, func(u *model.UserSpec) { u.CredentialEpoch++ })
	got := e.submit(r.browser, enrol, map[string]string{"code": e.totpNow(totpSecret(enrol.body))}, webRedirect)
	if got.status != http.StatusBadRequest || !strings.Contains(got.body, "credentials changed") {
		t.Fatalf("a step of older credentials: %d %s", got.status, got.body)
	}
	if u := e.user("acme", uid); u.Spec.TOTPConfirmed {
		t.Fatal("a refused step enrolled the seed")
	}
}

// A right password does not reset the count of wrong codes: guessing
// codes across fresh logins is locked out like guessing on one step.
func TestTOTPLockoutSurvivesRightPasswords(t *testing.T) {
	localBackends(t, func(t *testing.T, e *localEnv) {
		e.mfa("acme", model.MFATOTP)
		e.addUser("acme", "alice@acme.example", nil)
		v := oauth2.GenerateVerifier()
		login := func(r *rp) step {
			t.Helper()
			form := e.walk(r.browser, http.MethodGet, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v), oauth2.SetAuthURLParam("prompt", "login")), nil, webRedirect)
			return e.submit(r.browser, form, map[string]string{"email": "alice@acme.example", "password": alicePassword}, webRedirect)
		}
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		enrol := login(r)
		secret := totpSecret(enrol.body)
		if secret == "" {
			t.Fatalf("no enrolment: %d %s", enrol.status, enrol.body)
		}
		var last step
		for i := range maxLoginFailures {
			// Every other wrong code comes after a new, right password.
			page := enrol
			if i%2 == 1 {
				page = login(r)
				if page.status != http.StatusOK || !e.formFields(page).Has("code") {
					t.Fatalf("attempt %d: the second step after a right password: %d %s", i, page.status, page.body)
				}
			}
			last = e.submit(r.browser, page, map[string]string{"code": e.wrongCode(secret)}, webRedirect)
		}
		if last.status != http.StatusTooManyRequests {
			t.Fatalf("the 5th wrong code across fresh logins: %d %s", last.status, last.body)
		}
	})
}
