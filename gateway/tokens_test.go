package gateway

import (
	"context"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/jwtkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

const issuerURL = "https://idp.example.com"

func claims(aud string, exp time.Duration, extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"iss": issuerURL, "sub": "alice", "aud": aud, "exp": time.Now().Add(exp).Unix(), "iat": time.Now().Add(-time.Minute).Unix()}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

const roleRego = `package policy

default allow := false

allow if {
	"admin" in input.gatehouse.token.claims.roles
	"pets:write" in input.gatehouse.token.scopes
}
`

func tokenFactoryForTest(ctx context.Context, issuers []policies.IssuerData) (TokenValidator, error) {
	return token.New(token.FromBundle(issuers), token.Options{AllowPrivateNetworks: true, MinRefetchInterval: time.Millisecond})
}

// TestExtAuthzTokens: JWT validation over a real gRPC connection, with keys
// from a jwks_uri that rotates.
func TestExtAuthzTokens(t *testing.T) {
	oldKey, newKey, stranger := jwtkit.NewSigner(t, "k1"), jwtkit.NewSigner(t, "k2"), jwtkit.NewSigner(t, "k1")
	ks := jwtkit.NewServer(t, oldKey)
	engines := NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	a := &Activator{Engines: engines, Tokens: tokenFactoryForTest}
	defer a.Close()
	c := testCompiled(t, func(cfg *policies.Config) {
		cfg.Policies = append(cfg.Policies, policies.Object[model.PolicySpec]{ID: "roles", Name: "roles", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: roleRego}})
		cfg.APIs = append(cfg.APIs, policies.Object[model.APISpec]{ID: "admin", Spec: model.APISpec{ServiceID: "pets", Method: "PUT", Path: "/pets/{id}",
			PolicyID: "roles", ClaimsToHeaders: map[string]string{"sub": "x-user", "roles": "x-roles", "org.id": "x-org"}}})
		cfg.Issuers = []policies.Object[model.IssuerSpec]{{ID: "idp", Name: "idp", Spec: model.IssuerSpec{Issuer: issuerURL,
			Audiences: []string{"pets-api"}, JWKSURI: ks.URL}}}
	})
	src, _ := SourceFromCompiled(c, "1")
	if _, err := a.Activate(context.Background(), src, "test"); err != nil {
		t.Fatal(err)
	}
	client := authv3.NewAuthorizationClient(startGRPC(t, NewServer(ServerOptions{Engines: engines})))
	put := func(t *testing.T, authorization string) *authv3.CheckResponse {
		t.Helper()
		h := map[string]string{}
		if authorization != "" {
			h["authorization"] = authorization
		}
		res, err := client.Check(context.Background(), check("PUT", "/pets/1", h))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	good := map[string]any{"roles": []any{"admin", "ops"}, "scope": "pets:read pets:write", "org": map[string]any{"id": "o-42"}}
	t.Run("a valid token is allowed and its claims go to the upstream as headers", func(t *testing.T) {
		res := put(t, "Bearer "+oldKey.Token(t, claims("pets-api", time.Hour, good)))
		if res.Status.Code != int32(code.Code_OK) {
			t.Fatalf("valid token denied: %v", res)
		}
		got := map[string]string{}
		for _, h := range res.GetOkResponse().Headers {
			got[h.Header.Key] = h.Header.Value
		}
		if got["x-user"] != "alice" || got["x-roles"] != "admin,ops" || got["x-org"] != "o-42" {
			t.Fatalf("claims_to_headers: %v", got)
		}
	})
	t.Run("a request is refused", func(t *testing.T) {
		cases := []struct {
			name string
			auth string
			want code.Code
		}{
			{"missing token", "", code.Code_UNAUTHENTICATED},
			{"expired token", "Bearer " + oldKey.Token(t, claims("pets-api", -time.Hour, good)), code.Code_UNAUTHENTICATED},
			{"wrong audience", "Bearer " + oldKey.Token(t, claims("other-api", time.Hour, good)), code.Code_UNAUTHENTICATED},
			{"unknown signer with a known kid", "Bearer " + stranger.Token(t, claims("pets-api", time.Hour, good)), code.Code_UNAUTHENTICATED},
			{"garbage", "Bearer not.a.jwt", code.Code_UNAUTHENTICATED},
			{"valid token, missing role", "Bearer " + oldKey.Token(t, claims("pets-api", time.Hour, map[string]any{"roles": []any{"ops"}, "scope": "pets:write"})), code.Code_PERMISSION_DENIED},
			{"valid token, missing scope", "Bearer " + oldKey.Token(t, claims("pets-api", time.Hour, map[string]any{"roles": []any{"admin"}, "scp": []any{"pets:read"}})), code.Code_PERMISSION_DENIED},
		}
		for _, tc := range cases {
			t.Run("with a "+tc.name, func(t *testing.T) {
				if res := put(t, tc.auth); res.Status.Code != int32(tc.want) {
					t.Errorf("%s: %v (%s), want %v", tc.name, code.Code(res.Status.Code), res.Status.Message, tc.want)
				}
			})
		}
	})
	// Key rotation: the issuer publishes a new key; a token with the new
	// kid is accepted without restarting (unknown-kid refetch).
	t.Run("a token of a rotated key is accepted without a restart", func(t *testing.T) {
		rotated := "Bearer " + newKey.Token(t, claims("pets-api", time.Hour, good))
		ks.Publish(t, newKey)
		if res := put(t, rotated); res.Status.Code != int32(code.Code_OK) {
			t.Fatalf("token signed with the rotated key: %v (%s)", code.Code(res.Status.Code), res.Status.Message)
		}
	})
}
