package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/oauth/clientauth"
	"github.com/gatehouse-dev/gatehouse/store"
)

// The provider keeps each server's decoded configuration per store
// revision (config.go). Every kind of change it caches must be seen by
// the first request after the change commits: each step below warms the
// cache with a request, changes one thing, and expects the very next
// request to answer by the new configuration.
func TestConfigurationChangesAreSeenByTheNextRequest(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		iss := e.issuer("acme", "default")
		machine := func(secret string, scopes ...string) (*oauth2.Token, error) {
			cc := clientcredentials.Config{ClientID: "machine", ClientSecret: secret, TokenURL: iss + "/oauth2/token", Scopes: scopes}
			return cc.Token(ctx)
		}
		discovery := func() map[string]any {
			t.Helper()
			resp, err := http.Get(iss + "/.well-known/openid-configuration")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var doc map[string]any
			if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&doc) != nil {
				t.Fatalf("discovery: %d", resp.StatusCode)
			}
			return doc
		}
		listed := func(doc map[string]any, field, value string) bool {
			for _, v := range doc[field].([]any) {
				if v == value {
					return true
				}
			}
			return false
		}

		// The client's secret is rotated: the old one is refused at once.
		if _, err := machine(machineSecret, "orders.read"); err != nil {
			t.Fatalf("warm-up token: %v", err)
		}
		const rotated = "machine-secret-rotated-0123456789abcdefghij"
		testkit.Edit(t, e.st, model.KindClient, "acme", "machine", func(s *model.ClientSpec) { s.SecretHash = clientauth.HashSecret(rotated) })
		_, err := machine(machineSecret)
		wantOAuthError(t, err, "invalid_client", "")
		if _, err := machine(rotated, "orders.read"); err != nil {
			t.Fatalf("the new secret: %v", err)
		}

		// A scope is deleted: it is no longer granted nor advertised.
		if !listed(discovery(), "scopes_supported", "orders.read") {
			t.Fatal("orders.read not advertised before its deletion")
		}
		testkit.Write(t, e.st, func(ctx context.Context, tx store.Tx) error {
			_, err := tx.Delete(ctx, model.KindScope, "acme", "orders-read", 0, false)
			return err
		})
		_, err = machine(rotated, "orders.read")
		wantOAuthError(t, err, "invalid_scope", "")
		if listed(discovery(), "scopes_supported", "orders.read") {
			t.Fatal("a deleted scope is still advertised")
		}

		// A claim is added: advertised at once.
		testkit.Create(t, e.st, &store.Object{Kind: model.KindClaim, TenantID: "acme", ID: "dept",
			Spec: mustJSON(model.ClaimSpec{ServerID: "default", Name: "dept", Mapping: "org.dept", Type: model.ClaimAccessToken})})
		if !listed(discovery(), "claims_supported", "dept") {
			t.Fatal("a new claim is not advertised")
		}

		// The server stops allowing client_credentials.
		testkit.Edit(t, e.st, model.KindServer, "acme", "default", func(s *model.ServerSpec) {
			s.GrantTypes = slices.DeleteFunc(s.GrantTypes, func(g string) bool { return g == model.GrantClientCredentials })
		})
		_, err = machine(rotated)
		wantOAuthError(t, err, "unsupported_grant_type", "")
		if listed(discovery(), "grant_types_supported", model.GrantClientCredentials) {
			t.Fatal("a grant the server no longer allows is advertised")
		}
		testkit.Edit(t, e.st, model.KindServer, "acme", "default", func(s *model.ServerSpec) {
			s.GrantTypes = append(s.GrantTypes, model.GrantClientCredentials)
		})
		if _, err := machine(rotated); err != nil {
			t.Fatalf("client_credentials allowed again: %v", err)
		}

		// The client is deleted: it does not exist any more.
		testkit.Write(t, e.st, func(ctx context.Context, tx store.Tx) error {
			_, err := tx.Delete(ctx, model.KindClient, "acme", "machine", 0, false)
			return err
		})
		_, err = machine(rotated)
		wantOAuthError(t, err, "invalid_client", "")

		// The tenant is disabled: every endpoint refuses.
		testkit.Edit(t, e.st, model.KindTenant, "", "acme", func(s *model.TenantSpec) { s.Status = model.TenantDisabled })
		resp, err := http.Get(iss + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("discovery of a disabled tenant: %d, want 403", resp.StatusCode)
		}

		// Another tenant's requests were answered from its own entry all
		// along: globex's machine client is untouched.
		cc := clientcredentials.Config{ClientID: "machine", ClientSecret: machineSecret, TokenURL: e.issuer("globex", "default") + "/oauth2/token"}
		if _, err := cc.Token(ctx); err != nil {
			t.Fatalf("globex's machine client: %v", err)
		}
	})
}

// A refresh grants only the scopes the client may still be granted: a
// scope unbound from the server since the login is dropped from the
// refreshed tokens.
func TestRefreshDropsScopesNoLongerGrantable(t *testing.T) {
	backends(t, func(t *testing.T, e *env) {
		r := e.rp("acme", "default", "web", webSecret, webRedirect, "openid", "offline_access", "orders.read")
		v := oauth2.GenerateVerifier()
		tok, err := r.conf.Exchange(r.ctx, r.login(v, "n1"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeJWT(t, tok.AccessToken)["scope"]; got != "openid offline_access orders.read" {
			t.Fatalf("scope %v at login", got)
		}
		testkit.Write(t, e.st, func(ctx context.Context, tx store.Tx) error {
			_, err := tx.Delete(ctx, model.KindScope, "acme", "orders-read", 0, false)
			return err
		})
		expired := *tok
		expired.Expiry = time.Now().Add(-time.Minute)
		fresh, err := r.conf.TokenSource(r.ctx, &expired).Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if got := decodeJWT(t, fresh.AccessToken)["scope"]; got != "openid offline_access" {
			t.Fatalf("scope %v after the refresh, want orders.read dropped", got)
		}
		if got := e.introspect("acme", "default", fresh.AccessToken)["scope"]; got != "openid offline_access" {
			t.Fatalf("introspected scope %v", got)
		}
	})
}
