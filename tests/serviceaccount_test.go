package tests

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/gatehouse-dev/gatehouse/internal/testkit"
)

// TestServiceAccountEndToEnd runs the real binary: a service account made
// over the admin API gets a token from its authentication_url with
// x/oauth2's client credentials; serve's in-process authorizer and a
// separate gatehouse authorizer allow it through the gateway protecting
// an API; after a rotation the old secret is 401 at the token endpoint,
// the old token is denied by both authorizers within 1 s, and the new
// secret's token is allowed.
func TestServiceAccountEndToEnd(t *testing.T) {
	cp := startServe(t, backends()[0].options(t))
	c := newClient(t, cp.URL, testToken)
	c.must(201, "POST", "/api/system/tenants", map[string]any{"id": "acme", "name": "Acme"})
	c.must(201, "POST", "/api/admin/acme/scopes", map[string]any{"id": "pets-read", "name": "pets:read", "server_id": "default"})
	c.must(201, "POST", "/api/admin/acme/policies", map[string]any{"id": "readers", "policy_name": "readers",
		"validators": []any{map[string]any{"name": "scope", "conf": map[string]any{"scope": "pets:read"}}}})
	c.must(201, "POST", "/api/admin/acme/services", map[string]any{"id": "pets", "name": "pets", "url": "http://127.0.0.1:1"})
	c.must(201, "POST", "/api/admin/acme/apis", map[string]any{"id": "get-pet", "service_id": "pets", "method": "GET", "path": "/pets/{id}", "policy_id": "readers"})
	gw := c.must(201, "POST", "/api/admin/acme/gateways", map[string]any{"id": "edge", "name": "edge", "policy_timeout_ms": 1000}).JSON(t)
	key := c.must(200, "GET", "/api/admin/acme/gateways/edge/keys", nil).JSON(t)["keys"].([]any)[0].(map[string]any)
	g := gatewaySetup{token: gw["credential"].(map[string]any)["token"].(string), kid: key["kid"].(string), keyFile: writeTemp(t, key["public_key_pem"].(string))}
	_, addr := startAuthorizer(t, cp.URL, g, t.TempDir())
	authorizers := map[string]struct {
		c   authv3.AuthorizationClient
		ext map[string]string
	}{
		"serve's authorizer":   {authzClient(t, cp.waitLog(t, "ext_authz listening", "addr")), map[string]string{"tenant": "acme", "gateway": "edge"}},
		"gatehouse authorizer": {authzClient(t, addr), nil},
	}
	check := func(ac authv3.AuthorizationClient, ext map[string]string, bearer string) code.Code {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{ContextExtensions: ext,
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/pets/1", Host: "pets.example.com", Headers: map[string]string{"authorization": "Bearer " + bearer}}}}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err := ac.Check(ctx, req)
		if err != nil {
			t.Fatalf("check: %v", err)
		}
		return code.Code(res.Status.Code)
	}
	decidesToken := func(ac authv3.AuthorizationClient, ext map[string]string, bearer string, want code.Code) func() error {
		return func() error {
			got := check(ac, ext, bearer)
			return testkit.Check(got == want, "check with the token: %v, want %v", got, want)
		}
	}

	sa := c.must(201, "POST", "/api/admin/acme/service-accounts", map[string]any{"name": "inventory-sync", "contact_email": "ops@example.com"}).JSON(t)
	url := sa["authentication_url"].(string)
	if url != cp.URL+"/acme/default/oauth2/token" {
		t.Fatalf("authentication_url %q, want the default server's token endpoint", url)
	}
	conf := clientcredentials.Config{ClientID: sa["client_id"].(string), ClientSecret: sa["client_secret"].(string), TokenURL: url, Scopes: []string{"pets:read"}}
	ctx := context.Background()
	tok, err := conf.Token(ctx)
	if err != nil {
		t.Fatalf("client credentials of the service account: %v", err)
	}
	if claims := jwtClaims(t, tok.AccessToken); claims["sub"] != sa["id"] || claims["gh_sub_type"] != "service_account" {
		t.Fatalf("token claims %v", claims)
	}
	for name, a := range authorizers {
		testkit.Eventually(t, 20*time.Second, decidesToken(a.c, a.ext, tok.AccessToken, code.Code_OK), "%s allows the service account's token", name)
	}

	rot := c.must(200, "POST", "/api/admin/acme/service-accounts/"+sa["id"].(string)+"/rotate", nil).JSON(t)
	_, err = conf.Token(ctx)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusUnauthorized || re.ErrorCode != "invalid_client" {
		t.Fatalf("the old secret after the rotation: %v, want 401 invalid_client", err)
	}
	for name, a := range authorizers {
		took := testkit.Eventually(t, time.Second, decidesToken(a.c, a.ext, tok.AccessToken, code.Code_UNAUTHENTICATED), "%s denies the old token", name)
		t.Logf("%s: the rotation's revocation enforced after %v", name, took)
	}
	conf.ClientSecret = rot["client_secret"].(string)
	fresh, err := conf.Token(ctx)
	if err != nil {
		t.Fatalf("the new secret: %v", err)
	}
	for name, a := range authorizers {
		testkit.Eventually(t, 5*time.Second, decidesToken(a.c, a.ext, fresh.AccessToken, code.Code_OK), "%s allows the new secret's token", name)
	}
}
