package tests

import (
	"context"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// serverToken is a client-credentials access token of a new client of
// server aid of tenant tid, created with the bootstrap token.
func serverToken(t *testing.T, cp *process, c *client, tid, aid, clientID string) string {
	t.Helper()
	cl := c.must(201, "POST", "/api/admin/"+tid+"/clients", map[string]any{"client_id": clientID, "authorization_server_id": aid,
		"grant_types": []string{"client_credentials"}}).JSON(t)
	p, err := oidc.NewProvider(context.Background(), cp.URL+"/"+tid+"/"+aid)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := (&clientcredentials.Config{ClientID: clientID, ClientSecret: cl["client_secret"].(string), TokenURL: p.Endpoint().TokenURL}).Token(context.Background())
	if err != nil {
		t.Fatalf("token of %s/%s: %v", tid, aid, err)
	}
	return tok.AccessToken
}

// TestAdminAPIWithGatehouseTokens: an access token of tenant acme's admin
// server manages acme and nothing else; one of system/system acts
// system-wide; tokens of other servers, and revoked ones, are refused; a
// gateway created with a server gets a client whose tokens fetch its
// bundle.
func TestAdminAPIWithGatehouseTokens(t *testing.T) {
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			cp := startServe(t, be.options(t))
			root := newClient(t, cp.URL, testToken)
			root.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme"})
			root.must(201, "POST", "/api/system/tenants", map[string]any{"id": "globex", "name": "Globex"})

			acmeAdmin := newClient(t, cp.URL, serverToken(t, cp, root, "acme", "admin", "ops"))
			acmeAdmin.must(201, "POST", "/api/admin/acme/services", map[string]any{"id": "pets", "name": "pets", "url": "http://pets.internal"})
			acmeAdmin.must(403, "GET", "/api/admin/globex/services", nil)
			acmeAdmin.must(403, "GET", "/api/system/tenants", nil)
			events := root.must(200, "GET", "/api/admin/acme/events?limit=5", nil).JSON(t)["events"].([]any)
			if actor := events[0].(map[string]any)["actor"]; actor != "token:acme/admin:ops" {
				t.Fatalf("the audit event names %v, want the token's subject", actor)
			}

			// The default server's tokens are not admin tokens.
			newClient(t, cp.URL, serverToken(t, cp, root, "acme", "default", "app")).must(401, "GET", "/api/admin/acme/services", nil)

			system := newClient(t, cp.URL, serverToken(t, cp, root, "system", "system", "root-ops"))
			system.must(200, "GET", "/api/system/tenants", nil)
			system.must(200, "GET", "/api/admin/globex/services", nil)

			// A revoked admin token stops working at once.
			tok := serverToken(t, cp, root, "acme", "admin", "ops2")
			ops2 := newClient(t, cp.URL, tok)
			ops2.must(200, "GET", "/api/admin/acme/services", nil)
			secret := root.must(200, "POST", "/api/admin/acme/clients/ops2/secret", map[string]any{}).JSON(t)["client_secret"].(string)
			revokeAt(t, cp.URL+"/acme/admin", "ops2", secret, tok)
			ops2.must(401, "GET", "/api/admin/acme/services", nil)

			// A gateway with a server: its client's tokens fetch its bundle.
			gw := root.must(201, "POST", "/api/admin/acme/gateways", map[string]any{"id": "edge", "name": "edge", "server_id": "default"}).JSON(t)
			gc, _ := gw["client"].(map[string]any)
			if gc == nil || gc["client_secret"] == "" {
				t.Fatalf("gateway create: no client in %v", gw)
			}
			p, err := oidc.NewProvider(context.Background(), cp.URL+"/acme/default")
			if err != nil {
				t.Fatal(err)
			}
			gtok, err := (&clientcredentials.Config{ClientID: gc["client_id"].(string), ClientSecret: gc["client_secret"].(string),
				TokenURL: p.Endpoint().TokenURL}).Token(context.Background())
			if err != nil {
				t.Fatalf("the gateway client's token: %v", err)
			}
			bundle := newClient(t, cp.URL, gtok.AccessToken)
			testkit.Eventually(t, 20*time.Second, func() error {
				r := bundle.do("GET", "/api/system/acme/gateways/edge/opa/bundle", nil)
				return testkit.Check(r.Status == 200, "the bundle with the gateway client's token: %d %s", r.Status, r.Body)
			})
			root.must(201, "POST", "/api/admin/acme/gateways", map[string]any{"id": "other", "name": "other"})
			bundle.must(401, "GET", "/api/system/acme/gateways/other/opa/bundle", nil) // not this gateway's token
			// … and are no admin tokens.
			bundle.must(401, "GET", "/api/admin/acme/services", nil)
		})
	}
}

// revokeAt revokes token at the issuer as client id.
func revokeAt(t *testing.T, issuer, id, secret, token string) {
	t.Helper()
	f := &rpFixture{issuer: issuer}
	if st, body := f.form(t, "/oauth2/revoke", map[string][]string{"token": {token}}, id, secret); st != 200 {
		t.Fatalf("revoke: %d %v", st, body)
	}
}
