// Package authzbench measures the authorizer: a realistic tenant (200
// JWT-protected APIs behind a Rego policy with role and scope checks), the
// Gatehouse fast path, and the same decisions made along opa-envoy-plugin's
// own code path (PluginStyle), side by side, in process (bench_test.go) and
// over gRPC (load.go, used by ./run).
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
	signer   *jwtkit.Signer
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
	f := &Fixture{Config: cfg, jwks: string(set), signer: signer}
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
		f.Requests = append(f.Requests, request(fmt.Sprint(n), templates[i].method, path, f.Tokens[n%len(f.Tokens)]))
	}
	return f, nil
}

// request is a CheckRequest as Envoy sends it for method path with a
// bearer token ("" for none).
func request(id, method, path, token string) *authv3.CheckRequest {
	headers := map[string]string{
		":authority": "api.bench.example", ":method": method, ":path": path, "user-agent": "bench/1.0",
		"accept": "application/json", "x-request-id": "req-" + id,
	}
	if token != "" {
		headers["authorization"] = "Bearer " + token
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: id, Method: method, Path: path, Host: "api.bench.example", Scheme: "https", Protocol: "HTTP/1.1", Headers: headers,
		}},
	}}
}

// EdgeRequests are requests outside the load corpus whose decisions the
// implementations must also agree on: unknown routes and methods, trailing
// slashes, catch-all edges, an escaped slash, missing, malformed, foreign,
// expired and wrong-audience or wrong-issuer tokens, missing roles, scopes
// or tenant.
// Not "//": Gatehouse merges slashes as Envoy's merge_slashes does, the
// plugin policy sees an empty segment (Envoy normally merges them first).
func (f *Fixture) EdgeRequests() ([]*authv3.CheckRequest, error) {
	other, err := jwtkit.New("bench")
	if err != nil {
		return nil, err
	}
	now := time.Now()
	claims := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": Issuer, "aud": Audience, "sub": "edge", "tenant": "acme", "roles": []any{"editor"},
			"scope": "pets:read pets:write", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if change != nil {
			change(c)
		}
		return c
	}
	tokens := map[string]jwt.MapClaims{
		"good":        claims(nil),
		"expired":     claims(func(c jwt.MapClaims) { c["iat"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix() }),
		"audience":    claims(func(c jwt.MapClaims) { c["aud"] = "other-api" }),
		"issuer":      claims(func(c jwt.MapClaims) { c["iss"] = "https://other.example" }),
		"no-roles":    claims(func(c jwt.MapClaims) { delete(c, "roles") }),
		"guest":       claims(func(c jwt.MapClaims) { c["roles"] = []any{"guest"} }),
		"viewer":      claims(func(c jwt.MapClaims) { c["roles"] = []any{"viewer"} }),
		"read-scope":  claims(func(c jwt.MapClaims) { c["scope"] = "pets:read" }),
		"write-scope": claims(func(c jwt.MapClaims) { c["scope"] = "pets:write" }),
		"no-scope":    claims(func(c jwt.MapClaims) { delete(c, "scope") }),
		"tenant":      claims(func(c jwt.MapClaims) { c["tenant"] = "globex" }),
	}
	signed := map[string]string{}
	for name, c := range tokens {
		if signed[name], err = f.signer.Sign(c); err != nil {
			return nil, err
		}
	}
	if signed["foreign"], err = other.Sign(claims(nil)); err != nil {
		return nil, err
	}
	signed["malformed"] = "not.a.token"
	good := signed["good"]
	cases := []struct{ method, path, token string }{
		{"GET", "/r3", good}, {"GET", "/r3/", good}, {"GET", "/r3/42/", good}, {"GET", "/r99", good}, {"GET", "/", good},
		{"PATCH", "/r3/42", good}, {"HEAD", "/r3", good}, {"DELETE", "/r3", good}, {"POST", "/r3/42", good},
		{"GET", "/r3/42/files", good}, {"GET", "/r3/42/files/", good}, {"GET", "/r3/42/files/a/b/c/d.txt", good},
		{"GET", "/r3/42/items/7/extra", good}, {"GET", "/r3/4%2F2", good},
		{"GET", "/r3/42?x=1&x=2", good}, {"POST", "/r3?a=b", good},
		{"GET", "/r3", ""}, {"GET", "/r3", "malformed"}, {"GET", "/r3", signed["malformed"]},
	}
	for _, name := range []string{"expired", "audience", "issuer", "foreign", "no-roles", "guest", "viewer", "read-scope", "write-scope", "no-scope", "tenant"} {
		cases = append(cases, struct{ method, path, token string }{"GET", "/r5/1/items", signed[name]},
			struct{ method, path, token string }{"POST", "/r5/1/items", signed[name]})
	}
	var out []*authv3.CheckRequest
	for i, c := range cases {
		out = append(out, request(fmt.Sprintf("edge-%d", i), c.method, c.path, c.token))
	}
	// A header that is not "Bearer …".
	r := request("edge-basic", "GET", "/r3", "")
	r.Attributes.Request.Http.Headers["authorization"] = "Basic dXNlcjpwYXNz"
	return append(out, r), nil
}

// Agree checks that a and b decide every request alike (allowed or not)
// and returns how many of them were allowed.
func Agree(ctx context.Context, a, b authv3.AuthorizationServer, aName, bName string, reqs []*authv3.CheckRequest) (allowed int, err error) {
	for i, req := range reqs {
		ra, err := a.Check(ctx, req)
		if err != nil {
			return allowed, fmt.Errorf("%s, request %d: %w", aName, i, err)
		}
		rb, err := b.Check(ctx, req)
		if err != nil {
			return allowed, fmt.Errorf("%s, request %d: %w", bName, i, err)
		}
		okA, okB := ra.GetStatus().GetCode() == 0, rb.GetStatus().GetCode() == 0
		if okA != okB {
			h := req.GetAttributes().GetRequest().GetHttp()
			return allowed, fmt.Errorf("request %d (%s %s): %s allows=%v (%s), %s allows=%v (%s)", i, h.GetMethod(), h.GetPath(),
				aName, okA, ra.GetStatus().GetMessage(), bName, okB, rb.GetStatus().GetMessage())
		}
		if okA {
			allowed++
		}
	}
	return allowed, nil
}

// JWKS is the issuer's key set (JSON).
func (f *Fixture) JWKS() string { return f.jwks }

// FastPath returns the Gatehouse ext_authz service with the fixture active.
func (f *Fixture) FastPath(ctx context.Context) (*gateway.Server, error) {
	return f.FastPathLogging(ctx, nil)
}

// FastPathLogging is FastPath with every decision handed to logs (nil:
// none).
func (f *Fixture) FastPathLogging(ctx context.Context, logs *gateway.DecisionLogger) (*gateway.Server, error) {
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
	return gateway.NewServer(gateway.ServerOptions{Engines: engines, Logs: logs}), nil
}
