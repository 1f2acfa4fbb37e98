package oauth

import (
	"context"
	"net/url"
	"slices"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/store"
)

// Deleting a client (admin's delete runs RevokeClient in its transaction)
// revokes its access tokens, and its refresh tokens die with it — also
// for a new client created with the same id.
func TestRevokeClientWithItsDeletion(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		r := e.rp("acme", "default", "web", webSecret, webRedirect)
		v := oauth2.GenerateVerifier()
		tok, err := r.conf.Exchange(r.ctx, r.login(v, "n"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		machine := e.machineToken("acme", "default", "machine", machineSecret)
		testkit.Write(t, e.st, func(ctx context.Context, tx store.Tx) error {
			if err := e.p.RevokeClient(ctx, tx, "acme", "default", "web"); err != nil {
				return err
			}
			_, err := tx.Delete(ctx, model.KindClient, "acme", "web", 0, false)
			return err
		})
		if jtis := revocationJTIs(t, e, "acme"); !slices.Equal(jtis, []string{decodeJWT(t, tok.AccessToken)["jti"].(string)}) {
			t.Fatalf("revocations %v, want the web token's jti only", jtis)
		}
		e.client("acme", "web", model.ClientSpec{ServerID: "default", SecretHash: clientauth.HashSecret(webSecret),
			GrantTypes: []string{model.GrantAuthorizationCode, model.GrantRefreshToken}, RedirectURIs: []string{webRedirect}})
		expired := *tok
		expired.Expiry = time.Now().Add(-time.Minute)
		_, err = r.conf.TokenSource(r.ctx, &expired).Token()
		wantOAuthError(t, err, "invalid_grant", "")
		if got := e.introspect("acme", "default", tok.AccessToken); got["active"] != false {
			t.Fatalf("a deleted client's token is active: %v", got)
		}
		if got := e.introspect("acme", "default", machine); got["active"] != true {
			t.Fatalf("another client's token was revoked: %v", got)
		}
	})
}

// With access_token_strategy opaque the access token is not a JWT; it
// introspects, serves userinfo and is revoked like a JWT.
func TestOpaqueAccessTokens(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.server("acme", "opaque", func(s *model.ServerSpec) { s.AccessTokenStrategy = model.AccessTokenOpaque })
		e.client("acme", "svc", model.ClientSpec{ServerID: "opaque", SecretHash: clientauth.HashSecret(machineSecret),
			GrantTypes: []string{model.GrantClientCredentials}})
		tok := e.machineToken("acme", "opaque", "svc", machineSecret)
		if len(tok) < 20 || len(splitDots(tok)) == 3 {
			t.Fatalf("opaque token %q looks like a JWT", tok)
		}
		iss := e.issuer("acme", "opaque")
		status, body := e.postForm(iss+"/oauth2/introspect", url.Values{"token": {tok}}, "svc", machineSecret)
		if status != 200 || body["active"] != true || body["sub"] != "svc" || body["gh_sub_type"] != "client" {
			t.Fatalf("introspection of an opaque token: %d %v", status, body)
		}
		// Another server of the same tenant shares the crypto key but not the token.
		if got := e.introspect("acme", "default", tok); got["active"] != false {
			t.Fatalf("an opaque token of another server is active at default: %v", got)
		}
		status, _ = e.postForm(iss+"/oauth2/revoke", url.Values{"token": {tok}, "token_type_hint": {"access_token"}}, "svc", machineSecret)
		if status != 200 {
			t.Fatalf("revoke: %d", status)
		}
		if _, body = e.postForm(iss+"/oauth2/introspect", url.Values{"token": {tok}}, "svc", machineSecret); body["active"] != false {
			t.Fatalf("a revoked opaque token is active: %v", body)
		}
	})
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// single_session_per_client: each code exchange revokes the subject's
// previous tokens at the client.
func TestSingleSessionPerClient(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		e.server("acme", "single", func(s *model.ServerSpec) { s.SingleSessionPerClient = true })
		e.client("acme", "app", model.ClientSpec{ServerID: "single", SecretHash: clientauth.HashSecret(webSecret),
			GrantTypes: []string{model.GrantAuthorizationCode, model.GrantRefreshToken}, RedirectURIs: []string{webRedirect}})
		r := e.rp("acme", "single", "app", webSecret, webRedirect)
		var toks []*oauth2.Token
		for range 2 {
			v := oauth2.GenerateVerifier()
			tok, err := r.conf.Exchange(r.ctx, r.login(v, "n"), oauth2.VerifierOption(v))
			if err != nil {
				t.Fatal(err)
			}
			toks = append(toks, tok)
		}
		introspect := func(tok string) any {
			_, body := e.postForm(e.issuer("acme", "single")+"/oauth2/introspect", url.Values{"token": {tok}}, "app", webSecret)
			return body["active"]
		}
		if introspect(toks[0].AccessToken) != false || introspect(toks[1].AccessToken) != true {
			t.Fatal("the second session did not supersede the first")
		}
		expired := *toks[0]
		expired.Expiry = time.Now().Add(-time.Minute)
		_, err := r.conf.TokenSource(r.ctx, &expired).Token()
		wantOAuthError(t, err, "invalid_grant", "")
	})
}
