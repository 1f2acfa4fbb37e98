// Package activationbench is the fixture of the activation benchmarks: a
// large tenant's signed bundle (N APIs, 10 per service, a few dozen Rego
// and validator policies, an issuer with an inline key set), as the
// authorizer downloads it or finds it in its disk cache.
package activationbench

import (
	"fmt"

	"github.com/gatehouse-dev/gatehouse/internal/testkit/jwtkit"
	"github.com/gatehouse-dev/gatehouse/model"
	"github.com/gatehouse-dev/gatehouse/policies"
)

// Tenant and gateway of the fixture.
const (
	TenantID  = "acme"
	GatewayID = "edge"
)

// Config is a tenant of apis APIs: services of 10 APIs each (list, get,
// create, update, delete and nested resources), max(apis/200, 2) policies
// bound round-robin, half Rego with role and scope checks, half validators.
func Config(apis int) (*policies.Config, error) {
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
		Tenant:   policies.Object[model.TenantSpec]{ID: TenantID, Spec: model.TenantSpec{Name: "Acme", Status: model.TenantAvailable}},
		Gateways: []policies.Object[model.GatewaySpec]{{ID: GatewayID, Name: GatewayID, Spec: model.GatewaySpec{Type: model.GatewayEnvoy}}},
		Issuers: []policies.Object[model.IssuerSpec]{{ID: "idp", Name: "idp", Spec: model.IssuerSpec{
			Issuer: "https://idp.bench.example", Audiences: []string{"bench"}, JWKS: set}}},
	}
	nPolicies := max(apis/200, 2)
	for p := 0; p < nPolicies; p++ {
		id := fmt.Sprintf("policy-%03d", p)
		spec := model.PolicySpec{Language: model.LanguageRego, Definition: fmt.Sprintf(`package policy

default allow := false

allow if {
	"role-%d" in input.gatehouse.token.claims.roles
	"scope-%d" in input.gatehouse.token.scopes
}

allow if input.attributes.request.http.method == "GET"
`, p, p)}
		if p%2 == 1 {
			spec = model.PolicySpec{Language: model.LanguageValidators, Validators: []model.ValidatorConfig{
				{Name: "scope", Conf: map[string]any{"scope": fmt.Sprintf("scope-%d", p)}},
				{Name: "header", Conf: map[string]any{"name": "x-tenant", "value": TenantID}},
			}}
		}
		cfg.Policies = append(cfg.Policies, policies.Object[model.PolicySpec]{ID: id, Name: id, Spec: spec})
	}
	templates := []struct{ method, path string }{
		{"GET", "/r%d"}, {"POST", "/r%d"}, {"GET", "/r%d/{id}"}, {"PUT", "/r%d/{id}"}, {"DELETE", "/r%d/{id}"},
		{"GET", "/r%d/{id}/items"}, {"POST", "/r%d/{id}/items"}, {"GET", "/r%d/{id}/items/{item}"},
		{"DELETE", "/r%d/{id}/items/{item}"}, {"GET", "/r%d/{id}/files/{path...}"},
	}
	for i := 0; i < apis; i++ {
		svc := fmt.Sprintf("svc-%04d", i/len(templates))
		if i%len(templates) == 0 {
			cfg.Services = append(cfg.Services, policies.Object[model.ServiceSpec]{ID: svc, Name: svc, Spec: model.ServiceSpec{
				URL: "http://" + svc + ".internal", Hosts: []string{svc + ".bench.example"}}})
		}
		tpl := templates[i%len(templates)]
		cfg.APIs = append(cfg.APIs, policies.Object[model.APISpec]{ID: fmt.Sprintf("api-%05d", i), Spec: model.APISpec{
			ServiceID: svc, Method: tpl.method, Path: fmt.Sprintf(tpl.path, i/len(templates)),
			PolicyID: fmt.Sprintf("policy-%03d", i%nPolicies)}})
	}
	return cfg, nil
}

// Bundle compiles Config(apis) for the gateway and signs it (revision 1)
// with a new key, which it returns with the bundle.
func Bundle(apis int) ([]byte, *policies.SigningKey, error) {
	cfg, err := Config(apis)
	if err != nil {
		return nil, nil, err
	}
	c, err := policies.Compile(cfg, GatewayID)
	if err != nil {
		return nil, nil, fmt.Errorf("compile the fixture: %w", err)
	}
	if len(c.Skipped) > 0 {
		return nil, nil, fmt.Errorf("the fixture's policies do not compile: %v", c.Skipped)
	}
	key, err := policies.GenerateSigningKey(TenantID)
	if err != nil {
		return nil, nil, err
	}
	raw, err := policies.Build(c, 1, key)
	if err != nil {
		return nil, nil, err
	}
	return raw, key, nil
}
