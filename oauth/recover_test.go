package oauth

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/directory"
	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/store"
)

// A recovery link sets a new password once: a bad password changes
// nothing and keeps the link; the right one clears TOTP, advances the
// credential epoch, ends the old session and refresh token, revokes the
// access tokens, and the link is gone (410).
func TestRecoveryLink(t *testing.T) {
	localBackends(t, func(t *testing.T, e *localEnv) {
		ctx := context.Background()
		uid := e.addUser("acme", "alice@acme.example", func(u *model.UserSpec) { u.TOTPSeed, u.TOTPConfirmed = "sealed-seed", true })
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		v := oauth2.GenerateVerifier()
		form := e.walk(r.browser, http.MethodGet, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), nil, webRedirect)
		tok, err := r.conf.Exchange(r.ctx, code(t, e.submit(r.browser, form, map[string]string{"email": "alice@acme.example", "password": alicePassword}, webRedirect)), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		key, _, err := directory.CreateRecovery(ctx, e.st, "acme", uid, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		link := directory.RecoveryLink(e.srv.URL, "acme", key)
		c := e.browser()
		page := e.walk(c, http.MethodGet, link, nil, "-")
		h := page.header
		if page.status != http.StatusOK || !e.formFields(page).Has("password_confirm") || h.Get("Cache-Control") != "no-store" ||
			h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") != "no-referrer" ||
			!strings.Contains(h.Get("Content-Security-Policy"), "form-action 'self'") {
			t.Fatalf("the recovery page: %d %v %s", page.status, h, page.body)
		}
		if other := e.walk(c, http.MethodGet, e.issuer("acme", "other")+"/login/recover/"+key, nil, "-"); other.status != http.StatusNotFound {
			t.Fatalf("the link at another server: %d", other.status)
		}
		if got := e.walk(c, http.MethodGet, e.issuer("globex", "default")+"/login/recover/"+key, nil, "-"); got.status != http.StatusGone {
			t.Fatalf("the link at another tenant: %d", got.status)
		}
		const newPassword = "through-the-looking-glass"
		for _, bad := range []map[string]string{
			{"password": "short", "password_confirm": "short"},
			{"password": newPassword, "password_confirm": newPassword + "!"},
		} {
			if got := e.submit(c, page, bad, "-"); got.status != http.StatusBadRequest {
				t.Fatalf("%v: %d", bad, got.status)
			}
		}
		if u := e.user("acme", uid); u.Spec.CredentialEpoch != 0 || !u.Spec.TOTPConfirmed {
			t.Fatal("a refused recovery changed the user")
		}
		if got := e.submit(c, page, map[string]string{"password": newPassword, "password_confirm": newPassword}, "-"); got.status != http.StatusOK ||
			!strings.Contains(got.body, "Your password is set") {
			t.Fatalf("the recovery: %d %s", got.status, got.body)
		}
		u := e.user("acme", uid)
		if ok, _ := passwords.Verify(u.Spec.PasswordHash, newPassword); !ok || u.Spec.TOTPSeed != "" || u.Spec.TOTPConfirmed || u.Spec.CredentialEpoch != 1 {
			t.Fatalf("after the recovery: %+v", u.Spec)
		}
		// Once only.
		if got := e.walk(c, http.MethodGet, link, nil, "-"); got.status != http.StatusGone {
			t.Fatalf("the link again: %d", got.status)
		}
		if got := e.walk(c, http.MethodPost, link, url.Values{"password": {newPassword}, "password_confirm": {newPassword}}, "-"); got.status != http.StatusGone {
			t.Fatalf("the link posted again: %d", got.status)
		}
		// The old session, refresh token and access token are done.
		again := e.walk(r.browser, http.MethodGet, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), nil, webRedirect)
		if again.stopped != nil || !e.formFields(again).Has("email") {
			t.Fatalf("the old session completed a login: %d %v", again.status, again.stopped)
		}
		if _, err := r.conf.TokenSource(r.ctx, expire(tok)).Token(); err == nil {
			t.Fatal("the old refresh token still works")
		}
		if got := e.introspect("acme", "default", tok.AccessToken); got["active"] != false {
			t.Fatalf("the old access token: %v", got)
		}
		revs, err := e.st.List(ctx, store.Query{Kind: model.KindTokenRevocation, TenantID: "acme"})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, o := range revs.Items {
			if strings.Contains(string(o.Spec), uid) && strings.Contains(string(o.Spec), e.issuer("acme", "default")) {
				found = true
			}
		}
		if !found {
			t.Fatalf("no revocation of the user's tokens at acme/default: %d revocations", len(revs.Items))
		}
		if got := e.submit(r.browser, again, map[string]string{"email": "alice@acme.example", "password": alicePassword}, webRedirect); got.status != http.StatusUnauthorized {
			t.Fatalf("the old password: %d", got.status)
		}
		code(t, e.submit(r.browser, again, map[string]string{"email": "alice@acme.example", "password": newPassword}, webRedirect))
	})
}

// A recovery link is the user's it was made for, with the credentials it
// was made at: an MFA reset (or a password set) since, or another user
// created later under the same id, ends it.
func TestRecoveryLinkEndsWithItsUser(t *testing.T) {
	localBackends(t, func(t *testing.T, e *localEnv) {
		ctx := context.Background()
		uid := e.addUser("acme", "alice@acme.example", nil)
		made := func() string {
			t.Helper()
			u := e.user("acme", uid)
			key, _, err := directory.CreateRecovery(ctx, e.st, "acme", uid, directory.CredentialVersion(&u.Spec), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return directory.RecoveryLink(e.srv.URL, "acme", key)
		}
		link := made()
		if got := e.walk(e.browser(), http.MethodGet, link, nil, "-"); got.status != http.StatusOK {
			t.Fatalf("a fresh link: %d", got.status)
		}
		testkit.Write(t, e.st, func(ctx context.Context, tx store.Tx) error {
			_, err := directory.ResetMFA(ctx, tx, "acme", uid)
			return err
		})
		if got := e.walk(e.browser(), http.MethodGet, link, nil, "-"); got.status != http.StatusGone {
			t.Fatalf("the link after an MFA reset: %d", got.status)
		}
		// A link made before the user existed (another user of that id,
		// deleted since) does not serve the new one.
		old, _, err := directory.CreateRecovery(ctx, e.st, "acme", "later", "", time.Now().Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		testkit.Write(t, e.st, func(ctx context.Context, tx store.Tx) error {
			return directory.CreateUser(ctx, tx, &store.Typed[model.UserSpec]{Meta: store.Object{TenantID: "acme", ID: "later"},
				Spec: model.UserSpec{Email: "later@acme.example", State: model.UserActive}})
		})
		if got := e.walk(e.browser(), http.MethodGet, directory.RecoveryLink(e.srv.URL, "acme", old), nil, "-"); got.status != http.StatusGone {
			t.Fatalf("an older link for a newer user of the id: %d", got.status)
		}
	})
}
