package oauth

import (
	"context"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/passwords"
	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/grants"
)

// Password verifications (argon2id, 19 MiB each) are bounded per
// process: a login that gets no slot within the wait is answered 503
// with Retry-After, having verified nothing.
func TestPasswordVerificationsAreBounded(t *testing.T) {
	e := newEnvWith(t, testkit.Store(t), func(o *Options) { o.PasswordVerifications, o.PasswordWait = 1, 20*time.Millisecond })
	if cap(e.p.verifySlots) != 1 {
		t.Fatalf("%d slots, want the option's 1", cap(e.p.verifySlots))
	}
	r := e.rp("acme", "default", "web", webSecret, webRedirect)
	b := r.browser
	login, _ := e.startAuthorize(b, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	_, body := e.get(b, login.String())
	action, fields, ok := loginForm(body)
	if !ok {
		t.Fatalf("no login form: %q", body)
	}
	fields.Set("username", "alice")
	fields.Set("password", alicePassword)

	e.p.verifySlots <- struct{}{} // every slot busy
	before := e.snapshot("acme")
	resp, err := b.PostForm(action, fields)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a login with every verification slot busy: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	e.unchanged("acme", before, "a login refused for lack of a slot")
	<-e.p.verifySlots

	resp, err = b.PostForm(action, fields)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the same login with a free slot: %d, want 303", resp.StatusCode)
	}
	if len(e.p.verifySlots) != 0 {
		t.Fatal("the login kept its verification slot")
	}
	// The default is twice GOMAXPROCS.
	if d := newEnv(t, testkit.Store(t)); cap(d.p.verifySlots) < 2 {
		t.Fatalf("default slots %d, want 2×GOMAXPROCS", cap(d.p.verifySlots))
	}
}

// expire makes a token's client-side expiry past, so the token source
// refreshes.
func expire(tok *oauth2.Token) *oauth2.Token {
	old := *tok
	old.Expiry = time.Now().Add(-time.Hour)
	return &old
}

// A user removed from the server, whose login method is disabled, or
// whose password changed loses its refresh tokens, its access tokens
// (introspection and userinfo) and its login session.
func TestRemovedUsersLoseAccess(t *testing.T) {
	otherHash, err := passwords.Hash("another-password")
	if err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(*model.ServerSpec){
		"removed": func(s *model.ServerSpec) {
			s.Authentications[0].Static.Users = []model.StaticUser{{Username: "bob", PasswordHash: aliceHash()}}
		},
		"method disabled":  func(s *model.ServerSpec) { s.Authentications[0].Disabled = true },
		"password changed": func(s *model.ServerSpec) { s.Authentications[0].Static.Users[0].PasswordHash = otherHash },
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, testkit.Store(t))
			r := e.rp("acme", "default", "web", webSecret, webRedirect)
			v := oauth2.GenerateVerifier()
			tok, err := r.conf.Exchange(r.ctx, r.login(v, "n"), oauth2.VerifierOption(v))
			if err != nil || tok.RefreshToken == "" {
				t.Fatalf("exchange: %v", err)
			}
			// Before the change: everything works (and a refresh keeps working).
			fresh, err := r.conf.TokenSource(r.ctx, expire(tok)).Token()
			if err != nil {
				t.Fatalf("refresh before the change: %v", err)
			}
			if got := e.introspect("acme", "default", fresh.AccessToken); got["active"] != true {
				t.Fatalf("introspection before the change: %v", got)
			}

			testkit.Edit(t, e.st, model.KindServer, "acme", "default", edit)

			if _, err := r.conf.TokenSource(r.ctx, expire(fresh)).Token(); err == nil {
				t.Fatal("a refresh after the change succeeded")
			}
			if got := e.introspect("acme", "default", fresh.AccessToken); got["active"] != false {
				t.Fatalf("introspection after the change: %v, want active:false", got)
			}
			if _, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(fresh)); err == nil {
				t.Fatal("userinfo after the change answered")
			}
			// The session no longer completes a login: the form is shown.
			res := e.drive(r.browser, r.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(v)), webRedirect, "", "")
			if res.callback != nil || res.status != http.StatusOK || !containsForm(res.body) {
				t.Fatalf("a login with the old session after the change: %+v, want the form", res)
			}
		})
	}
}

