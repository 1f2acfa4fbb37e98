package policies

import (
	"fmt"
	"testing"

	"github.com/gatehouse-dev/gatehouse/model"
)

// benchConfig is a realistic tenant: services of 10 APIs each (list, get,
// create, update, delete, and nested resources), half the policies Rego
// with role and scope checks, half validators.
func benchConfig(tenant string, apis int) *Config {
	cfg := &Config{
		Revision: 1,
		Tenant:   Object[model.TenantSpec]{ID: tenant, Spec: model.TenantSpec{Name: tenant, Status: model.TenantAvailable}},
		Gateways: []Object[model.GatewaySpec]{{ID: "edge", Name: "edge", Spec: model.GatewaySpec{Type: model.GatewayEnvoy}}},
	}
	nPolicies := max(apis/20, 2)
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
				{Name: "header", Conf: map[string]any{"name": "x-tenant", "value": tenant}},
			}}
		}
		cfg.Policies = append(cfg.Policies, Object[model.PolicySpec]{ID: id, Name: id, Spec: spec})
	}
	templates := []struct{ method, path string }{
		{"GET", "/r%d"}, {"POST", "/r%d"}, {"GET", "/r%d/{id}"}, {"PUT", "/r%d/{id}"}, {"DELETE", "/r%d/{id}"},
		{"GET", "/r%d/{id}/items"}, {"POST", "/r%d/{id}/items"}, {"GET", "/r%d/{id}/items/{item}"},
		{"DELETE", "/r%d/{id}/items/{item}"}, {"GET", "/r%d/{id}/files/{path...}"},
	}
	for i := 0; i < apis; i++ {
		svc := fmt.Sprintf("svc-%03d", i/len(templates))
		if i%len(templates) == 0 {
			cfg.Services = append(cfg.Services, Object[model.ServiceSpec]{ID: svc, Name: svc, Spec: model.ServiceSpec{URL: "http://" + svc + ".internal"}})
		}
		tpl := templates[i%len(templates)]
		cfg.APIs = append(cfg.APIs, Object[model.APISpec]{ID: fmt.Sprintf("api-%05d", i), Spec: model.APISpec{
			ServiceID: svc, Method: tpl.method, Path: fmt.Sprintf(tpl.path, i/len(templates)),
			PolicyID: fmt.Sprintf("policy-%03d", i%nPolicies)}})
	}
	return cfg
}

// BenchmarkBundleBuild measures Compile + Build (signed) of one gateway's
// bundle, and reports its size.
func BenchmarkBundleBuild(b *testing.B) {
	key, err := GenerateSigningKey("bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, apis := range []int{50, 1000} {
		cfg := benchConfig("bench", apis)
		b.Run(fmt.Sprintf("apis=%d", apis), func(b *testing.B) {
			var size int
			for b.Loop() {
				c, err := Compile(cfg, "edge")
				if err != nil {
					b.Fatal(err)
				}
				raw, err := Build(c, 1, key)
				if err != nil {
					b.Fatal(err)
				}
				size = len(raw)
			}
			b.ReportMetric(float64(size), "bundle-bytes")
		})
	}
}

// BenchmarkBundleBuild1000Tenants builds one bundle for each of 1,000
// tenants of 50 APIs (each with its own signing key), per operation.
func BenchmarkBundleBuild1000Tenants(b *testing.B) {
	const tenants = 1000
	cfgs := make([]*Config, tenants)
	keys := make([]*SigningKey, tenants)
	for i := range cfgs {
		cfgs[i] = benchConfig(fmt.Sprintf("t%04d", i), 50)
		k, err := GenerateSigningKey(cfgs[i].Tenant.ID)
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = k
	}
	var total int
	for b.Loop() {
		total = 0
		for i, cfg := range cfgs {
			c, err := Compile(cfg, "edge")
			if err != nil {
				b.Fatal(err)
			}
			raw, err := Build(c, 1, keys[i])
			if err != nil {
				b.Fatal(err)
			}
			total += len(raw)
		}
	}
	b.ReportMetric(float64(total), "total-bytes")
	b.ReportMetric(float64(total)/tenants, "bytes/bundle")
}
