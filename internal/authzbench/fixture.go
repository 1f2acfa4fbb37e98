// Package authzbench measures the authorizer: a realistic tenant (200
// JWT-protected APIs behind a Rego policy with role and scope checks), the
// Gatehouse fast path, and the same policy, requests and token evaluated the
// way opa-envoy-plugin does it, side by side.
package authzbench

import (
	"context"
	"fmt"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse-dev/gatehouse/gateway"
	"github.com/gatehouse-dev/gatehouse/gateway/token"
	"github.com/gatehouse-dev/gatehouse/internal/testkit/jwtkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// Issuer and audience of the fixture's tokens.
const (
	Issuer   = "https://idp.bench.example"
	Audience = "pets-api"
)

// Policy is the tenant's policy: the caller needs a role and a scope that
// depend on the method, and a tenant claim matching the path's owner.
const Policy = `package policy

default allow := false

read_methods := {"GET", "HEAD"}

allow if {
	input.attributes.request.http.method in read_methods
	some r in input.gatehouse.token.claims.roles
	r in {"viewer", "editor", "admin"}
	"pets:read" in input.gatehouse.token.scopes
}

allow if {
	not input.attributes.request.http.method in read_methods
	some r in input.gatehouse.token.claims.roles
	r in {"editor", "admin"}
	"pets:write" in input.gatehouse.token.scopes
	input.gatehouse.token.claims.tenant == "acme"
}
`

// Fixture is the benchmark tenant, compiled, with signed tokens and a
// request corpus.
type Fixture struct {
	// Config is the tenant's configuration, Compiled its compilation for
	// gateway edge.
	Config   *policies.Config
	Compiled *policies.Compiled
	Tokens   []string
	Requests []*authv3.CheckRequest
	jwks     string
}

// NewFixture builds 20 services × 10 APIs, the policy, an issuer with an
// inline key set, tokens and requests (every one matching an API).
func NewFixture() (*Fixture, error) {
	signer, err := jwtkit.New("bench")
	if err != nil {
		return nil, err
	}
	set, err := jwtkit.MarshalJWKS(signer)
	if err != nil {
		return nil, err
	}
	cfg := &policies.Config{
		Revision: 1,
		Tenant:   policies.Object[model.TenantSpec]{ID: "acme", Spec: model.TenantSpec{Name: "Acme"}},
		Policies: []policies.Object[model.PolicySpec]{{ID: "pets", Name: "pets", Spec: model.PolicySpec{Language: model.LanguageRego, Definition: Policy}}},
		Gateways: []policies.Object[model.GatewaySpec]{{ID: "edge", Name: "edge", Spec: model.GatewaySpec{Type: model.GatewayEnvoy}}},
		Issuers:  []policies.Object[model.IssuerSpec]{{ID: "idp", Name: "idp", Spec: model.IssuerSpec{Issuer: Issuer, Audiences: []string{Audience}, JWKS: set}}},
	}
	templates := []struct{ method, path string }{
		{"GET", "/r%d"}, {"POST", "/r%d"}, {"GET", "/r%d/{id}"}, {"PUT", "/r%d/{id}"}, {"DELETE", "/r%d/{id}"},
		{"GET", "/r%d/{id}/items"}, {"POST", "/r%d/{id}/items"}, {"GET", "/r%d/{id}/items/{item}"},
		{"DELETE", "/r%d/{id}/items/{item}"}, {"GET", "/r%d/{id}/files/{path...}"},
	}
	f := &Fixture{Config: cfg, jwks: string(set)}
	for s := 0; s < 20; s++ {
		sid := fmt.Sprintf("svc-%02d", s)
		cfg.Services = append(cfg.Services, policies.Object[model.ServiceSpec]{ID: sid, Name: sid, Spec: model.ServiceSpec{URL: "http://" + sid + ".internal"}})
		for i, tpl := range templates {
			cfg.APIs = append(cfg.APIs, policies.Object[model.APISpec]{ID: fmt.Sprintf("%s-%d", sid, i), Spec: model.APISpec{
				ServiceID: sid, Method: tpl.method, Path: fmt.Sprintf(tpl.path, s), PolicyID: "pets"}})
		}
	}
	if f.Compiled, err = policies.Compile(cfg, "edge"); err != nil {
		return nil, err
	}
	for i, roles := range [][]any{{"viewer"}, {"editor"}, {"admin", "viewer"}, {"viewer"}} {
		raw, err := signer.Sign(jwt.MapClaims{
			"iss": Issuer, "aud": Audience, "sub": fmt.Sprintf("user-%d", i), "tenant": "acme", "roles": roles,
			"scope": "pets:read pets:write", "iat": time.Now().Unix(), "exp": time.Now().Add(24 * time.Hour).Unix(),
		})
		if err != nil {
			return nil, err
		}
		f.Tokens = append(f.Tokens, raw)
	}
	paths := []string{"/r%d", "/r%d", "/r%d/42", "/r%d/42", "/r%d/42", "/r%d/42/items", "/r%d/42/items", "/r%d/42/items/7", "/r%d/42/items/7", "/r%d/42/files/a/b.txt"}
	for n := 0; n < 1000; n++ {
		s, i := n%20, (n/20)%len(templates)
		path := fmt.Sprintf(paths[i], s)
		if n%3 == 0 {
			path += "?limit=10&sort=name"
		}
		f.Requests = append(f.Requests, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Id: fmt.Sprint(n), Method: templates[i].method, Path: path, Host: "api.bench.example", Scheme: "https", Protocol: "HTTP/1.1",
				Headers: map[string]string{
					":authority": "api.bench.example", ":method": templates[i].method, ":path": path,
					"authorization": "Bearer " + f.Tokens[n%len(f.Tokens)], "user-agent": "bench/1.0",
					"accept": "application/json", "x-request-id": fmt.Sprintf("req-%d", n),
				},
			}},
		}})
	}
	return f, nil
}

// FastPath returns the Gatehouse ext_authz service with the fixture active.
func (f *Fixture) FastPath(ctx context.Context) (*gateway.Server, error) {
	engines := gateway.NewEngines(model.GatewayRef{TenantID: "acme", GatewayID: "edge"})
	a := &gateway.Activator{Engines: engines, Tokens: func(ctx context.Context, issuers []policies.IssuerData) (gateway.TokenValidator, error) {
		return token.New(token.FromBundle(issuers), token.Options{})
	}}
	src, err := gateway.SourceFromCompiled(f.Compiled, "1")
	if err != nil {
		return nil, err
	}
	if _, err := a.Activate(ctx, src, "bench"); err != nil {
		return nil, err
	}
	return gateway.NewServer(gateway.ServerOptions{Engines: engines}), nil
}