func containsForm(body string) bool { _, _, ok := loginForm(body); return ok }

// A refresh token family has an absolute lifetime: refresh_token_ttl from
// the code exchange; rotation does not extend it.
func TestRefreshFamilyLifetimeIsAbsolute(t *testing.T) {
	var skew atomic.Int64 // how far the provider's clock is ahead
	e := newEnvWith(t, testkit.Store(t), func(o *Options) {
		o.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	ctx := context.Background()
	r := e.rp("acme", "default", "web", webSecret, webRedirect)
	v := oauth2.GenerateVerifier()
	tok, err := r.conf.Exchange(r.ctx, r.login(v, "n"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	first, err := e.p.records.RefreshToken(ctx, "acme", tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if d := first.ExpiresAt.Sub(first.IssuedAt); d != 720*time.Hour {
		t.Fatalf("the first refresh token lives %v, want refresh_token_ttl 720h", d)
	}
	cur := tok
	for range 2 {
		next, err := r.conf.TokenSource(r.ctx, expire(cur)).Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		rec, err := e.p.records.RefreshToken(ctx, "acme", next.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		if !rec.ExpiresAt.Equal(first.ExpiresAt) || !rec.IssuedAt.After(first.IssuedAt) {
			t.Fatalf("a rotated refresh token expires %v (issued %v), want the family's %v", rec.ExpiresAt, rec.IssuedAt, first.ExpiresAt)
		}
		cur = next
	}
	// A family past its lifetime refreshes no more.
	rec, _ := e.p.records.RefreshToken(ctx, "acme", cur.RefreshToken)
	rec.ExpiresAt = time.Now().Add(time.Minute)
	if err := e.p.records.PutRefreshToken(ctx, "acme", cur.RefreshToken, rec); err != nil {
		t.Fatal(err)
	}
	skew.Store(int64(2 * time.Minute)) // the family's end has passed
	if _, err := r.conf.TokenSource(r.ctx, expire(cur)).Token(); err == nil {
		t.Fatal("a refresh of a family past its lifetime succeeded")
	}
}

// The revocation endpoint revokes only tokens zitadel identified (a
// refresh token, a verified JWT or an opaque token it decrypted): a bare
// jti, or the id of a refresh token, from a public client that needs no
// secret, revokes nothing and is answered 200 (RFC 7009).
func TestRevokeNeedsTheToken(t *testing.T) {
	e := newEnv(t, testkit.Store(t))
	r := e.rp("acme", "default", "cli", "", cliRedirect)
	v := oauth2.GenerateVerifier()
	tok, err := r.conf.Exchange(r.ctx, r.login(v, "n"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	jti, _ := decodeJWT(t, tok.AccessToken)["jti"].(string)
	revoke := e.issuer("acme", "default") + "/oauth2/revoke"
	before := e.snapshot("acme")
	for _, token := range []string{jti, refreshTokenIDPrefix + grants.Hash(tok.RefreshToken)} {
		for _, hint := range []string{"", "access_token", "refresh_token"} {
			status, body := e.postForm(revoke, url.Values{"token": {token}, "token_type_hint": {hint}, "client_id": {"cli"}}, "", "")
			if status != http.StatusOK {
				t.Fatalf("revoke %q (hint %q): %d %v, want 200", token, hint, status, body)
			}
		}
	}
	e.unchanged("acme", before, "revocations by a bare jti or refresh token id")
	if got := e.introspect("acme", "default", tok.AccessToken); got["active"] != true {
		t.Fatalf("the access token after a bare-jti revocation: %v, want active", got)
	}
	fresh, err := r.conf.TokenSource(r.ctx, expire(tok)).Token()
	if err != nil {
		t.Fatalf("the refresh token after a bare-id revocation: %v", err)
	}
	// The token itself still revokes its family.
	if status, body := e.postForm(revoke, url.Values{"token": {fresh.AccessToken}, "client_id": {"cli"}}, "", ""); status != http.StatusOK {
		t.Fatalf("revoke the access token: %d %v", status, body)
	}
	if got := e.introspect("acme", "default", fresh.AccessToken); got["active"] != false {
		t.Fatalf("the revoked access token: %v, want inactive", got)
	}
}
